"""Plotly figure builders for the dashboard: plain data in, ``go.Figure`` out (no Streamlit here).
Benchmark results are drawn by :mod:`core.bench.figures`, the one set of benchmark figures.

Only heatmap, scatter and bar traces are used (plus layout images for colour pictures), so
every figure renders with the plotly.js that Streamlit bundles. Accuracies come in as fractions
in [0, 1] and are drawn in percent. Relevance is drawn on a diverging scale centred at zero:
red = evidence for the explained class, blue = evidence against it.
"""
from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.plotly_style import template


RELEVANCE_SCALE = "RdBu_r"          # blue (negative) - white (0) - red (positive)
POLARITIES = ("both", "positive", "negative")
BEFORE_COLOR, AFTER_COLOR = "#7f8c9a", "#d9480f"
FORGET_COLOR, RETAIN_COLOR = "#d9480f", "#1c7ed6"
FONT = dict(size=13)


def _styled(title: str, height: int = 380, **layout) -> dict:
    """The dashboard's look as layout properties: the title on the left, the one template and font,
    ``height``, and ``layout`` on top (a default margin unless given)."""
    layout.setdefault("margin", dict(l=60, r=30, t=60, b=50))
    return dict(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=16)), template=template(),
                height=height, font=FONT, **layout)


def _style(fig: go.Figure, title: str, height: int = 380, **layout) -> go.Figure:
    fig.update_layout(**_styled(title, height, **layout))
    return fig


def _from_spec(data: list[dict], title: str, height: int = 380, **layout) -> go.Figure:
    """A figure built in one step from plain trace and layout dicts, styled as :func:`_style` styles one.

    Plotly validates the whole spec once here; building the same figure by its update methods
    (``make_subplots``, ``add_trace(row=, col=)``, ``update_layout``, ``add_annotation``...) validates at
    every call, 3-5x the time (30-90 ms a figure on this project's 2-core machine, a large share of a
    dashboard step: BENCHMARKS.md, "Dashboard response times")."""
    return go.Figure(data=data, layout=_styled(title, height, **layout))


def percent(values) -> list[float | None]:
    """Fractions to percent; NaN/None stay empty."""
    out = []
    for v in values:
        out.append(None if v is None or (isinstance(v, float) and math.isnan(v)) else 100.0 * float(v))
    return out


# ----------------------------------------------------------------------------- accuracy
def per_class_accuracy(classes: Sequence[str], per_class: Sequence[float], title: str = "Per-class test accuracy",
                       highlight: int | None = None) -> go.Figure:
    """One bar per class, accuracy in percent; ``highlight`` colours one class."""
    values = percent(per_class)
    colors = [FORGET_COLOR if c == highlight else RETAIN_COLOR for c in range(len(values))]
    fig = go.Figure(go.Bar(x=list(classes), y=values, marker_color=colors,
                           text=[f"{v:.1f}" if v is not None else "" for v in values], textposition="outside",
                           hovertemplate="class %{x}<br>accuracy %{y:.1f} %<extra></extra>"))
    fig.update_yaxes(title="accuracy (%)", range=[0, 109], ticksuffix=" %")
    fig.update_xaxes(title="class", type="category")
    return _style(fig, title, showlegend=False)


def accuracy_before_after(classes: Sequence[str], before: Sequence[float], after: Sequence[float],
                          forget_class: int, title: str = "Per-class accuracy, before and after") -> go.Figure:
    """Grouped bars: every class before (grey) and after (orange); the forget class is labelled."""
    labels = [f"<b>{name}</b>" if c == forget_class else str(name) for c, name in enumerate(classes)]
    b, a = percent(before), percent(after)
    fig = go.Figure([
        go.Bar(name="before", x=labels, y=b, marker_color=BEFORE_COLOR,
               hovertemplate="class %{x}<br>before %{y:.1f} %<extra></extra>"),
        go.Bar(name="after", x=labels, y=a, marker_color=AFTER_COLOR,
               text=[f"{v:.0f}" if v is not None else "" for v in a], textposition="outside",
               hovertemplate="class %{x}<br>after %{y:.1f} %<extra></extra>"),
    ])
    fig.update_layout(barmode="group", bargap=0.25, legend=dict(orientation="h", x=1, xanchor="right", y=1.12))
    if 0 <= forget_class < len(labels):
        fig.add_annotation(x=labels[forget_class], y=116, text="<b>forget</b>", showarrow=False,
                           font=dict(color=FORGET_COLOR, size=12), yanchor="top")
    ticks = [0, 20, 40, 60, 80, 100]
    fig.update_yaxes(title="accuracy (%)", range=[0, 118], tickvals=ticks, ticktext=[f"{t} %" for t in ticks])
    fig.update_xaxes(title="class", type="category")
    return _style(fig, title)


