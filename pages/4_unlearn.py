"""Unlearn: forget a class by perturbing its neuronal path, with a live strength slider.

Laid out to fit one screen (1024 x 768 and up): class, target and path settings on top, then the
slider with forget / retain numbers, the per-class bars and an image (a test image or the person's
own) with its prediction before and after; the sweep, erasure and export follow below.
"""
from __future__ import annotations

import streamlit as st
from pages import common

from core import ui
from core.errors import UserError
from core.ui import unlearn_figures as uf
from core.ui.erasure import erase_and_relabel
from core.ui.own_image import IMAGE_TYPES, from_drawing, from_upload, top_predictions
from core.unlearning.perturb import METHODS


common.ensure_navigation()

METHOD_LABELS = {"zero": "zero", "gaussian": "Gaussian noise", "laplace": "Laplace noise"}
METHOD_CAPTIONS = {"zero": "scales the path's weights by 1 - strength",
                   "gaussian": "adds noise: wrecks the other classes too (the lesson)",
                   "laplace": "heavier-tailed noise: wrecks the other classes too"}
TARGET_LABELS = {"auto": "auto: outgoing first, all where needed", "in": "incoming weights",
                 "out": "outgoing weight to the class", "both": "both"}

st.title("Unlearn a class")
st.caption("Zero-shot: LRP on held-out pool images finds the class's path, its weights are perturbed; no training "
           "data. Accuracies: the evaluation set, disjoint from the pool.")

common.stop_prefetch()              # the person asked for something: the background steps give way
lm = common.current_model()
common.warm_up(lm.checksum, lm)
pool, eval_set = common.heldout(lm.dataset, common.data_dir())

c1, c2, c3 = st.columns([3, 4, 5])
cls = common.forget_class_box(lm, "Forget class", c1, help="The class the model should no longer recognise.")
target = common.shared(c2.selectbox, "Weights to perturb", "target", "auto", options=list(common.TARGETS),
                       format_func=TARGET_LABELS.get,
                       help="incoming: the rows producing the selected units; outgoing: their weight to the forget "
                            "class; both: the two together; auto (the library's default, with a calibrated H): "
                            "outgoing when that forgets the pool's validation images, else both.")
with c3.expander("Path settings (shared with Neuron paths)", expanded=False):
    config = common.path_settings(lm)
if config is None:
    st.info("Pick at least one layer in the path settings.")
    st.stop()
config = common.with_target(config, target)

try:
    config_key = repr(config)
    result, explorer = common.unlearned(lm.checksum, lm, cls, config_key, config)
except UserError as exc:
    common.fail(exc)
explorer_key = f"{lm.checksum}|{cls}|{config_key}"
before = common.before_evaluation(lm, cls)
units = {layer: len(sel.units) for layer, sel in result.path.selections.items()}
forget_positions = (eval_set.labels == cls).nonzero(as_tuple=True)[0].tolist()


def example_position() -> int | None:
    """The evaluation-set position of the chosen example image of the forget class."""
    if not forget_positions:
        return None
    return forget_positions[min(int(st.session_state.get("unl_example", 1)), len(forget_positions)) - 1]


