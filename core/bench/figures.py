"""Benchmark results as Plotly figures (scatter and bar only, so Streamlit's bundled plotly.js draws them).

Figure builders take data and return a ``go.Figure``.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from core.bench.columns import LABELS, ORIGINAL, REFERENCE
from core.bench.report import method_order, runs_frame


_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79"]


def _color(method: str, methods: list[str]) -> str:
    return _COLORS[methods.index(method) % len(_COLORS)] if method in methods else "#444444"


def fig_forget_retain(runs: pd.DataFrame, dataset: str | None = None, arch: str | None = None) -> go.Figure:
    """Forget accuracy (x) vs retain accuracy (y): mean per method with std error bars, single
    runs faint; retrain drawn as a star with dashed guides. The goal is retrain's point."""
    runs = runs_frame(runs)
    if dataset is not None:
        runs = runs[runs["dataset"] == dataset]
    if arch is not None:
        runs = runs[runs["arch"] == arch]
    methods = method_order(runs["method"])
    fig = go.Figure()
    for method in methods:
        part = runs[runs["method"] == method]
        fa, ra = pd.to_numeric(part["forget_acc"]), pd.to_numeric(part["retain_acc"])
        color = _color(method, methods)
        fig.add_trace(go.Scatter(x=fa, y=ra, mode="markers", marker=dict(color=color, size=5, opacity=0.25),
                                 name=method, legendgroup=method, showlegend=False, hoverinfo="skip"))
        symbol, size = ("star", 18) if method == REFERENCE else ("diamond", 12) if method == ORIGINAL else ("circle", 11)
        fig.add_trace(go.Scatter(
            x=[fa.mean()], y=[ra.mean()], mode="markers", name=method, legendgroup=method,
            marker=dict(color=color, size=size, symbol=symbol, line=dict(width=1, color="black")),
            error_x=dict(type="data", array=[fa.std() if len(fa) > 1 else 0], visible=True, thickness=1),
            error_y=dict(type="data", array=[ra.std() if len(ra) > 1 else 0], visible=True, thickness=1),
            hovertemplate=f"{method}<br>forget %{{x:.1%}}<br>retain %{{y:.1%}}<extra></extra>"))
        if method == REFERENCE:
            fig.add_vline(x=fa.mean(), line_dash="dash", line_color=color, opacity=0.6)
            fig.add_hline(y=ra.mean(), line_dash="dash", line_color=color, opacity=0.6)
    title = "Forget vs retain accuracy" + (f": {dataset}" if dataset else "") + (f" / {arch}" if arch else "")
    fig.update_layout(title=title + " (star: retrain, the target)", xaxis_title="forget-class accuracy (lower is better)",
                      yaxis_title="retain accuracy (higher is better)", template="plotly_white",
                      xaxis=dict(tickformat=".0%", range=[-0.03, 1.03]), yaxis=dict(tickformat=".0%"),
                      legend_title="method")
    return fig


def fig_seconds(runs: pd.DataFrame) -> go.Figure:
    """Mean seconds of unlearning per method (log axis), one bar group per dataset/arch."""
    runs = runs_frame(runs)
    runs = runs[runs["method"] != ORIGINAL].copy()
    runs["seconds"] = pd.to_numeric(runs["seconds"], errors="coerce")
    methods = method_order(runs["method"])
    fig = go.Figure()
    for dataset, arch in dict.fromkeys(zip(runs["dataset"], runs["arch"])):
        part = runs[(runs["dataset"] == dataset) & (runs["arch"] == arch)]
        stats = part.groupby("method")["seconds"].agg(["mean", "std"]).reindex([m for m in methods if m in set(part["method"])])
        fig.add_trace(go.Bar(x=list(stats.index), y=stats["mean"].clip(lower=1e-6), name=f"{dataset} / {arch}",
                             error_y=dict(type="data", array=stats["std"].fillna(0).tolist(), visible=True),
                             hovertemplate="%{x}: %{y:.3g} s<extra>" + f"{dataset} / {arch}" + "</extra>"))
    fig.update_layout(title="Seconds of unlearning per method (log scale; evaluation not included)",
                      yaxis_type="log", yaxis_title="seconds", xaxis_title="method", barmode="group",
                      template="plotly_white")
    return fig


def fig_metric(summary: pd.DataFrame, metric: str, dataset: str, arch: str) -> go.Figure:
    """One metric's mean (± std) per method for one model, retrain's value as a dashed line."""
    part = summary[(summary["dataset"] == dataset) & (summary["arch"] == arch)]
    fig = go.Figure(go.Bar(x=part["method"], y=part[f"{metric}_mean"],
                           error_y=dict(type="data", array=part[f"{metric}_std"].fillna(0).tolist(), visible=True),
                           marker_color=[_color(m, list(part["method"])) for m in part["method"]]))
    ref = part[part["method"] == REFERENCE]
    if len(ref):
        fig.add_hline(y=float(ref[f"{metric}_mean"].iloc[0]), line_dash="dash", annotation_text="retrain")
    fig.update_layout(title=f"{LABELS.get(metric, metric)}: {dataset} / {arch}", yaxis_title=LABELS.get(metric, metric),
                      template="plotly_white")
    return fig


def build_figures(runs: pd.DataFrame, summary: pd.DataFrame) -> dict[str, go.Figure]:
    """Every figure of a bench folder, by file stem."""
    figures: dict[str, go.Figure] = {}
    for dataset, arch in dict.fromkeys(zip(runs["dataset"], runs["arch"])):
        figures[f"forget_retain_{_slug(dataset)}_{arch}"] = fig_forget_retain(runs, dataset, arch)
    figures["seconds"] = fig_seconds(runs)
    return figures


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))
