"""Unlearn: forget a class by perturbing its neuronal path, with a live strength slider."""
from __future__ import annotations

from dataclasses import replace

import streamlit as st
from pages import common

from core import ui
from core.ui import figures
from core.attribution.relevance import RULES
from core.errors import UserError
from core.unlearning.config import UnlearnConfig, default_config
from core.unlearning.perturb import METHODS, TARGETS


common.ensure_navigation()

METHOD_LABELS = {"zero": "zero (scale weights by 1 - strength)", "gaussian": "Gaussian noise (GN)",
                 "laplace": "Laplace noise (LN)"}
H_MODES = {"share": "share of layer", "auto": "auto (coverage)", "calibrate": "calibrated"}
TARGET_LABELS = {"auto": "auto: outgoing first, all where needed", "in": "incoming weights",
                 "out": "outgoing weight to the class", "both": "both"}
TARGET_OPTIONS = ("auto",) + TARGETS

st.title("Unlearn a class")
st.caption("Zero-shot unlearning: the path of the class to forget is found by LRP on a few held-out images "
           "(the analysis pool), then the weights around its units are perturbed. No training step, no training "
           "data. Every accuracy below is measured on the evaluation set, held-out images disjoint from the pool. "
           "The loaded model is never changed: each setting makes a new copy.")

lm = common.current_model()
pool, eval_set = common.heldout(lm.dataset, common.data_dir())
base = default_config()
layers_all = ui.analysable_layers(lm.model, lm.card)
default_layers = [layer for layer in (base.layers or [layers_all[-1]]) if layer in layers_all] or layers_all[-1:]


def share(value, width: int) -> float:
    """A K/H setting as a percentage of the layer width (for the sliders)."""
    return round(100 * (value if isinstance(value, float) and value < 1 else value / width), 1)


widths = {row["layer"]: row["output shape"] for row in ui.layer_rows(lm.model, lm.card)}
first_width = int(widths.get(default_layers[0], "512").split(" x ")[0])

c1, c2, c3 = st.columns(3)
cls = common.class_selectbox("Forget class", lm, key="unl_class", container=c1,
                             help="The class the model should no longer recognise.")
target = c2.selectbox("Weights to perturb", TARGET_OPTIONS,
                      index=TARGET_OPTIONS.index(base.target if base.target in TARGET_OPTIONS else "both"),
                      key="unl_target",
                      format_func=TARGET_LABELS.get,
                      help="incoming: the rows producing the selected units; outgoing: their weight to the forget "
                           "class (to every class in a hidden layer); both: the two together; auto (the library's "
                           "default, with a calibrated H): outgoing when that forgets the pool's validation images, "
                           "else both.")
selection = c3.selectbox("Unit selection", ["contrast", "frequency"],
                         index=["contrast", "frequency"].index(base.selection), key="unl_selection",
                         help="frequency: the authors' top-K counting; contrast: units relevant for this class but "
                              "not for the others (this project's default).")
with st.expander("Path settings: layers, K, H, LRP rule", expanded=False):
    e1, e2, e3, e4 = st.columns(4)
    layers = e1.multiselect("Layers", layers_all, default=default_layers, key="unl_layers",
                            help="The authors analyse only the classifier's input (the last one).")
    k_pct = e2.slider("K: top units per image (% of layer)", 1.0, 50.0, min(50.0, share(base.k, first_width)), 0.5,
                      key="unl_k")
    modes = ["share"] + (["auto"] if selection == "contrast" else []) + \
        (["calibrate"] if "validation_fraction" in UnlearnConfig.__dataclass_fields__ else [])
    h_mode = e3.selectbox("H: how many units to perturb", modes, key=f"unl_h_mode_{selection}",
                          index=modes.index(base.h) if isinstance(base.h, str) and base.h in modes else 0,
                          format_func=H_MODES.get,
                          help="share of layer: the slider below. auto: the fewest units covering half of the "
                               "contrast score. calibrated: the smallest share that forgets the class on a "
                               "validation part of the analysis pool while the other classes keep their accuracy.")
    h_pct = e3.slider("H: share of each layer (%)", 1.0, 90.0,
                      min(90.0, share(base.h, first_width)) if not isinstance(base.h, str) else 30.0, 0.5,
                      key="unl_h", disabled=h_mode != "share")
    rule = e4.selectbox("LRP rule", RULES, index=RULES.index(base.rule), key="unl_rule")

if not layers:
    st.info("Pick at least one layer in the path settings.")
    st.stop()

try:
    config = common.selection_config(replace(base, k=k_pct / 100, h=h_pct / 100 if h_mode == "share" else h_mode,
                                             layers=tuple(layers), rule=rule, selection=selection, target=target))
    config_key = repr(config)
    result, explorer = common.unlearned(lm.checksum, lm, cls, config_key, config)
