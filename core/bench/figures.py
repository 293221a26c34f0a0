"""The one set of benchmark figure builders: the written bench folder (``figures/*.json``) and the
Compare page both draw with these. Scatter and bar traces only, so Streamlit's bundled plotly.js
draws them.

Every builder takes a runs table (:func:`core.bench.report.runs_frame` columns; accuracies as
fractions, drawn in percent) or a summary (:func:`core.bench.report.summarize_runs`) and returns a
``go.Figure``. A method has the same colour in every figure and every file
(:data:`METHOD_COLORS`); retrain, the reference, is drawn last so that its star stays on top.
"""
from __future__ import annotations

import zlib

import pandas as pd
import plotly.graph_objects as go

from core.bench.columns import LABELS, ORIGINAL, REFERENCE
from core.bench.report import method_description, method_order, runs_frame, summarize_runs
from core.plotly_style import template


METHOD_COLORS = {REFERENCE: "#111111", ORIGINAL: "#868e96", "finetune": "#1f77b4", "gradient_ascent": "#ff7f0e",
                 "random_labels": "#9467bd", "ssd": "#8c564b", "lra_npp": "#2ca02c", "noise_gaussian": "#bcbd22",
                 "noise_laplace": "#17becf", "output_mask": "#e377c2", "ours": "#d62728"}
_SPARE = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354"]
SYMBOLS = {REFERENCE: ("star", 20), ORIGINAL: ("diamond-open", 13)}
FONT = dict(size=13)


def method_color(method: str) -> str:
    """The colour of ``method``: fixed for the registry's methods, a stable hash pick for others."""
    return METHOD_COLORS.get(method) or _SPARE[zlib.crc32(str(method).encode()) % len(_SPARE)]


def _style(fig: go.Figure, title: str, height: int, **layout) -> go.Figure:
    layout.setdefault("margin", dict(l=60, r=20, t=50, b=50))
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=15)), template=template(),
                      height=height, font=FONT, **layout)
    return fig


def _select(runs: pd.DataFrame, dataset: str | None, arch: str | None) -> pd.DataFrame:
    runs = runs_frame(runs)
    if dataset is not None:
        runs = runs[runs["dataset"] == dataset]
    if arch is not None:
        runs = runs[runs["arch"] == arch]
    return runs


def _drawing_order(methods: list[str]) -> list[str]:
    """The methods with retrain moved to the end (drawn last = on top)."""
    return [m for m in methods if m != REFERENCE] + [m for m in methods if m == REFERENCE]


