"""Neuron paths: a class's selected units per layer and the relevance flowing between them."""
from __future__ import annotations

import streamlit as st
from pages import common

from core import ui
from core.ui import figures
from core.attribution.relevance import RULES
from core.errors import UserError


common.ensure_navigation()

st.title("Neuron paths")
st.caption("A class's *path* is, per analysed layer, the units that carry its evidence. For each of 36 pool "
           "images of the class, keep the top-K units by relevance; then keep the H units chosen most often "
           "(frequency) or whose relevance share is highest for this class compared with the others (contrast). "
           "Edges show how much relevance flows from a unit to a unit one layer closer to the input.")

lm = common.current_model()
layers_all = ui.analysable_layers(lm.model, lm.card)

c1, c2, c3 = st.columns([1, 2, 1])
cls = common.class_selectbox("Class", lm, key="path_class", container=c1)
layers = c2.multiselect("Layers (input side first)", layers_all, default=layers_all[-3:], key="path_layers")
selection = c3.selectbox("Selection", ["frequency", "contrast"], key="path_selection",
                         help="frequency: the authors' top-K counting. contrast: units relevant for this class "
                              "but not for the others.")
c1, c2, c3, c4 = st.columns(4)
k_pct = c1.slider("K: top units per image (% of layer)", 1, 50, 10, key="path_k")
h_pct = c2.slider("H: units kept per layer (% of layer)", 1, 60, 20, key="path_h")
shown = c3.slider("Units drawn per layer", 3, 12, 8, key="path_shown",
                  help="The graph draws the most important selected units and the relevance between them.")
rule = c4.selectbox("LRP rule", RULES, key="path_rule")

if not layers:
    st.info("Pick at least one layer.")
    st.stop()

try:
    path = common.neuron_path(lm.checksum, lm, cls, tuple(layers), k_pct / 100, h_pct / 100, selection, rule, shown)
except UserError as exc:
    common.fail(exc)

st.plotly_chart(figures.neuron_path(path, max_units=shown, class_label=lm.class_label(cls)), key="path_graph")
st.caption("Node size: share of the class's images whose top-K holds the unit. Node colour: its mean relevance, "
           "divided by the largest in its layer (layers differ in scale). "
           "Edge width: relevance flowing between two drawn units (red: supporting, blue: opposing; flows under "
           "5 % of the largest are hidden). Hover a node or an edge's middle for numbers.")

with st.expander("Selected units per layer", expanded=False):
    for layer, sel in path.selections.items():
        st.markdown(f"**{layer}** ({sel.h} of {sel.width} units, K = {sel.k}): "
                    + ", ".join(str(u) for u in sel.units[:60]) + (" ..." if len(sel.units) > 60 else ""))

st.subheader("How specific is this path?")
try:
    paths = common.all_paths(lm.checksum, lm, tuple(layers), k_pct / 100, h_pct / 100, selection, rule)
except UserError as exc:
    common.fail(exc)
names, classes, matrix = ui.path_overlap(paths, cls)
st.plotly_chart(figures.path_overlap(names, [lm.classes[c] for c in classes], matrix, cls,
                                     title=f"Overlap of class {lm.class_label(cls)}'s path with each class's path"),
                key="path_overlap")
others = [c for c in classes if c != cls]
mean_overlap = matrix[:, others].mean(1) if others else matrix[:, 0]
summary = "; ".join(f"{layer}: {100 * v:.0f} %" for layer, v in zip(names, mean_overlap))
st.caption(f"Jaccard overlap |A ∩ B| / |A ∪ B| of the selected units: 1 = the same units, 0 = none shared. "
           f"Mean overlap with the other classes: {summary}. Low overlap means perturbing this path should "
           "spare the other classes.")
