"""Model: the zoo of shipped checkpoints, training a new model, uploading one, and the model card."""
from __future__ import annotations

import streamlit as st
from pages import common

from core import ui
from core.errors import UserError


common.ensure_navigation()

st.title("Model")
st.caption("Every other page works on the model chosen here. Shipped checkpoints come with the repository; "
           "a model you train or upload lives only in this browser session and is never written to disk.")

flash = st.session_state.pop("model_flash", None)
if flash:
    st.success(flash)

# ----------------------------------------------------------------------------- zoo
# Drawn from the cards alone, before torch is imported and the model loaded: the first thing a
# visitor can use (the cold start: BENCHMARKS.md, "Dashboard response times").
current_key = common.current_key()
st.subheader("Model zoo")
entries = common.zoo(common.data_dir())
cards = [(e.key, e.name, e.card, e.available, e.reason, f"shipped: assets/{e.path.parent.name}/{e.path.name}")
         for e in entries]
cards += [(key, m.name, m.card, True, "", m.source) for key, m in common.session_models().items()]
columns = st.columns(3)
for i, (key, name, card, available, reason, source) in enumerate(cards):
    with columns[i % 3].container(border=True):
        in_use = key == current_key
        st.markdown(f"**{name}**" + ("  :green-badge[in use]" if in_use else ""))
        st.caption(source)
        acc = f"{100 * card.test_accuracy:.1f} %" if card.test_accuracy is not None else "not measured"
        st.markdown(f"Test accuracy **{acc}** · {len(card.classes)} classes · input "
                    f"{' x '.join(map(str, card.input_shape))}")
        if available:
            st.markdown(":green[Available] (its data is on this machine)")
        else:
            st.markdown(f":orange[Not available:] {reason}")
        if st.button("Use this model", key=f"use_{key}", disabled=in_use or not available,
                     width="stretch", type="secondary"):
            common.set_current(key)
            st.session_state["model_flash"] = f"Now using {name}."
            st.rerun()

import pandas as pd  # noqa: E402  (after the zoo: these import torch, plotly and pandas)

from core.data.info import DATASETS  # noqa: E402
from core.models.registry import ARCHITECTURES  # noqa: E402
from core.ui import figures  # noqa: E402

lm = common.current_model()
common.write_query_params(lm)          # the link names the model in use (``/model?model=mnist/cnn``)

# ----------------------------------------------------------------------------- train / upload
left, right = st.columns(2, gap="large")
with left:
    st.subheader("Train a new model")
    st.caption("Uses the dataset's training recipe with few epochs, so it finishes in seconds (digits) to "
               "about a minute per epoch (MNIST) on a CPU.")
    datasets = ui.trainable_datasets(common.data_dir())
    c1, c2, c3 = st.columns(3)
    t_dataset = c1.selectbox("Dataset", datasets, key="train_dataset")
    t_arch = c2.selectbox("Architecture", ui.TRAINABLE_ARCHS, key="train_arch")
    t_epochs = c3.number_input("Epochs", min_value=1, max_value=50, value=ui.default_epochs(t_dataset),
                               key=f"train_epochs_{t_dataset}")
    if st.button("Train", key="train_button", type="primary"):
        bar = st.progress(0.0, text="Loading the training images...")
        state = {"last": -1}

        def progress(step: int, total: int, loss: float) -> None:
            percent = int(100 * step / max(total, 1))
            if percent != state["last"]:
                state["last"] = percent
                bar.progress(step / max(total, 1), text=f"Training: step {step} of {total}, loss {loss:.3f}")

        try:
            trained = ui.train_new_model(t_dataset, t_arch, int(t_epochs), data_dir=common.data_dir(), progress=progress)
        except UserError as exc:
            bar.empty()
            st.error(str(exc))
        else:
            bar.progress(1.0, text="Done.")
            common.session_models()[trained.key] = trained
            common.set_current(trained.key)
            st.session_state["model_flash"] = (f"Trained {trained.name}: test accuracy "
                                               f"{100 * trained.card.test_accuracy:.1f} %. It is now the current model.")
            st.rerun()