def strength_sweep(xs: Sequence[float], forget: Sequence[float], retain: Sequence[float], current_x: float,
                   current: tuple[float, float] | None = None, x_title: str = "perturbation strength",
                   title: str = "Forget and retain accuracy across strengths") -> go.Figure:
    """Forget and retain accuracy (percent) over a swept setting, with the current setting marked."""
    fig = go.Figure([
        go.Scatter(x=list(xs), y=percent(forget), name="forget class", mode="lines+markers",
                   line=dict(color=FORGET_COLOR, width=3), hovertemplate="%{x:.2f}: forget %{y:.1f} %<extra></extra>"),
        go.Scatter(x=list(xs), y=percent(retain), name="retain classes", mode="lines+markers",
                   line=dict(color=RETAIN_COLOR, width=3), hovertemplate="%{x:.2f}: retain %{y:.1f} %<extra></extra>"),
    ])
    if current is not None:
        fig.add_trace(go.Scatter(x=[current_x, current_x], y=percent(current), name="current setting", mode="markers",
                                 marker=dict(size=16, symbol="diamond", color="black", line=dict(color="white", width=2)),
                                 hovertemplate="current %{x:.2f}: %{y:.1f} %<extra></extra>"))
    fig.add_vline(x=current_x, line=dict(color="black", dash="dash", width=1))
    fig.update_yaxes(title="accuracy (%)", range=[-4, 108], ticksuffix=" %")
    fig.update_xaxes(title=x_title)
    fig.update_layout(legend=dict(orientation="h", x=1, xanchor="right", y=1.12))
    return _style(fig, title)


# ----------------------------------------------------------------------------- relevance maps
def relevance_scale(heatmap: np.ndarray, percentile: float = 99.0, polarity: str = "both") -> float:
    """The value mapped to full colour: the ``percentile`` of |R| over the shown polarity."""
    shown = np.abs(_polar(np.asarray(heatmap, dtype=float), polarity))
    nonzero = shown[shown > 0]
    if nonzero.size == 0:
        return 1.0
    scale = float(np.percentile(nonzero, percentile))
    return scale if scale > 0 else float(nonzero.max())


def _polar(h: np.ndarray, polarity: str) -> np.ndarray:
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {POLARITIES}, got {polarity!r}")
    if polarity == "positive":
        return np.clip(h, 0, None)
    if polarity == "negative":
        return np.clip(h, None, 0)
    return h


def clip_relevance(heatmap: np.ndarray, percentile: float = 99.0, polarity: str = "both",
                   scale: float | None = None) -> np.ndarray:
    """Relevance divided by its clipping value and clipped to [-1, 1] (0 stays 0)."""
    h = _polar(np.asarray(heatmap, dtype=float), polarity)
    scale = scale if scale is not None else relevance_scale(heatmap, percentile, polarity)
    return np.clip(h / (scale if scale > 0 else 1.0), -1.0, 1.0)


def _relevance_spec(z: np.ndarray, showscale: bool, name: str = "") -> dict:
    """A relevance heatmap trace (as a dict): [-1, 1] on the diverging scale, 0 white."""
    return dict(type="heatmap", z=z, zmin=-1, zmax=1, zmid=0, colorscale=RELEVANCE_SCALE, showscale=showscale,
                name=name, colorbar=dict(title=dict(text="relevance", side="right"), tickvals=[-1, 0, 1],
                                         ticktext=["- (against)", "0", "+ (for)"], len=0.9, thickness=14),
                hovertemplate="row %{y}, col %{x}<br>relevance %{z:.2f} of clip<extra></extra>")


def _relevance_trace(z: np.ndarray, showscale: bool, name: str = "") -> go.Heatmap:
    return go.Heatmap(**{k: v for k, v in _relevance_spec(z, showscale, name).items() if k != "type"})


