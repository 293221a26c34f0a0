"""Figures of the Unlearn and Neuron paths pages, sized to share one screen (1024 x 768 and up).

Per-class bars with the collateral damage marked, the strength sweep with its legend clear of the
curves, an image beside its relevance before and after, and the perturbed path drawn into the
output classes, fading as the strength rises. Plain data in, ``go.Figure`` out (no Streamlit here).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.ui.figures import (AFTER_COLOR, BEFORE_COLOR, FORGET_COLOR, RELEVANCE_SCALE, RETAIN_COLOR, _add_image,
                             _from_spec, _image_spec, _relevance_spec, _relevance_trace, _square_axes, _style,
                             clip_relevance, image_row_layout, percent, relevance_scale)

COLLATERAL = 0.02            # a retain class that lost more than this (2 points) is marked
DAMAGE_COLOR = "#c92a2a"


def collateral(before: Sequence[float], after: Sequence[float], forget_class: int,
               threshold: float = COLLATERAL) -> dict[int, float]:
    """Retain classes whose accuracy fell by more than ``threshold``: {class: loss (fraction)}."""
    return {c: float(b - a) for c, (b, a) in enumerate(zip(before, after))
            if c != forget_class and b - a > threshold + 1e-12}


def bars_before_after(classes: Sequence[str], before: Sequence[float], after: Sequence[float], forget_class: int,
                      title: str | None = None, height: int = 235) -> go.Figure:
    """Grouped bars before (grey) / after (orange); the forget class labelled, and every retain class
    that lost more than 2 points marked in red with its loss."""
    labels = [f"<b>{name}</b>" if c == forget_class else str(name) for c, name in enumerate(classes)]
    b, a = percent(before), percent(after)
    damaged = collateral(before, after, forget_class)
    data = [dict(type="bar", name="before", x=labels, y=b, marker=dict(color=BEFORE_COLOR),
                 hovertemplate="class %{x}<br>before %{y:.1f} %<extra></extra>"),
            dict(type="bar", name="after", x=labels, y=a,
                 marker=dict(color=[DAMAGE_COLOR if c in damaged else AFTER_COLOR for c in range(len(labels))]),
                 hovertemplate="class %{x}<br>after %{y:.1f} %<extra></extra>")]
    notes = []
    if 0 <= forget_class < len(labels):
        notes.append(dict(x=labels[forget_class], y=a[forget_class] or 0, text=f"<b>{a[forget_class]:.0f}</b>",
                          showarrow=False, yanchor="bottom", font=dict(color=FORGET_COLOR, size=12)))
    notes += [dict(x=labels[c], y=103, text=f"<b>-{100 * loss:.1f}</b>", showarrow=False, yanchor="bottom",
                   font=dict(color=DAMAGE_COLOR, size=11)) for c, loss in damaged.items()]
    ticks = [0, 25, 50, 75, 100]
    title = title or (f"Per-class accuracy: <span style='color:{BEFORE_COLOR}'>before</span> / "
                      f"<span style='color:{AFTER_COLOR}'>after</span>")
    return _from_spec(data, title, height=height, margin=dict(l=45, r=10, t=40, b=25), annotations=notes,
                      yaxis=dict(range=[0, 112], tickvals=ticks, ticktext=[f"{t} %" for t in ticks]),
                      xaxis=dict(type="category"), barmode="group", bargap=0.2, showlegend=False)


def sweep(xs: Sequence[float], forget: Sequence[float], retain: Sequence[float], current_x: float,
          x_title: str, height: int = 250) -> go.Figure:
    """Forget and retain accuracy over the strength, the current strength marked. The title names the
    two curves in their colours (no legend to cover them)."""
    data = [dict(type="scatter", x=list(xs), y=percent(forget), name="forget class", mode="lines+markers",
                 line=dict(color=FORGET_COLOR, width=3), hovertemplate="%{x:.2f}: forget %{y:.1f} %<extra></extra>"),
            dict(type="scatter", x=list(xs), y=percent(retain), name="retain classes", mode="lines+markers",
                 line=dict(color=RETAIN_COLOR, width=3), hovertemplate="%{x:.2f}: retain %{y:.1f} %<extra></extra>")]
    current = dict(type="line", x0=current_x, x1=current_x, xref="x", y0=0, y1=1, yref="y domain",
                   line=dict(color="black", dash="dash", width=1))
    title = (f"<span style='color:{FORGET_COLOR}'>Forget</span> and <span style='color:{RETAIN_COLOR}'>retain</span> "
             "accuracy across strengths")
    return _from_spec(data, title, height=height, margin=dict(l=45, r=10, t=40, b=45), showlegend=False,
                      shapes=[current], yaxis=dict(range=[-4, 108], ticksuffix=" %"),
                      xaxis=dict(title=dict(text=x_title, font=dict(size=12))))


def image_before_after(image: np.ndarray, before: np.ndarray, after: np.ndarray, titles: Sequence[str],
                       title: str = "", height: int = 175, percentile: float = 99.0) -> go.Figure:
    """Image, relevance before, relevance after (both on the before map's scale); ``titles`` name the
    three panels (e.g. with each model's predicted label)."""
    scale = relevance_scale(before, percentile)
    picture, layout_image = _image_spec(image)
    data = [picture,
            dict(_relevance_spec(clip_relevance(before, scale=scale), showscale=False), xaxis="x2", yaxis="y2"),
            dict(_relevance_spec(clip_relevance(after, scale=scale), showscale=False), xaxis="x3", yaxis="y3")]
    layout = image_row_layout(list(titles), spacing=0.06)
    if layout_image is not None:
        layout["images"] = [layout_image]
    return _from_spec(data, title, height=height, margin=dict(l=5, r=5, t=60 if title else 30, b=5), **layout)


def top3_text(top: Sequence[tuple[int, float]], classes: Sequence[str]) -> str:
    return ", ".join(f"{classes[c]} {100 * p:.0f} %" for c, p in top)


def path_graph(path, classes: Sequence[str], strength: float = 0.0, max_units: int = 8, edges: Sequence[dict] = (),
               out_weights: dict[str, np.ndarray] | None = None, selected: tuple[str, int] | None = None,
               title: str | None = None) -> go.Figure:
    """The perturbed path: one column per analysed layer (input side left) with its top ``max_units``
    units, then the output classes. Units and edges fade as ``strength`` rises (they are what is
    perturbed); edges between layers are relevance flows, edges into the outputs are the
    last layer's weights to each class (``out_weights[layer]``: classes x units). Each unit carries
    ``customdata`` [layer, unit] for a click."""
    layers = list(path.selections)
    fade = 1.0 - 0.8 * float(np.clip(strength, 0, 1))
    pos, xs, ys, sizes, colors, hover, text, custom = {}, [], [], [], [], [], [], []
    for x, layer in enumerate(layers):
        sel = path.selections[layer]
        shown = list(zip(sel.units, sel.frequency, sel.relevance))[:max_units]
        top = max((abs(r) for _, _, r in shown), default=1.0) or 1.0
        for rank, (unit, freq, rel) in enumerate(shown):
            y = (len(shown) - 1) / 2 - rank
            pos[(layer, unit)] = (x, y)
            xs.append(x)
            ys.append(y)
            sizes.append(12 + 22 * float(freq))
            colors.append(float(rel) / top)
            text.append(str(unit))
            custom.append([layer, int(unit)])
            hover.append(f"{layer} unit {unit} (rank {rank + 1} of {len(sel.units)} perturbed)<br>"
                         f"mean relevance {rel:.3g}, in the top-K of {100 * freq:.0f} % of images<br>click: what it detects")
    n_out = len(classes)
    out_x = len(layers)
    out_y = [(n_out - 1) / 2 * (max_units / max(n_out, 1)) - i * max_units / max(n_out, 1) for i in range(n_out)]
    fig = go.Figure()
    lines: dict[tuple[int, bool], tuple[list, list]] = {}

    def add_line(p0, p1, share, positive):
        level = min(4, int(share * 5))
        bx, by = lines.setdefault((level, positive), ([], []))
        bx += [p0[0], p1[0], None]
        by += [p0[1], p1[1], None]

    biggest = max((abs(e["flow"]) for e in edges if (e["lower"], e["i"]) in pos and (e["upper"], e["j"]) in pos),
                  default=0.0)
    for e in edges:
        a, b = (e["lower"], e["i"]), (e["upper"], e["j"])
        if a in pos and b in pos and biggest > 0 and abs(e["flow"]) >= 0.05 * biggest:
            add_line(pos[a], pos[b], abs(e["flow"]) / biggest, e["flow"] >= 0)
    last = layers[-1] if layers else None
    weights = (out_weights or {}).get(last)
    if weights is not None:
        units = [u for (layer, u) in pos if layer == last]
        w = np.asarray(weights)[:, units] if units else np.zeros((n_out, 0))
        big = float(np.abs(w).max()) if w.size else 0.0
        for k, unit in enumerate(units):
            for c in range(n_out):
                if big > 0 and abs(w[c, k]) >= 0.25 * big:
                    add_line(pos[(last, unit)], (out_x, out_y[c]), abs(w[c, k]) / big, w[c, k] >= 0)
    for (level, positive), (bx, by) in sorted(lines.items()):
        alpha = (0.2 + 0.12 * level) * fade
        color = f"rgba(201,42,42,{alpha:.3f})" if positive else f"rgba(24,100,171,{alpha:.3f})"
        fig.add_trace(go.Scatter(x=bx, y=by, mode="lines", line=dict(width=1 + 1.5 * level, color=color),
                                 hoverinfo="skip", showlegend=False))
    outline = ["#000" if selected == tuple(c) else "#333" for c in custom]
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers+text", text=text, textposition="middle right", textfont=dict(size=11),
        hovertext=hover, hoverinfo="text", showlegend=False, customdata=custom, name="units",
        marker=dict(size=sizes, color=colors, colorscale=RELEVANCE_SCALE, cmin=-1, cmax=1, cmid=0, opacity=fade,
                    line=dict(color=outline, width=[3 if selected == tuple(c) else 1 for c in custom]),
                    showscale=False)))
    forget = path.forget_class
    fig.add_trace(go.Scatter(
        x=[out_x] * n_out, y=out_y, mode="markers+text", text=[str(c) for c in classes], textposition="middle right",
        marker=dict(size=[22 if c == forget else 14 for c in range(n_out)], symbol="square",
                    color=[FORGET_COLOR if c == forget else "#adb5bd" for c in range(n_out)]),
        hovertext=[f"output: class {c}" + (" (forget class)" if i == forget else "") for i, c in enumerate(classes)],
        hoverinfo="text", showlegend=False, name="outputs"))
    ticks = [f"<b>{layer}</b><br>{len(path.selections[layer].units)} of {path.selections[layer].width} perturbed"
             for layer in layers] + ["<b>output</b><br>classes"]
    fig.update_xaxes(tickvals=list(range(len(layers) + 1)), ticktext=ticks, range=[-0.4, len(layers) + 0.6],
                     showgrid=False, zeroline=False)
    fig.update_yaxes(visible=False)
    height = 140 + 40 * max(max_units, 6)
    return _style(fig, title or f"The path perturbed to forget class {classes[forget]} (faded by the strength)",
                  height=height, margin=dict(l=20, r=20, t=50, b=60), clickmode="event+select")


def unit_detail(images: np.ndarray, activations: Sequence[float], mean_map: np.ndarray, title: str) -> go.Figure:
    """A unit by what it responds to: its top-activating pool images and their mean relevance map."""
    n = len(images)
    fig = make_subplots(rows=1, cols=n + 1, subplot_titles=[f"{a:.2g}" for a in activations] + ["mean relevance"],
                        horizontal_spacing=0.01)
    for k in range(n):
        _add_image(fig, images[k], 1, k + 1)
    fig.add_trace(_relevance_trace(clip_relevance(mean_map), showscale=False), row=1, col=n + 1)
    _square_axes(fig)
    fig.update_annotations(font_size=11)
    return _style(fig, title, height=190, margin=dict(l=5, r=5, t=60, b=5))
