"""core/ui/figures: data in, go.Figure out, with the scales, units and marks the pages rely on."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from pathlib import Path

from core.bench import figures as BF
from core.ui import figures as F
from core.attribution.paths import LayerSelection, NeuronPath


ALLOWED = {"heatmap", "scatter", "bar", "sankey"}      # what Streamlit's bundled plotly.js must draw


def trace_types(fig: go.Figure) -> set[str]:
    return {t.type for t in fig.data}


def test_per_class_accuracy_in_percent_with_highlight():
    fig = F.per_class_accuracy(["a", "b", "c"], [1.0, 0.5, float("nan")], highlight=1)
    bar = fig.data[0]
    assert list(bar.y) == [100.0, 50.0, None]
    assert bar.marker.color[1] == F.FORGET_COLOR and bar.marker.color[0] == F.RETAIN_COLOR
    assert fig.layout.yaxis.title.text == "accuracy (%)" and fig.layout.title.text
    assert trace_types(fig) <= ALLOWED


def test_before_after_bars_are_grouped_and_mark_the_forget_class():
    fig = F.accuracy_before_after(["0", "1", "2"], [0.9, 0.8, 1.0], [0.0, 0.8, 0.95], forget_class=0)
    assert [t.name for t in fig.data] == ["before", "after"] and fig.layout.barmode == "group"
    assert list(fig.data[1].y) == pytest.approx([0.0, 80.0, 95.0])
    assert fig.data[0].x[0] == "<b>0</b>" and fig.data[0].x[1] == "1"
    assert fig.layout.annotations[0].text == "<b>forget</b>" and fig.layout.annotations[0].x == "<b>0</b>"
    assert list(fig.layout.yaxis.ticktext)[-1] == "100 %"


def test_clip_relevance_is_symmetric_bounded_and_polar():
    h = np.array([[-4.0, -1.0], [0.0, 2.0]])
    both = F.clip_relevance(h, percentile=100)
    assert both.max() <= 1 and both.min() == -1 and both[1, 0] == 0
    assert F.clip_relevance(h, 100, "positive").min() == 0
    assert F.clip_relevance(h, 100, "negative").max() == 0
    assert F.clip_relevance(h, scale=1.0)[0, 0] == -1 and F.clip_relevance(h, scale=8.0)[0, 0] == -0.5
    assert F.relevance_scale(np.zeros((2, 2))) == 1.0                       # all-zero maps do not divide by 0
    with pytest.raises(ValueError):
        F.clip_relevance(h, polarity="sideways")


def test_relevance_grid_puts_heatmaps_beside_images_on_a_diverging_scale():
    rng = np.random.default_rng(0)
    images, maps = rng.random((4, 8, 8, 1)), rng.normal(size=(4, 8, 8))
    fig = F.relevance_grid(images, maps, [f"img {i}" for i in range(4)], per_row=2)
    relevance = [t for t in fig.data if t.zmid == 0]
    pictures = [t for t in fig.data if t.colorscale and t.colorscale[0][1].startswith("rgb(0")]
    assert len(relevance) == 4 and len(pictures) == 4
    assert all(t.zmin == -1 and t.zmax == 1 for t in relevance)
    assert sum(bool(t.showscale) for t in relevance) == 1                   # one colour bar
    assert fig.layout.yaxis.autorange == "reversed"                          # row 0 on top, like an image
    assert trace_types(fig) <= ALLOWED
    colour = F.relevance_grid(rng.random((1, 8, 8, 3)), maps[:1], ["rgb"])
    assert len(colour.layout.images) == 1 and colour.layout.images[0].source.startswith("data:image/png;base64,")


def test_before_after_heatmaps_share_the_before_scale():
    before = np.array([[2.0, -2.0], [1.0, 0.0]])
    fig = F.relevance_before_after(np.zeros((2, 2, 1)), before, before / 2, percentile=100)
    b, a = (t for t in fig.data if t.zmid == 0)
    assert np.allclose(np.asarray(a.z), np.asarray(b.z) / 2)                 # fading shows as paler colour


def test_top_units_sorted_and_labelled():
    rel = np.array([[0.1, 3.0, -1.0, 2.0], [0.1, 1.0, -1.0, 2.0]])
    fig = F.top_units("relu1", rel, top=3, word="channel")
    assert list(fig.data[0].x) == ["ch 1", "ch 3", "ch 0"]
    assert list(fig.data[0].y) == pytest.approx([2.0, 2.0, 0.1])
    assert "3 of 4 channels" in fig.layout.title.text and fig.layout.yaxis.title.text == "mean relevance"


def _path() -> NeuronPath:
    sel_a = LayerSelection("a", [5, 1, 2], [1.0, 0.5, 0.25], [2.0, 1.0, -0.5], 32, 3, 3)
    sel_b = LayerSelection("b", [7, 9], [1.0, 1.0], [0.4, 0.2], 64, 2, 2)
    edges = [{"lower": "a", "i": 5, "upper": "b", "j": 7, "flow": 1.0},
             {"lower": "a", "i": 1, "upper": "b", "j": 9, "flow": -0.5},
             {"lower": "a", "i": 2, "upper": "b", "j": 9, "flow": 0.001},   # too small to draw
             {"lower": "a", "i": 99, "upper": "b", "j": 7, "flow": 2.0}]    # unit not drawn
    return NeuronPath(3, {"a": sel_a, "b": sel_b}, edges)


def test_path_graph_nodes_edges_outputs_and_fading():
    """The path the Unlearn page perturbs: units per layer (size by frequency, colour by relevance),
    relevance flows between layers (tiny and undrawn-unit edges skipped), edges into the output
    classes from the last layer's weights, everything fading as the strength rises."""
    from core.ui.unlearn_figures import path_graph

    path = _path()
    weights = {"b": np.zeros((10, 64))}
    weights["b"][3, 7], weights["b"][4, 9] = 2.0, -1.0
    fig = path_graph(path, [str(c) for c in range(10)], strength=0.0, max_units=2, edges=path.edges,
                     out_weights=weights)
    nodes = [t for t in fig.data if t.name == "units"][0]
    assert list(nodes.x) == [0, 0, 1, 1] and list(nodes.text) == ["5", "1", "7", "9"]
    assert nodes.marker.size[0] > nodes.marker.size[1] and nodes.marker.color[0] == 1.0
    assert [list(c) for c in nodes.customdata][2] == ["b", 7]
    outputs = [t for t in fig.data if t.name == "outputs"][0]
    assert len(outputs.x) == 10 and outputs.marker.size[3] > outputs.marker.size[0]      # the forget class stands out
    lines = [t for t in fig.data if t.mode == "lines"]
    assert sum(list(t.x).count(None) for t in lines) == 4      # 2 flows + 2 output weights; tiny/undrawn skipped
    faded = path_graph(path, [str(c) for c in range(10)], strength=1.0, max_units=2, edges=path.edges,
                       out_weights=weights)
    assert [t for t in faded.data if t.name == "units"][0].marker.opacity < nodes.marker.opacity