except UserError as exc:
    common.fail(exc)
explorer_key = f"{lm.checksum}|{cls}|{config_key}"
before = common.before_evaluation(lm, cls)
units = {layer: len(sel.units) for layer, sel in result.path.selections.items()}
st.caption(f"Path found in {result.seconds['relevance_and_selection']:.2f} s from "
           f"{result.path.settings['n_images']} pool images of class {lm.class_label(cls)}: "
           + ", ".join(f"{n} of {result.path.selections[layer].width} units in {layer}" for layer, n in units.items())
           + f"; weights perturbed: {TARGET_LABELS[result.config.perturbation.target]}. " + common.reuse_sentence(explorer.reuse) + " "
           "The library's default also erases the class direction from the layers before the classifier and "
           "relabels the class's images to their second choice: the slider shows the path perturbation alone, "
           "the button further down adds those steps.")

forget_positions = (eval_set.labels == cls).nonzero(as_tuple=True)[0].tolist()


@st.fragment
def explore() -> None:
    """Slider, metrics and charts: a slider move reruns only this part of the page."""
    c1, c2 = st.columns([2, 3])
    method = c1.radio("Perturbation", METHODS, index=METHODS.index(base.method) if base.method in METHODS else 0,
                      horizontal=True, key="unl_method", format_func=lambda m: METHOD_LABELS[m].split(" (")[0],
                      help="zero scales the selected weights by (1 - strength); the noise methods add strength x "
                           "N(0,1) or Laplace(0,1) noise (the authors' GN / LN baselines).")
    strength = c2.slider("Strength", 0.0, 1.0, float(base.strength), 0.05, key="unl_strength",
                         help="0 = the original model, 1 = the full perturbation.")
    after, variant = common.perturbed(explorer_key, explorer, strength, method)

    m1, m2, m3 = st.columns(3)
    m1.metric(f"Forget accuracy (class {lm.class_label(cls)})", common.pct(after.forget_acc),
              delta=f"{100 * (after.forget_acc - before.forget_acc):+.1f} points", delta_color="inverse",
              help="Share of the forget class's evaluation images still recognised; lower is better.")
    m2.metric("Retain accuracy (other classes)", common.pct(after.retain_acc),
              delta=f"{100 * (after.retain_acc - before.retain_acc):+.1f} points",
              help="Mean per-class accuracy over the other classes; it should stay where it was.")
    m3.metric("Units perturbed", f"{sum(units.values())}",
              help="Selected units whose weights are perturbed, summed over layers.")

    left, right = st.columns(2, gap="medium")
    left.plotly_chart(figures.accuracy_before_after(lm.classes, before.per_class, after.per_class, cls),
                      key="unl_bars")
    curve = common.sweep(explorer_key, explorer, method)
    right.plotly_chart(figures.strength_sweep(curve["x"], curve["forget"], curve["retain"], strength,
                                              (after.forget_acc, after.retain_acc),
                                              x_title=f"strength of {method} perturbation (0 = original model)",
                                              title="Forget and retain accuracy across strengths"),
                       key="unl_sweep")

    st.markdown("##### What the model sees in a forget-class image")
    h1, h2 = st.columns([1, 4])
    pick = h1.number_input("Example image", 1, max(1, min(20, len(forget_positions))), 1, key="unl_example",
                           help="One of the forget class's evaluation images.")
    if forget_positions:
        position = forget_positions[int(pick) - 1]
        before_map = common.heatmap_of(lm.checksum, lm.model, position, lm.dataset, cls, config.lrp.rule)
        after_map = common.heatmap_of(f"{explorer_key}|{strength}|{method}", variant, position, lm.dataset, cls,
                                      config.lrp.rule)
        image = ui.display_images(eval_set.images[position:position + 1], lm.card)[0]
        h2.plotly_chart(figures.relevance_before_after(
            image, before_map, after_map,
            title=f"LRP for class {lm.class_label(cls)} (test #{int(eval_set.indices[position])}), "
                  f"before and after, same colour scale"), key="unl_heatmaps")
        h1.caption("Red: evidence for the forget class. As the path is perturbed, that evidence fades.")

    st.markdown("##### Inside the model: erase the class direction, then relabel")
    erase_key = f"erase|{explorer_key}|{strength}|{method}"
    e1, e2 = st.columns([2, 3], gap="large")
    if e1.button("Erase the class direction and relabel", key="unl_erase",
                 help="The library default's last steps. A linear eraser (LEACE) fitted on the pool removes what "
                      "still separates the class in the layers before the classifier, folded into their weights: "
                      "a linear probe on the classifier's input then finds the class less easily. Then the "
                      "classifier learns to give the class's images their second choice, as surely as it answers "
                      "the pool images it gets wrong, as a model that never learned the class would."):
        with st.spinner("Fitting the erasers and the relabelling on the pool and evaluating..."):
            st.session_state[erase_key] = ui.erasure_summary(lm.model, variant, pool, eval_set, cls)
    erasure = st.session_state.get(erase_key)
    if erasure:
        st.dataframe(
            [{"model": name, "forget accuracy": common.pct(erasure[name]["forget_acc"]),
              "retain accuracy": common.pct(erasure[name]["retain_acc"]),
              "probe finds the class": common.pct(erasure[name]["probe_recall"]),
              "entropy on forget images (nats)": round(erasure[name]["forget_entropy"], 2)}
             for name in ("original", "perturbed", "erased", "relabelled")], hide_index=True, key="unl_erase_table")
        relabelling = erasure["relabelling"]
        e2.caption("Erased at: " + (", ".join(erasure["layers"]) or "no layer (each cost too much retain accuracy "
                                    "on the pool's validation part)") + ". Relabelling: "
                   + (f"strength {relabelling['strength']:.2f} ({relabelling['reason']})." if relabelling["strength"]
                      else relabelling["reason"] + "."))
    else:
        e2.caption("Cutting the path stops the class at the output; its features can still be there inside, and "
                   "the class's images get an unusually flat softmax (high entropy), which a membership attack "
                   "notices. This runs the eraser and the relabelling on the current setting.")

    st.markdown("##### Membership inference and export")
    report = {"forget_class": cls, "class_name": lm.classes[cls], "dataset": lm.dataset, "arch": lm.card.arch,
              "model": lm.source, "model_sha256": lm.checksum, "method": method, "strength": strength,
              "config": config.override({"perturbation.method": method, "perturbation.strength": strength}).to_dict(),
              "per_class_before": before.per_class, "per_class_after": after.per_class,
              "forget_acc_before": before.forget_acc, "forget_acc_after": after.forget_acc,
              "retain_acc_before": before.retain_acc, "retain_acc_after": after.retain_acc,
              "selected_units": result.path.units, "seconds_path": result.seconds["relevance_and_selection"],
              "analysis_images": result.path.settings["n_images"], "eval_size": len(eval_set)}
    if erasure:
        report["erasure"] = erasure
    st.session_state["unlearn_report"] = report          # what the charts show (read by the tests)
    mia_key = f"mia|{explorer_key}|{strength}|{method}"
    x1, x2 = st.columns([2, 3], gap="large")
    with x1:
        if st.button("Run membership inference", key="unl_mia",
                     help="SSD's entropy attack: trained on retain-class training images vs. held-out images, it "
                          "guesses which forget-class training images were members. Uses training images to "
                          "evaluate only, never to unlearn."):
            with st.spinner("Running the attack on the training split..."):
                try:
                    st.session_state[mia_key] = ui.membership_scores(lm.model, variant, lm.dataset, cls, eval_set,
                                                                    common.data_dir())
                except UserError as exc:
                    st.error(str(exc))
        scores = st.session_state.get(mia_key)
        if scores:
            report["membership_inference"] = scores
            st.metric("Forget-class training images called members", common.pct(scores["after"]),
                      delta=f"{100 * (scores['after'] - scores['before']):+.1f} points (before: "
                            f"{common.pct(scores['before'])})", delta_color="inverse")
        else:
            st.caption("Not run for this setting yet. A model that has truly forgotten treats the class's training "
                       "images like unseen ones: the share drops.")
    with x2:
        stem = f"{lm.dataset}-{lm.card.arch}-forget{cls}-{method}-{strength:.2f}"

        fmt = ui.model_file_format(lm)

        def export():
            return ui.export_unlearned(variant, lm.card, cls, report["config"], report, lm.source, fmt)

        d1, d2, d3 = st.columns(3)
        d1.download_button("Model" if fmt != "safetensors" else "Checkpoint", data=lambda: export()[0],
                           file_name=f"{stem}.{fmt}", mime="application/octet-stream", key="unl_dl_weights",
                           icon=":material/download:",
                           help="The unlearned model in the format it came in (safetensors with the model card in its "
                                "metadata; an ONNX or .pt2 model as the same kind of file, its card beside it).")
        d2.download_button("Model card", data=lambda: export()[1], file_name=f"{stem}.json", mime="application/json",
                           key="unl_dl_card", icon=":material/description:")
        d3.download_button("Report", data=lambda: export()[2], file_name=f"{stem}-report.json",
                           mime="application/json", key="unl_dl_report", icon=":material/summarize:")
        st.caption("Downloads the model for the current slider setting; the loaded model stays as it is.")


explore()
