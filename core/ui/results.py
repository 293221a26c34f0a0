"""What the Compare page shows: the benchmark's stored runs (found under the repository or the
cache) as a readable table, and the current model's per-class predictions before and after unlearning.

Summaries and figures of benchmark runs come from :mod:`core.bench.report` and
:mod:`core.bench.figures` (the one summariser and the one set of figure builders); column names and
the reference rows from :mod:`core.bench.columns`.
"""
from __future__ import annotations

from pathlib import Path

from core.bench.columns import ORIGINAL, REFERENCE
from core.errors import UserError
from core.models.cards import ASSETS_DIR
from core.ui.model_store import ROOT


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
    """The benchmark's runs.csv as a runs table (:func:`core.bench.report.runs_frame`: the training
    data as a bool plus its label, whichever layout the file has); UserError if columns are missing."""
    import pandas as pd

    from core.bench.report import runs_frame

    try:
        df = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is one sentence for the user
        raise UserError(f"'{path}' is not a readable CSV file ({type(exc).__name__}).") from exc
    missing = [c for c in ("method", "forget_acc", "retain_acc", "seconds") if c not in df.columns]
    if missing:
        raise UserError(f"'{path}' lacks the columns {', '.join(missing)}; rerun the benchmark.")
    for col, value in (("dataset", "?"), ("arch", "?")):
        if col not in df.columns:
            df[col] = value
    return runs_frame(df)


def model_choices(runs, current: tuple[str, str] | None = None) -> tuple[list[tuple[str, str]], int]:
    """(the (dataset, arch) pairs in the runs, the index of ``current`` among them, else 0)."""
    combos = list(dict.fromkeys(zip(runs["dataset"].astype(str), runs["arch"].astype(str))))
    index = combos.index(current) if current in combos else 0
    return combos, index


COMPARE_COLUMNS = {"method": "method", "uses_training_data": "uses training data", "forget_acc_mean": "forget acc. (%)",
                   "retain_acc_mean": "retain acc. (%)", "mia_entropy_mean": "MIA (entropy)", "seconds_mean": "seconds",
                   "training_data": "training data", "description": "what it does", "forget_acc_std": "± forget",
                   "retain_acc_std": "± retain", "runs": "runs"}


def compare_table(runs):
    """One row per method (retrain first, then the original model, then the registry's order): what it
    does in one line, whether it reads training data (bool) and which, forget/retain accuracy in
    percent (mean and std over classes and seeds), the entropy MIA, seconds, runs."""
    from core.bench.report import method_description, summarize_runs

    summary = summarize_runs(runs)
    for col in ("forget_acc_mean", "forget_acc_std", "retain_acc_mean", "retain_acc_std"):
        summary[col] = 100 * summary[col]
    summary["description"] = [method_description(m) for m in summary["method"]]
    return summary[list(COMPARE_COLUMNS)].rename(columns=COMPARE_COLUMNS)


def reference_note(runs) -> str | None:
    """A sentence when the runs lack the reference (retrain) or the original model, else None."""
    present = set(runs["method"])
    if REFERENCE not in present:
        return "These results have no 'retrain' runs, so there is no reference point."
    if ORIGINAL not in present:
        return "These results have no 'original' runs, so the starting point is not shown."
    return None


def prediction_matrices(model, pool, eval_set, forget_class: int, config=None) -> dict:
    """Confusion matrices (M[true, predicted] counts on the evaluation set) of ``model`` and of the
    model unlearned with ``config`` (the library default when None), with forget/retain accuracy
    and the seconds the unlearning took. ``model`` is not changed."""
    from core.metrics.evaluate import summarize
    from core.models.compute import predict_logits
    from core.unlearning.pipeline import unlearn

    result = unlearn(model, pool, forget_class, config)
    before = summarize(predict_logits(model, eval_set.images), eval_set.labels, forget_class)
    after = summarize(predict_logits(result.model, eval_set.images), eval_set.labels, forget_class)
    return {"before": before.confusion, "after": after.confusion, "forget_class": forget_class,
            "forget_acc": (before.forget_acc, after.forget_acc), "retain_acc": (before.retain_acc, after.retain_acc),
            "seconds": result.seconds_unlearn, "erased_layers": list(result.erased_layers)}