def _image_png(image: np.ndarray) -> str:
    from PIL import Image

    pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _image_spec(image: np.ndarray, xaxis: str = "x", yaxis: str = "y") -> tuple[dict, dict | None]:
    """An image on axes (``xaxis``, ``yaxis``) as (heatmap trace, layout image or None): a grey image as
    a grey heatmap; a colour one as a PNG layout image over an invisible heatmap of its size."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return dict(type="heatmap", z=image, zmin=0, zmax=1, colorscale="gray", showscale=False, xaxis=xaxis,
                    yaxis=yaxis, hovertemplate="row %{y}, col %{x}<br>pixel %{z:.2f}<extra></extra>"), None
    h, w = image.shape[:2]
    return (dict(type="heatmap", z=np.zeros((h, w)), showscale=False, opacity=0, hoverinfo="skip", xaxis=xaxis,
                 yaxis=yaxis),
            dict(source=_image_png(image), xref=xaxis, yref=yaxis, x=-0.5, y=-0.5, sizex=w, sizey=h,
                 sizing="stretch", xanchor="left", yanchor="top", layer="below"))


def _add_image(fig: go.Figure, image: np.ndarray, row: int, col: int) -> None:
    """:func:`_image_spec` added to the subplot at (``row``, ``col``) of a ``make_subplots`` figure."""
    trace, picture = _image_spec(image)
    fig.add_trace(go.Heatmap(**{k: v for k, v in trace.items() if k not in ("type", "xaxis", "yaxis")}),
                  row=row, col=col)
    if picture is not None:
        added = fig.data[-1]
        fig.add_layout_image(dict(picture, xref=added.xaxis, yref=added.yaxis))


def _pixel_axes(suffix: str) -> tuple[dict, dict]:
    """(x axis, y axis) ``x{suffix}``/``y{suffix}`` of an image panel: no ticks or grid, pixels square,
    row 0 at the top."""
    plain = dict(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    return plain, dict(plain, autorange="reversed", scaleanchor="x" + suffix)


def _square_axes(fig: go.Figure) -> None:
    """Pixels square, row 0 at the top, no ticks (one layout update: Plotly's per-axis updates are slow)."""
    changes = {}
    for name in fig.layout:
        if name.startswith("xaxis"):
            suffix = name[5:]
            changes[name], changes["yaxis" + suffix] = _pixel_axes(suffix)
    fig.update_layout(changes)


def image_row_layout(titles: Sequence[str], spacing: float, title_size: int = 12) -> dict:
    """Layout for ``len(titles)`` image panels side by side, as ``make_subplots(rows=1, cols=n,
    subplot_titles=titles, horizontal_spacing=spacing)`` lays them out, with each panel's pixels
    square and row 0 on top: panel ``i`` (from 1) is on axes ``x{i}``/``y{i}`` ("x"/"y" for the first),
    each of width :math:`w = (1 - (n - 1) s) / n`, starting at :math:`(i - 1)(w + s)`."""
    n = len(titles)
    width = (1.0 - (n - 1) * spacing) / n
    layout: dict = {"annotations": []}
    for i, text in enumerate(titles):
        suffix = "" if i == 0 else str(i + 1)
        start = i * (width + spacing)
        x_axis, y_axis = _pixel_axes(suffix)
        layout["xaxis" + suffix] = dict(x_axis, anchor="y" + suffix, domain=[start, start + width])
        layout["yaxis" + suffix] = dict(y_axis, anchor="x" + suffix, domain=[0.0, 1.0])
        layout["annotations"].append(dict(text=text, x=start + width / 2, y=1.0, xref="paper", yref="paper",
                                          xanchor="center", yanchor="bottom", showarrow=False,
                                          font=dict(size=title_size)))
    return layout


def relevance_grid(images: np.ndarray, heatmaps: np.ndarray, titles: Sequence[str], percentile: float = 99.0,
                   polarity: str = "both", per_row: int = 3,
                   title: str = "Input relevance beside each image") -> go.Figure:
    """Pairs (image, heatmap) side by side, ``per_row`` pairs per row. Each heatmap is scaled to its
    own ``percentile`` of |R| so that every image's pattern is visible."""
    n = len(heatmaps)
    per_row = max(1, min(per_row, n))
    rows = max(1, math.ceil(n / per_row))
    subtitles = []
    for r in range(rows):
        for c in range(per_row):
            k = r * per_row + c
            subtitles += [titles[k] if k < n else "", "relevance" if k < n else ""]
    fig = make_subplots(rows=rows, cols=2 * per_row, subplot_titles=subtitles, horizontal_spacing=0.012,
                        vertical_spacing=0.12 if rows > 1 else 0.0)
    for k in range(n):
        r, c = k // per_row + 1, (k % per_row) * 2 + 1
        _add_image(fig, images[k], r, c)
        fig.add_trace(_relevance_trace(clip_relevance(heatmaps[k], percentile, polarity), showscale=k == 0), row=r, col=c + 1)
    _square_axes(fig)
    fig.update_annotations(font_size=12)
    return _style(fig, title, height=70 + 200 * rows, margin=dict(l=10, r=10, t=80, b=10))


def relevance_map(heatmap: np.ndarray, title: str, percentile: float = 99.0, polarity: str = "both",
                  height: int = 380) -> go.Figure:
    """One heatmap (e.g. a class's mean relevance), diverging scale centred at 0."""
    fig = go.Figure(_relevance_trace(clip_relevance(heatmap, percentile, polarity), showscale=True))
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed", scaleanchor="x",
                     constrain="domain")
    return _style(fig, title, height=height, margin=dict(l=10, r=10, t=60, b=10))