def fig_forget_retain(runs: pd.DataFrame, dataset: str | None = None, arch: str | None = None,
                      title: str | None = None, height: int = 460) -> go.Figure:
    """Forget accuracy (x) against retain accuracy (y), in percent: the mean per method with std error
    bars, single runs faint; retrain as a star with dashed guides, drawn on top. The goal is retrain's
    point. The legend (below the plot) lists retrain first; hovering a point says what the method does."""
    runs = _select(runs, dataset, arch)
    methods = method_order(runs["method"])
    fig = go.Figure()
    for method in _drawing_order(methods):
        part = runs[runs["method"] == method]
        fa = 100 * pd.to_numeric(part["forget_acc"], errors="coerce")
        ra = 100 * pd.to_numeric(part["retain_acc"], errors="coerce")
        color, rank = method_color(method), methods.index(method)
        fig.add_trace(go.Scatter(x=fa, y=ra, mode="markers", marker=dict(color=color, size=5, opacity=0.25),
                                 name=method, legendgroup=method, showlegend=False, hoverinfo="skip"))
        symbol, size = SYMBOLS.get(method, ("circle", 12))
        outline = dict(width=2, color=color) if method == ORIGINAL else dict(width=1, color="white")
        fig.add_trace(go.Scatter(
            x=[fa.mean()], y=[ra.mean()], mode="markers", name=method, legendgroup=method, legendrank=rank,
            marker=dict(color=color, size=size, symbol=symbol, line=outline),
            error_x=dict(type="data", array=[fa.std() if len(fa) > 1 else 0], visible=True, thickness=1, color=color),
            error_y=dict(type="data", array=[ra.std() if len(ra) > 1 else 0], visible=True, thickness=1, color=color),
            hovertemplate=f"<b>{method}</b>: {method_description(method)}<br>forget %{{x:.1f}} %<br>"
                          f"retain %{{y:.1f}} %<br>{len(part)} runs<extra></extra>"))
        if method == REFERENCE:
            fig.add_vline(x=fa.mean(), line=dict(dash="dash", color=color, width=1), opacity=0.6)
            fig.add_hline(y=ra.mean(), line=dict(dash="dash", color=color, width=1), opacity=0.6)
    if title is None:
        title = "Forget vs retain accuracy" + (f": {dataset}" if dataset else "") + (f" / {arch}" if arch else "")
    fig.update_xaxes(title="forget-class accuracy (lower is better)", ticksuffix=" %", range=[-4, 104])
    fig.update_yaxes(title="retain accuracy (higher is better)", ticksuffix=" %")
    rows = -(-len(methods) // 4)
    return _style(fig, title, height + 24 * rows, legend=dict(orientation="h", x=0, y=-0.24, yanchor="top"),
                  margin=dict(l=60, r=20, t=50, b=100 + 24 * rows))


def fig_seconds(runs: pd.DataFrame, dataset: str | None = None, arch: str | None = None,
                title: str = "Seconds of unlearning per method (log scale)", height: int = 420) -> go.Figure:
    """Mean seconds of unlearning (evaluation not included) per method, log axis, std error bars; one
    bar per model when the runs hold several, coloured by method throughout."""
    runs = _select(runs, dataset, arch)
    runs = runs[runs["method"] != ORIGINAL].copy()
    runs["seconds"] = pd.to_numeric(runs["seconds"], errors="coerce")
    runs["model"] = runs["dataset"].astype(str) + " / " + runs["arch"].astype(str)
    models = list(dict.fromkeys(runs["model"]))
    fig = go.Figure()
    for method in method_order(runs["method"]):
        stats = runs[runs["method"] == method].groupby("model", sort=False)["seconds"].agg(["mean", "std"])
        stats = stats.reindex([m for m in models if m in stats.index])
        x = list(stats.index) if len(models) > 1 else [method]
        fig.add_trace(go.Bar(x=x, y=stats["mean"].clip(lower=1e-6), name=method, marker_color=method_color(method),
                             error_y=dict(type="data", array=stats["std"].fillna(0).tolist(), visible=True),
                             text=[f"{v:.2g} s" for v in stats["mean"]], textposition="outside", cliponaxis=False,
                             textfont=dict(size=11),
                             hovertemplate=f"<b>{method}</b>: {method_description(method)}<br>"
                                           "%{y:.3g} s<extra>%{x}</extra>"))
    fig.update_yaxes(type="log", title="seconds (log scale)", dtick=1)
    fig.update_xaxes(type="category", title="model" if len(models) > 1 else "method")
    return _style(fig, title, height, barmode="group" if len(models) > 1 else "overlay", showlegend=len(models) > 1,
                  uniformtext=dict(minsize=10, mode="hide"))


def fig_metric(summary: pd.DataFrame, metric: str, dataset: str, arch: str, title: str | None = None,
               height: int = 400) -> go.Figure:
    """One metric's mean (± std) per method for one model, coloured by method, retrain's value as a
    dashed line (the title says so). ``summary`` is :func:`core.bench.report.summarize_runs`'s table (or a runs table,
    summarised here)."""
    if f"{metric}_mean" not in summary.columns:
        summary = summarize_runs(summary)
    part = summary[(summary["dataset"] == dataset) & (summary["arch"] == arch)]
    values = pd.to_numeric(part[f"{metric}_mean"], errors="coerce")
    label = LABELS.get(metric, metric)
    fig = go.Figure(go.Bar(x=list(part["method"]), y=values,
                           error_y=dict(type="data", array=pd.to_numeric(part[f"{metric}_std"], errors="coerce")
                                        .fillna(0).tolist(), visible=True),
                           marker_color=[method_color(m) for m in part["method"]],
                           customdata=[method_description(m) for m in part["method"]],
                           hovertemplate="<b>%{x}</b>: %{customdata}<br>%{y:.3g}<extra></extra>"))
    ref = values[part["method"] == REFERENCE].dropna()
    if len(ref):
        fig.add_hline(y=float(ref.iloc[0]), line=dict(dash="dash", color=method_color(REFERENCE), width=1))
    fig.update_yaxes(title=label, rangemode="tozero")
    fig.update_xaxes(type="category", title="method")
    return _style(fig, (title or f"{label}: {dataset} / {arch}") + " (dashed: retrain)", height, showlegend=False)


def build_figures(runs: pd.DataFrame, summary: pd.DataFrame) -> dict[str, go.Figure]:
    """Every figure of a bench folder, by file stem."""
    figures: dict[str, go.Figure] = {}
    for dataset, arch in dict.fromkeys(zip(runs["dataset"], runs["arch"])):
        figures[f"forget_retain_{_slug(dataset)}_{arch}"] = fig_forget_retain(runs, dataset, arch)
    figures["seconds"] = fig_seconds(runs)
    return figures


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))