def own_image_panel(variant, strength: float, method: str) -> None:
    """Draw a digit or upload an image: its top-3 prediction and relevance, before and after."""
    from streamlit_drawable_canvas import st_canvas

    d1, d2 = st.columns([1, 2])
    with d1:
        drawn = st_canvas(stroke_width=18, stroke_color="#ffffff", background_color="#000000", height=150, width=150,
                          drawing_mode="freedraw", return_image_data=True, key="own_canvas")
        upload = st.file_uploader("or upload a PNG/JPEG", type=list(IMAGE_TYPES), key="own_upload",
                                  label_visibility="collapsed")
    image, note, image_key = None, "", ""
    try:
        if upload is not None:
            data = upload.getvalue()
            image, note = from_upload(data, upload.name, lm.card)
            image_key = f"upload|{upload.name}|{len(data)}|{hash(data)}"
        elif drawn is not None and drawn.image_data is not None:
            image = from_drawing(drawn.image_data, lm.card)
            note, image_key = "your drawing, centred as MNIST's digits are", f"drawn|{hash(drawn.image_data.tobytes())}"
    except UserError as exc:
        d2.error(str(exc))
        return
    if image is None:
        d2.caption("Draw a digit in the black box (white ink) or upload a photo of one: its prediction and LRP "
                   "heatmap appear here, before and after unlearning, and follow the slider.")
        return
    top_before, top_after = top_predictions(lm.model, image), top_predictions(variant, image)
    rule = config.lrp.rule
    before_map = common.own_heatmap(lm.checksum, lm.model, image_key, image, top_before[0][0], rule)
    after_map = common.own_heatmap(f"{explorer_key}|{strength}|{method}", variant, image_key, image,
                                   top_after[0][0], rule)
    pixels = ui.display_images(image[None], lm.card)[0]
    d2.plotly_chart(uf.image_before_after(
        pixels, before_map, after_map,
        ["your image", f"before: {lm.classes[top_before[0][0]]}", f"after: {lm.classes[top_after[0][0]]}"],
        title="LRP of each model's answer"), key="own_heatmaps")
    d2.markdown(f"**Before:** {uf.top3_text(top_before, lm.classes)}  \n**After:** "
                f"{uf.top3_text(top_after, lm.classes)}")
    d2.caption(note + ".")
    st.session_state["own_image_result"] = {"before": top_before, "after": top_after}


@st.fragment
def explore() -> None:
    """Slider, metrics and charts: a slider move reruns only this part of the page."""
    common.stop_prefetch()
    s1, s2 = st.columns([1, 1])
    method = common.shared(s2.radio, "Perturbation", "method", "zero", options=list(METHODS), horizontal=True,
                           format_func=METHOD_LABELS.get,
                           help="zero scales the selected weights by (1 - strength); the noise methods add strength "
                                "x N(0,1) or Laplace(0,1) noise (the authors' GN / LN baselines).")
    s2.caption(METHOD_CAPTIONS[method].capitalize() + ("." if method == "zero" else
               ": the authors' baseline.") + " Noise wrecks the other classes too: that is the lesson.")
    strength = common.shared(s1.slider, "Strength", "strength", 1.0, min_value=0.0, max_value=1.0, step=0.05,
                             help="0 = the original model, 1 = the full perturbation.")
    common.write_query_params(lm)
    after, variant = common.perturbed(explorer_key, explorer, strength, method)

    m1, m2, m3, m4 = st.columns([2, 2, 1, 3])
    m1.metric(f"Forget (class {lm.class_label(cls)})", common.pct(after.forget_acc),
              delta=f"{100 * (after.forget_acc - before.forget_acc):+.1f} points", delta_color="inverse",
              help="Share of the forget class's evaluation images still recognised; lower is better.")
    m2.metric("Retain (others)", common.pct(after.retain_acc),
              delta=f"{100 * (after.retain_acc - before.retain_acc):+.1f} points",
              help="Mean per-class accuracy over the other classes; it should stay where it was.")
    m3.metric("Units", f"{sum(units.values())}", help="Selected units whose weights are perturbed, summed over layers.")
    damaged = uf.collateral(before.per_class, after.per_class, cls)
    st.session_state["unl_collateral"] = damaged
    if damaged:
        m4.markdown(":red[**Collateral damage:** " + ", ".join(
            f"class {lm.class_label(c)} lost {100 * loss:.1f} points" for c, loss in damaged.items())
            + " (more than 2).]")
    else:
        m4.caption("No retain class lost more than 2 points (a class that does is marked in red in the bars).")

    left, right = st.columns([5, 6], gap="medium")
    with left:
        st.plotly_chart(uf.bars_before_after(lm.classes, before.per_class, after.per_class, cls,
                                             title=None),
                        key="unl_bars", config={"displayModeBar": False})
    with right:
        test_tab, own_tab = st.tabs(["Test image", "Your own image"])
        with test_tab:
            position = example_position()
            if position is not None:
                rule = config.lrp.rule
                before_map = common.heatmap_of(lm.checksum, lm.model, position, lm.dataset, cls, rule)
                after_map = common.heatmap_of(f"{explorer_key}|{strength}|{method}", variant, position, lm.dataset,
                                              cls, rule)
                image = ui.display_images(eval_set.images[position:position + 1], lm.card)[0]
                top_b = top_predictions(lm.model, eval_set.images[position])
                top_a = top_predictions(variant, eval_set.images[position])
                st.plotly_chart(uf.image_before_after(
                    image, before_map, after_map,
                    [f"test #{int(eval_set.indices[position])} (class {lm.classes[cls]})",
                     f"before: predicted {lm.classes[top_b[0][0]]}", f"after: predicted {lm.classes[top_a[0][0]]}"]),
                    key="unl_heatmaps",
                    config={"displayModeBar": False})
                st.session_state["unl_example_pred"] = {"before": top_b[0][0], "after": top_a[0][0]}
                e1, e2 = st.columns([1, 2])
                e1.number_input("Example image", 1, max(1, min(20, len(forget_positions))), 1, key="unl_example",
                                help="One of the forget class's evaluation images.", label_visibility="collapsed")
                e2.caption("LRP for the forget class, one colour scale. Red: evidence for it; it fades as the path "
                           "is perturbed.")
        with own_tab:
            own_image_panel(variant, strength, method)

    curve = common.sweep(explorer_key, explorer, method)
    w1, w2 = st.columns([5, 6], gap="medium")
    w1.plotly_chart(uf.sweep(curve["x"], curve["forget"], curve["retain"], strength,
                             x_title=f"{METHOD_LABELS[method]} strength (0 = original)"),
                    key="unl_sweep", config={"displayModeBar": False})
    w2.caption(f"Path found in {result.seconds['relevance_and_selection']:.2f} s from "
               f"{result.path.settings['n_images']} pool images of class {lm.class_label(cls)}: "
               + ", ".join(f"{n} of {result.path.selections[layer].width} units in {layer}" for layer, n in units.items())
               + f"; weights perturbed: {TARGET_LABELS[result.config.perturbation.target]}. "
               + common.reuse_sentence(explorer.reuse) + " The slider shows the path perturbation alone; the "
               "library's default also erases the class direction and relabels (the button below).")
    erase_section(variant, strength, method, after)