def relevance_before_after(image: np.ndarray, before: np.ndarray, after: np.ndarray, percentile: float = 99.0,
                           title: str = "Relevance for the forget class, before and after") -> go.Figure:
    """Image, relevance before, relevance after, both maps on the *before* map's scale so that
    vanishing evidence shows as fading colour."""
    scale = relevance_scale(before, percentile)
    fig = make_subplots(rows=1, cols=3, subplot_titles=["image", "before unlearning", "after unlearning"],
                        horizontal_spacing=0.03)
    _add_image(fig, image, 1, 1)
    fig.add_trace(_relevance_trace(clip_relevance(before, scale=scale), showscale=False), row=1, col=2)
    fig.add_trace(_relevance_trace(clip_relevance(after, scale=scale), showscale=True), row=1, col=3)
    _square_axes(fig)
    return _style(fig, title, height=300, margin=dict(l=10, r=10, t=70, b=10))


def top_units(layer: str, relevance: np.ndarray, top: int = 15, word: str = "unit",
              title: str | None = None) -> go.Figure:
    """The ``top`` units of a layer by mean relevance (over images when 2-D), largest first."""
    values = np.asarray(relevance, dtype=float)
    mean = values.mean(0) if values.ndim == 2 else values
    order = np.argsort(-mean)[:top]
    short = "ch" if word == "channel" else "u"
    fig = go.Figure(go.Bar(x=[f"{short} {i}" for i in order], y=mean[order],
                           marker_color=["#c92a2a" if v >= 0 else "#1864ab" for v in mean[order]],
                           customdata=order, hovertemplate=f"{word} %{{customdata}}<br>mean relevance %{{y:.3g}}<extra></extra>"))
    fig.update_xaxes(title=f"{word} (most relevant first)", type="category", tickangle=-45)
    fig.update_yaxes(title="mean relevance")
    return _style(fig, title or f"{layer}: top {len(order)} of {len(mean)} {word}s", height=300,
                  margin=dict(l=60, r=10, t=50, b=70), showlegend=False)


# ----------------------------------------------------------------------------- paths
def path_overlap(layers: Sequence[str], class_labels: Sequence[str], matrix: np.ndarray, forget_index: int,
                 title: str = "Overlap with other classes' paths (Jaccard of selected units)") -> go.Figure:
    """Heatmap: rows = layers, columns = classes, value = |A n B| / |A u B| of selected units."""
    labels = [f"{name} (forget)" if c == forget_index else str(name) for c, name in enumerate(class_labels)]
    z = np.asarray(matrix, dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=list(layers), zmin=0, zmax=1, colorscale="Blues",
                               text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}",
                               colorbar=dict(title=dict(text="Jaccard"), thickness=14),
                               hovertemplate="layer %{y}<br>class %{x}<br>overlap %{z:.2f}<extra></extra>"))
    fig.update_xaxes(title="class", type="category")
    fig.update_yaxes(title="layer", type="category", autorange="reversed")
    return _style(fig, title, height=140 + 50 * len(layers))


# ----------------------------------------------------------------------------- predictions
def confusion_before_after(classes: Sequence[str], before: np.ndarray, after: np.ndarray, forget_class: int,
                           title: str = "Which class the model answers, before and after unlearning") -> go.Figure:
    """Two confusion matrices side by side (rows: true class, columns: predicted class), each row in
    percent of that class's images: M[t, p] / sum_p M[t, p]. Before unlearning the diagonal holds
    nearly everything; after it, the forget class's row spreads over the other columns and its
    column empties. Benchmark figures live in :mod:`core.bench.figures`."""
    labels = [f"{name} (forget)" if c == forget_class else str(name) for c, name in enumerate(classes)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["before unlearning", "after unlearning"],
                        horizontal_spacing=0.06)
    for col, matrix in ((1, before), (2, after)):
        counts = np.asarray(matrix, dtype=float)
        share = 100 * counts / np.maximum(counts.sum(1, keepdims=True), 1)
        fig.add_trace(go.Heatmap(
            z=share, x=labels, y=labels, zmin=0, zmax=100, colorscale="Blues", showscale=col == 2,
            text=[[f"{v:.0f}" if v >= 0.5 else "" for v in row] for row in share], texttemplate="%{text}",
            customdata=counts, colorbar=dict(title=dict(text="% of row"), thickness=12, len=0.9),
            hovertemplate="true %{y}<br>predicted %{x}<br>%{z:.1f} % (%{customdata:.0f} images)<extra></extra>"),
            row=1, col=col)
        fig.update_xaxes(title="predicted class", type="category", tickangle=-45, row=1, col=col)
        fig.update_yaxes(type="category", autorange="reversed", row=1, col=col, showticklabels=col == 1,
                         title="true class" if col == 1 else None)
    return _style(fig, title, height=max(380, 140 + 30 * len(labels)), margin=dict(l=80, r=20, t=80, b=100))
