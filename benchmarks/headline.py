"""The headline table of BENCHMARKS.md, printed from the stored benchmark summaries (assets/bench/).

    python -m benchmarks.headline                     # the table BENCHMARKS.md opens with
    python -m benchmarks.headline --methods retrain ours lra_npp ssd

Reads each source's ``summary.csv`` (through :func:`core.bench.report.summary_frame`, so files of
either training-data layout read the same) and ``meta.json`` (date, machine, commit, command), and
prints Markdown: one row per (model, method), then where each model's rows come from. Nothing is
measured here; rerun the benchmark (``python -m core bench``) to refresh a source.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from core.bench.report import fmt_metric, method_order, summary_frame

BENCH = Path(__file__).resolve().parents[1] / "assets" / "bench"

# (folder under assets/bench, dataset, arch): the current results of each shipped model.
SOURCES = [("quick", "digits", "cnn"), ("full-mnist", "mnist", "cnn"), ("full-mnist", "mnist", "allcnn"),
           ("full-cifar10-deep", "cifar10", "vgg11_slim")]
METHODS = ("retrain", "original", "ours", "lra_npp")
COLUMNS = ("forget_acc", "retain_acc", "mia_entropy", "probe_recall", "relearn_steps", "seconds")
HEADS = ("forget acc", "retain acc", "MIA (entropy)", "probe recall", "relearn steps", "seconds")


def _machine(meta: dict) -> str:
    m = meta.get("machine") or {}
    device = m.get("gpu") or m.get("device", "?")
    return f"{device}, {m.get('cpu_count', '?')} cores, torch {m.get('torch', '?')}"


def _commits(meta: dict) -> str:
    value = meta.get("git_commit")
    commits = value if isinstance(value, list) else [value] if value else []
    return ", ".join(c[:7] for c in commits) or "?"


def headline(bench: Path = BENCH, methods=METHODS, sources=SOURCES) -> str:
    """The Markdown table and its sources."""
    lines = ["| model | method | training data | " + " | ".join(HEADS) + " | runs |",
             "|" + "---|" * (len(HEADS) + 4)]
    notes = []
    for folder, dataset, arch in sources:
        summary = summary_frame(pd.read_csv(bench / folder / "summary.csv"))
        meta = json.loads((bench / folder / "meta.json").read_text())
        part = summary[(summary["dataset"] == dataset) & (summary["arch"] == arch)].set_index("method")
        for method in [m for m in method_order(part.index) if m in methods]:
            row = part.loc[method]
            cells = [fmt_metric(c, row[f"{c}_mean"], row[f"{c}_std"]) for c in COLUMNS]
            name = f"**{method}**" if method in ("retrain", "ours") else method
            lines.append(f"| {dataset} {arch} | {name} | {row['training_data']} | " + " | ".join(cells)
                         + f" | {int(row['runs'])} |")
        profile = (meta.get("profile") or {}).get("name", "?")
        notes.append(f"- {dataset} {arch}: `assets/bench/{folder}/` ({profile} profile; {str(meta.get('date', '?'))[:10]}; "
                     f"{_machine(meta)}; commit {_commits(meta)})")
    return "\n".join(lines + ["", "Sources (mean ± std over forget classes and seeds):", ""] + notes)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--bench", type=Path, default=BENCH, help="folder holding the stored bench folders")
    args = parser.parse_args(argv)
    print(headline(args.bench, tuple(args.methods)))


if __name__ == "__main__":
    main()
