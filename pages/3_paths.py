"""Neuron paths: the path the Unlearn page perturbs, drawn into the output classes, unit by unit.

The selection (layers, K, H, rule, target) is the Unlearn page's (pages/common.py keeps one set of
settings for both), so the graph is exactly what is perturbed; click a unit to see what it detects.
"""
from __future__ import annotations


import streamlit as st
from pages import common

from core import ui
from core.errors import UserError
from core.ui import unlearn_figures as uf
from core.ui.figures import path_overlap


common.ensure_navigation()

st.title("Neuron paths")
lm = common.current_model()
common.warm_up(lm.checksum, lm)
pool, _ = common.heldout(lm.dataset, common.data_dir())

c1, c2, c3 = st.columns([1, 1, 4])
cls = common.forget_class_box(lm, "Class", c1)
shown = c2.slider("Units drawn per layer", 3, 12, 8, key="path_shown",
                  help="The graph draws the most important perturbed units of each layer.")
with c3.expander("Path settings (shared with Unlearn)", expanded=False):
    config = common.path_settings(lm)
if config is None:
    st.info("Pick at least one layer.")
    st.stop()
config = common.with_target(config, st.session_state.get("cfg_target", "auto"))
try:
    config_key = repr(config)
    result, _ = common.unlearned(lm.checksum, lm, cls, config_key, config)
except UserError as exc:
    common.fail(exc)
path = result.path
n_images = path.settings["n_images"]
st.caption(f"The path of class {lm.class_label(cls)} that the Unlearn page perturbs: per analysed layer, the units "
           f"carrying its evidence in {n_images} pool images of the class (LRP), chosen by "
           f"{path.settings['selection']} selection; weights perturbed: {result.config.perturbation.target}. "
           "Units fade as the Unlearn page's strength rises.")
common.write_query_params(lm)

edges = common.path_edges(lm.checksum, lm, cls, config_key, path, shown)
graph = ui.model_graph(lm.model, lm.card)
last = list(path.selections)[-1]
out_weights = {}
if graph.default_layer() == last:
    out_weights[last] = lm.model.get_submodule(graph.classifier()).weight.detach().cpu().numpy()
strength = float(st.session_state.get("cfg_strength", 1.0))
selected = st.session_state.get("path_unit")
event = st.plotly_chart(uf.path_graph(path, lm.classes, strength, shown, edges, out_weights,
                                      tuple(selected) if selected else None),
                        key="path_graph", on_select="rerun", selection_mode="points",
                        config={"displayModeBar": False})
points = [p for p in (event.selection.points if event and event.selection else []) if p.get("customdata")]
if points:
    layer, unit = points[0]["customdata"][:2]
    st.session_state["path_unit"] = [str(layer), int(unit)]
st.caption(f"Node size: share of the class's images whose top-K holds the unit; colour: its mean relevance (÷ the "
           f"layer's largest). Lines between layers: relevance flowing between drawn units (red +, blue -); into the "
           f"outputs: the last layer's weights to each class (the strongest quarter). Faded at strength "
           f"{strength:.2f}. Click a unit to see what it detects.")

unit_choice = st.session_state.get("path_unit")
if unit_choice and unit_choice[0] in path.selections:
    layer, unit = unit_choice
    try:
        detail = common.unit_detail(lm.checksum, lm, layer, int(unit), cls, config.lrp.rule)
    except UserError as exc:
        common.fail(exc)
    st.plotly_chart(uf.unit_detail(detail["images"], detail["activations"], detail["mean_map"],
                                   title=f"{layer} unit {unit}: its {len(detail['images'])} top-activating pool "
                                         f"images (of {detail['pool_size']}) and their mean relevance"),
                    key="path_unit_detail", config={"displayModeBar": False})
    st.caption(f"Activation above each image; the map is the mean LRP heatmap of those images for their predicted "
               f"class. Classes among them: {', '.join(lm.classes[c] for c in detail['labels'])}.")
else:
    st.info("Click a unit in the graph to see its top-activating pool images and their mean relevance map.")

with st.expander("Perturbed units per layer", expanded=False):
    for layer, sel in path.selections.items():
        st.markdown(f"**{layer}** ({len(sel.units)} of {sel.width} units): "
                    + ", ".join(str(u) for u in sel.units[:60]) + (" ..." if len(sel.units) > 60 else ""))

st.subheader("How specific is this path?")
if st.toggle("Compare with every class's path", key="path_overlap_on",
             help="Finds the path of each class with the same settings (the first time, about a second per class)."):
    try:
        paths = common.all_paths(lm.checksum, lm, config_key, config)
    except UserError as exc:
        common.fail(exc)
    names, classes, matrix = ui.path_overlap(paths, cls)
    st.plotly_chart(path_overlap(names, [lm.classes[c] for c in classes], matrix, cls,
                                 title=f"Overlap of class {lm.class_label(cls)}'s path with each class's path"),
                    key="path_overlap")
    others = [c for c in classes if c != cls]
    mean_overlap = matrix[:, others].mean(1) if others else matrix[:, 0]
    summary = "; ".join(f"{layer}: {100 * v:.0f} %" for layer, v in zip(names, mean_overlap))
    st.caption(f"Jaccard overlap |A ∩ B| / |A ∪ B| of the perturbed units: 1 = the same units, 0 = none shared. "
               f"Mean overlap with the other classes: {summary}. Low overlap means perturbing this path should "
               "spare the other classes.")