with right:
    st.subheader("Upload your model")
    st.caption(f"A whole model, ONNX (.onnx) or torch.export (.pt2), or weights for one of the named architectures "
               f"(safetensors, or a state_dict read with weights_only=True), up to {ui.MAX_UPLOAD_MB} MB. Add its model "
               "card (.json) to say which dataset it was trained on; a card inside the file is read first. "
               "TorchScript and pickled models are refused: they can run code when loaded.")
    c1, c2 = st.columns(2)
    u_dataset = c1.selectbox("Trained on (if it has no card)", [d for d in DATASETS if d in datasets],
                             key="upload_dataset")
    u_arch = c2.selectbox("Architecture (weights only)", list(ARCHITECTURES), index=list(ARCHITECTURES).index("cnn"),
                          key="upload_arch")
    uploaded = st.file_uploader("Model file (and its card)", type=[s.lstrip(".") for s in ui.UPLOAD_SUFFIXES + ui.UPLOAD_EXTRAS],
                                key="upload_file", max_upload_size=ui.MAX_UPLOAD_MB, accept_multiple_files=True)
    models = [f for f in uploaded or [] if f.name.lower().endswith(ui.UPLOAD_SUFFIXES)]
    if st.button("Load model", key="upload_button", disabled=not models):
        try:
            if len(models) > 1:
                raise UserError(f"Upload one model at a time (got {', '.join(f.name for f in models)}).")
            extra = {f.name: f.getvalue() for f in uploaded if f is not models[0]}
            loaded = ui.read_uploaded_checkpoint(models[0].getvalue(), models[0].name, u_arch, u_dataset,
                                                common.data_dir(), extra_files=extra)
        except UserError as exc:
            st.error(str(exc))
        else:
            common.session_models()[loaded.key] = loaded
            common.set_current(loaded.key)
            note = "" if loaded.dataset == u_dataset else f" Its model card says it was trained on {loaded.dataset}."
            st.session_state["model_flash"] = f"Loaded {loaded.name}. It is now the current model.{note}"
            st.rerun()

# ----------------------------------------------------------------------------- model card
st.divider()
st.subheader(f"Model card: {lm.name}")
# A shipped card already holds what the test split gives (its per-class accuracy): no evaluation at start.
card_numbers = len(lm.card.per_class_accuracy) == len(lm.classes) and lm.card.test_accuracy is not None \
    and lm.key.startswith("shipped:")
evaluation = ({"per_class": list(lm.card.per_class_accuracy), "overall": lm.card.test_accuracy} if card_numbers
              else common.test_accuracy(lm.checksum, lm))
left, right = st.columns([3, 2], gap="large")
with left:
    st.plotly_chart(figures.per_class_accuracy(lm.classes, evaluation["per_class"],
                                               title=f"Per-class accuracy on the {lm.dataset} test split"),
                    key="model_per_class")
    st.caption(f"Overall {common.pct(evaluation['overall'])} of the test split's images are classified correctly.")
with right:
    card = lm.card
    classes = ", ".join(card.classes[:12]) + (" ..." if len(card.classes) > 12 else "")
    st.markdown(f"""
**Architecture** `{card.arch}` · **dataset** `{card.dataset}`  
**Classes** {classes}  
**Input** {' x '.join(map(str, card.input_shape))} (channels x height x width)  
**Parameters** {ui.parameter_count(lm.model):,}  
**Test accuracy** {common.pct(evaluation['overall'])}  
**Seed** {card.seed} · **created** {card.created or '-'}  
**Source** {lm.source}
""")
    if card.command:
        st.markdown("**Made by**")
        st.code(card.command, language="bash", wrap_lines=True)
st.markdown("**Layers** (the modules its forward pass calls, in order; output shape for one image)")
st.dataframe(pd.DataFrame(ui.layer_rows(lm.model, lm.card)), hide_index=True, width="stretch", key="model_layers",
             column_config={"parameters": st.column_config.NumberColumn(format="localized")})
