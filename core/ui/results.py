"""Benchmark result files the Compare page can show: found under the repository or the cache.
"""
from __future__ import annotations

from pathlib import Path

from core.errors import UserError
from core.models.checkpoints import ASSETS_DIR
from core.ui.model_store import ROOT


BENCH_COLUMNS = ("profile", "dataset", "arch", "method", "forget_class", "seed", "forget_acc", "retain_acc",
                 "mia_entropy", "mia_loss_gap", "seconds", "peak_mem_mb", "relearn_steps", "probe_recall",
                 "probe_auc", "uses_training_data")


def bench_run_files(roots: tuple[Path, ...] | None = None) -> list[Path]:
    """runs.csv files, user runs (bench-results/) first, then the committed copies (assets/bench/),
    newest first within each. ``$UNLEARN_BENCH_DIRS`` (folders separated by ``os.pathsep``) replaces
    the two default folders."""
    import os

    env = os.environ.get("UNLEARN_BENCH_DIRS")
    if roots is None and env:
        roots = tuple(Path(p) for p in env.split(os.pathsep) if p)
    roots = roots or (ROOT / "bench-results", ASSETS_DIR / "bench")
    found = []
    for root in roots:
        files = [p for p in Path(root).glob("*/runs.csv") if p.is_file()]
        found += sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)
    return found


def load_runs(path: str | Path):
    """The benchmark's runs.csv as a DataFrame; UserError if columns are missing."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is one sentence for the user
        raise UserError(f"'{path}' is not a readable CSV file ({type(exc).__name__}).") from exc
    missing = [c for c in ("method", "forget_acc", "retain_acc", "seconds") if c not in df.columns]
    if missing:
        raise UserError(f"'{path}' lacks the columns {', '.join(missing)}; rerun the benchmark.")
    return df