def test_path_overlap_heatmap():
    fig = F.path_overlap(["a", "b"], ["0", "1", "2"], np.array([[1.0, 0.2, 0.0], [1.0, 0.5, 0.1]]), forget_index=0)
    heat = fig.data[0]
    assert heat.zmin == 0 and heat.zmax == 1 and list(heat.x)[0] == "0 (forget)"
    assert heat.text[1][1] == "0.50"


def test_strength_sweep_marks_the_current_setting():
    fig = F.strength_sweep([0, 0.5, 1], [0.9, 0.4, 0.0], [0.98, 0.97, 0.96], 0.5, (0.4, 0.97))
    assert [t.name for t in fig.data] == ["forget class", "retain classes", "current setting"]
    assert list(fig.data[0].y) == pytest.approx([90, 40, 0]) and list(fig.data[2].x) == [0.5, 0.5]
    assert any(shape.x0 == 0.5 for shape in fig.layout.shapes)
    assert fig.layout.yaxis.title.text == "accuracy (%)"


def test_confusion_before_after_rows_in_percent_and_the_forget_class_named():
    before = np.array([[8, 2, 0], [0, 10, 0], [1, 0, 4]])
    after = np.array([[0, 7, 3], [0, 10, 0], [0, 0, 5]])
    fig = F.confusion_before_after(["a", "b", "c"], before, after, forget_class=0)
    left, right = fig.data
    assert trace_types(fig) == {"heatmap"} and list(left.x)[0] == "a (forget)" == list(left.y)[0]
    assert np.asarray(left.z)[0].tolist() == pytest.approx([80, 20, 0]) and np.asarray(left.z)[2][0] == pytest.approx(20)
    assert np.asarray(right.z)[0].tolist() == pytest.approx([0, 70, 30])
    assert np.asarray(right.customdata)[0].tolist() == [0, 7, 3]              # the counts behind the percentages
    assert [a.text for a in fig.layout.annotations][:2] == ["before unlearning", "after unlearning"]


# ----------------------------------------------------------------------------- benchmark figures (core.bench)
STORED = sorted((Path(__file__).resolve().parents[1] / "assets" / "bench").glob("*/runs.csv"))


def stored(name: str) -> pd.DataFrame:
    return pd.read_csv(next(p for p in STORED if p.parent.name == name))


def points(fig: go.Figure) -> dict[str, go.Scatter]:
    """The mean marker of each method (the traces shown in the legend)."""
    return {t.name: t for t in fig.data if t.showlegend is not False}