def erase_section(variant, strength: float, method: str, after) -> None:
    st.markdown("##### Inside the model: erase the class direction, relabel, repair")
    erase_key = f"erase|{explorer_key}|{strength}|{method}"
    e1, e2 = st.columns([2, 3], gap="large")
    if e1.button("Erase, relabel and repair", key="unl_erase",
                 help="The library default's last steps. A linear eraser (LEACE) fitted on the pool removes what "
                      "still separates the class in the layers before the classifier, folded into their weights; "
                      "then the classifier learns to give the class's images their second choice, as a model that "
                      "never learned the class would; then it is refitted so that the other classes' answers come "
                      "back to the original model's (the class's own weights untouched)."):
        with e2.status("Erasing, relabelling and repairing...", expanded=True) as status:
            summary, models = erase_and_relabel(lm.model, variant, pool, common.eval_caches(lm.checksum, lm), cls,
                                                step=status.write, activations=common.activations(lm.checksum, lm))
            ran = [name for name in ("erased", "relabelled", "repaired") if name in models] or ["done"]
            done_text = ", ".join(ran[:-1]) + (" and " if len(ran) > 1 else "") + ran[-1]
            status.update(label=done_text.capitalize() + ".", state="complete", expanded=False)
        st.session_state[erase_key] = (summary, models)
    done = st.session_state.get(erase_key)
    erasure = done[0] if done else None
    if erasure:
        names = [n for n in ("original", "perturbed", "erased", "relabelled", "repaired") if n in erasure]
        st.dataframe(
            [{"model": name, "forget accuracy": common.pct(erasure[name]["forget_acc"]),
              "retain accuracy": common.pct(erasure[name]["retain_acc"]),
              "probe finds the class": common.pct(erasure[name]["probe_recall"]),
              "entropy on forget images (nats)": round(erasure[name]["forget_entropy"], 2)}
             for name in names], hide_index=True, key="unl_erase_table")
        relabelling = erasure["relabelling"]
        e2.caption("Erased at: " + (", ".join(erasure["layers"]) or "no layer (each cost too much retain accuracy "
                                    "on the pool's validation part)") + ". Relabelling: "
                   + (f"strength {relabelling['strength']:.2f} ({relabelling['reason']})." if relabelling["strength"]
                      else relabelling["reason"] + "; no relabelled model.") + " Repair: "
                   + (f"strength {erasure['repair']['strength']:.2f} (validation retain "
                      f"{common.pct(erasure['repair']['retain_before'])} -> {common.pct(erasure['repair']['retain_after'])})."
                      if erasure["repair"]["strength"] else "not needed on the validation part; no repaired model."))
    else:
        e2.caption("Cutting the path stops the class at the output; its features can still be there inside, and "
                   "the class's images get an unusually flat softmax (high entropy), which a membership attack "
                   "notices. This runs the eraser, the relabelling and the repair on the current setting, step by step.")
    export_section(variant, strength, method, after, done)


