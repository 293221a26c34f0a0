"""Relevance: LRP heatmaps of a class's analysis-pool images and the most relevant units per layer."""
from __future__ import annotations

import streamlit as st
from pages import common

from core import ui
from core.ui import figures
from core.attribution.rules import RULES
from core.errors import UserError


common.ensure_navigation()

st.title("Relevance")
st.caption("Layer-wise Relevance Propagation (LRP) starts at the model's predicted class and hands the score back, "
           "layer by layer, to the pixels and units that produced it. Red marks evidence **for** the prediction, "
           "blue evidence **against** it. Images come from the analysis pool: held-out test images the unlearning "
           "may look at, never used for training.")

lm = common.current_model()
layers_all = ui.analysable_layers(lm.model, lm.card)

c1, c2, c3 = st.columns([1, 1, 2])
cls = common.class_selectbox("Class", lm, key="rel_class", container=c1)
rule = c2.selectbox("LRP rule", RULES, key="rel_rule",
                    help="epsilon: the authors' rule (eps = 0.1). epsilon-plus-flat: zennit's recipe for CNNs. "
                         "alpha/beta and gamma favour positive evidence.")
layers = c3.multiselect("Layers for the unit charts", layers_all, default=layers_all[-3:], key="rel_layers",
                        help="Stage outputs whose units (or channels, for convolutions) are ranked below.")

try:
    rel = common.class_relevance(lm.checksum, lm, cls, rule, tuple(layers))
except UserError as exc:
    common.fail(exc)

n = len(rel.positions)
labels = {p: f"#{rel.test_indices[p]}" for p in rel.positions}
c1, c2, c3 = st.columns([2, 1, 1])
chosen = c1.multiselect(f"Images of class {lm.class_label(cls)} from the analysis pool ({n} available; "
                        "test-split numbers)",
                        rel.positions, default=rel.positions[:3], format_func=labels.get, max_selections=9,
                        key=f"rel_images_{cls}")
percentile = c2.slider("Clip at percentile of |relevance|", 80.0, 100.0, 99.0, 0.5, key="rel_clip",
                       help="Relevance above this percentile is drawn at full colour, so a few extreme pixels "
                            "do not wash out the rest.")
polarity = c3.radio("Show", figures.POLARITIES, horizontal=True, key="rel_polarity",
                    format_func={"both": "both", "positive": "for (red)", "negative": "against (blue)"}.get)

if not chosen:
    st.info("Pick at least one image above.")
else:
    titles = [f"#{rel.test_indices[p]}: predicted {lm.classes[rel.predicted[p]]}" for p in chosen]
    st.plotly_chart(figures.relevance_grid(rel.images[chosen], rel.heatmaps[chosen], titles, percentile, polarity,
                                           title=f"Input relevance of class {lm.class_label(cls)} images ({rule} rule)"),
                    key="rel_grid")
    st.caption("Each heatmap is scaled to its own clipping value (colour bar: fraction of it), so patterns are "
               "comparable across images even when their scores differ.")

left, right = st.columns([1, 2], gap="large")
with left:
    mean_map = rel.heatmaps.mean(0)
    st.plotly_chart(figures.relevance_map(mean_map, f"Class mean ({n} images)", percentile, polarity,
                                          height=360), key="rel_mean")
    st.caption(f"Mean input relevance over all {n} pool images of the class: where the model looks, on average, "
               "when it sees this class.")
with right:
    if not layers:
        st.info("Pick layers above to see their most relevant units.")
    for layer in layers:
        word = ui.unit_word(lm.model, lm.card, layer)
        data = rel.layers[layer][chosen] if chosen else rel.layers[layer]
        st.plotly_chart(figures.top_units(layer, data, top=15, word=word,
                                          title=f"{layer}: the 15 most relevant {word}s "
                                                f"(mean over {len(chosen) or n} images)"),
                        key=f"rel_units_{layer}")
    if layers:
        st.caption("Relevance of a convolution channel is summed over its positions. These units are what the "
                   "Neuron paths and Unlearn pages select and perturb.")