def test_forget_retain_on_stored_runs_draws_retrain_last_and_lists_it_first():
    runs = stored("quick")
    fig = BF.fig_forget_retain(runs, "mnist", "cnn")
    assert fig.data[-1].name == "retrain" and fig.data[-1].marker.symbol == "star"       # on top of the others
    shown = points(fig)
    assert min(shown, key=lambda m: shown[m].legendrank) == "retrain"
    part = runs[(runs["dataset"] == "mnist") & (runs["arch"] == "cnn")]
    for method in ("retrain", "ours", "original"):
        rows = part[part["method"] == method]
        assert list(shown[method].x) == pytest.approx([100 * rows["forget_acc"].mean()])
        assert list(shown[method].y) == pytest.approx([100 * rows["retain_acc"].mean()])
    assert "forget" in fig.layout.xaxis.title.text and "retain" in fig.layout.yaxis.title.text
    assert "fresh model" in shown["retrain"].hovertemplate                 # the registry's one-line description
    assert len(fig.layout.shapes) == 2 and trace_types(fig) <= ALLOWED


def test_a_method_keeps_its_colour_across_files_and_figures():
    quick, cifar = stored("quick"), stored("cpu-cifar10-ours")
    a = points(BF.fig_forget_retain(quick, "digits", "cnn"))
    b = points(BF.fig_forget_retain(cifar))                  # other methods present, in another order
    for method in set(a) & set(b):
        assert a[method].marker.color == b[method].marker.color == BF.method_color(method)
    assert len({BF.method_color(m) for m in a}) == len(a)      # no two methods share a colour
    times = {t.name: t.marker.color for t in BF.fig_seconds(quick, "digits", "cnn").data}
    assert "original" not in times and all(times[m] == BF.method_color(m) for m in times)


def test_seconds_and_metric_figures_on_stored_runs():
    runs = stored("full-mnist")
    times = BF.fig_seconds(runs)
    assert times.layout.yaxis.type == "log" and {t.name for t in times.data} >= {"retrain", "ours"}
    assert list(times.data[0].x) == ["mnist / allcnn", "mnist / cnn"]         # one bar per model
    mia = BF.fig_metric(runs, "mia_entropy", "mnist", "cnn")
    part = runs[(runs["dataset"] == "mnist") & (runs["arch"] == "cnn")]
    ref = part.loc[part["method"] == "retrain", "mia_entropy"].mean()
    assert list(mia.data[0].x)[:2] == ["retrain", "original"]
    assert mia.data[0].y[0] == pytest.approx(ref) and any(s.y0 == pytest.approx(ref) for s in mia.layout.shapes)


def test_the_unlearn_pages_image_panels_sit_side_by_side_square_and_on_the_before_scale():
    """image_before_after is built from one plain spec: three panels whose domains do not overlap,
    titled above their centres, pixels square with row 0 on top, the after map on the before map's
    scale; a colour image is a PNG layout image on the first panel's axes."""
    from core.ui.unlearn_figures import image_before_after

    rng = np.random.default_rng(0)
    before = rng.normal(size=(8, 8))
    fig = image_before_after(rng.random((8, 8)), before, before / 2, ["image", "before", "after"], percentile=100)
    layout = fig.layout
    domains = [layout[f"xaxis{s}"].domain for s in ("", "2", "3")]
    assert domains[0][0] == 0 and domains[-1][1] == pytest.approx(1)
    assert all(a[1] + 0.06 == pytest.approx(b[0]) for a, b in zip(domains, domains[1:]))    # 0.06 apart
    assert [a.text for a in layout.annotations] == ["image", "before", "after"]
    assert [a.x for a in layout.annotations] == pytest.approx([(d[0] + d[1]) / 2 for d in domains])
    for s in ("", "2", "3"):
        assert layout[f"yaxis{s}"].autorange == "reversed" and layout[f"yaxis{s}"].scaleanchor == f"x{s}"
    _, b, a = fig.data
    assert (b.xaxis, a.xaxis) == ("x2", "x3") and np.allclose(np.asarray(a.z), np.asarray(b.z) / 2)
    colour = image_before_after(rng.random((8, 8, 3)), before, before, ["a", "b", "c"])
    assert len(colour.layout.images) == 1 and colour.layout.images[0].xref == "x"
    assert colour.layout.images[0].source.startswith("data:image/png;base64,") and trace_types(colour) <= ALLOWED


def test_the_unlearn_pages_bars_and_sweep_mark_damage_and_the_current_strength():
    from core.ui.unlearn_figures import bars_before_after, sweep

    fig = bars_before_after(["0", "1", "2"], [0.9, 0.95, 0.8], [0.0, 0.9, 0.79], forget_class=0)
    after = fig.data[1]
    assert list(after.marker.color) == [F.AFTER_COLOR, "#c92a2a", F.AFTER_COLOR]   # class 1 lost 5 points
    assert [a.text for a in fig.layout.annotations] == ["<b>0</b>", "<b>-5.0</b>"] and fig.layout.barmode == "group"
    curve = sweep([0, 0.5, 1], [0.9, 0.4, 0.0], [0.98, 0.97, 0.96], 0.5, "strength")
    assert [t.name for t in curve.data] == ["forget class", "retain classes"] and list(curve.data[0].y) == [90, 40, 0]
    assert curve.layout.shapes[0].x0 == 0.5 and curve.layout.shapes[0].yref == "y domain"
    assert curve.layout.xaxis.title.text == "strength" and not curve.layout.showlegend