def export_section(variant, strength: float, method: str, after, done) -> None:
    st.markdown("##### Membership inference and export")
    erasure = done[0] if done else None
    report = {"forget_class": cls, "class_name": lm.classes[cls], "dataset": lm.dataset, "arch": lm.card.arch,
              "model": lm.source, "model_sha256": lm.checksum, "method": method, "strength": strength,
              "config": config.override({"perturbation.method": method, "perturbation.strength": strength}).to_dict(),
              "per_class_before": before.per_class, "per_class_after": after.per_class,
              "forget_acc_before": before.forget_acc, "forget_acc_after": after.forget_acc,
              "retain_acc_before": before.retain_acc, "retain_acc_after": after.retain_acc,
              "collateral": {str(c): loss for c, loss in uf.collateral(before.per_class, after.per_class, cls).items()},
              "selected_units": result.path.units, "seconds_path": result.seconds["relevance_and_selection"],
              "analysis_images": result.path.settings["n_images"], "eval_size": len(eval_set)}
    if erasure:
        report["erasure"] = {k: ({a: b for a, b in v.items() if a != "per_class"} if isinstance(v, dict) and
                                 "forget_acc" in v else v) for k, v in erasure.items()}
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
        fmt = ui.model_file_format(lm)
        downloads = [("perturbed", variant)] + ([(name, done[1][name]) for name in ("erased", "relabelled", "repaired")
                                                 if name in done[1]] if done else [])
        for name, model in downloads:
            stem = f"{lm.dataset}-{lm.card.arch}-forget{cls}-{method}-{strength:.2f}" + \
                   ("" if name == "perturbed" else f"-{name}")

            def export(model=model):
                return ui.export_unlearned(model, lm.card, cls, report["config"], report, lm.source, fmt)

            st.markdown(f"**{name.capitalize()}** model")
            d1, d2, d3 = st.columns(3)
            d1.download_button("Model" if fmt != "safetensors" else "Weights", data=lambda e=export: e()[0],
                               file_name=f"{stem}.{fmt}", mime="application/octet-stream", key=f"unl_dl_weights_{name}",
                               icon=":material/download:",
                               help="The model in the format the original came in (safetensors with the model card in "
                                    "its metadata; an ONNX or .pt2 model as the same kind of file).")
            d2.download_button("Card", data=lambda e=export: e()[1], file_name=f"{stem}.json",
                               mime="application/json", key=f"unl_dl_card_{name}", icon=":material/description:")
            d3.download_button("Report", data=lambda e=export: e()[2], file_name=f"{stem}-report.json",
                               mime="application/json", key=f"unl_dl_report_{name}", icon=":material/summarize:")
        st.caption("Downloads the models for the current slider setting; the loaded model stays as it is.")


explore()
# The settings a step away, prepared while the person looks at this answer (full runs only: a slider
# move reruns the fragment above, with the same path).
common.prefetch_steps(lm, cls, target, st.session_state.get("cfg_method", "zero"),
                      st.session_state.get("cfg_strength", 1.0), example_position())
