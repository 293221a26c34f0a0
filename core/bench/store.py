"""The benchmark results folder: written, merged and read back.

* ``runs.csv``     one row per (dataset, arch, method, forget class, seed), columns
  :data:`core.bench.columns.RUN_COLUMNS` first
* ``summary.csv``  mean and std over seeds and classes per dataset/arch/method (retrain first, then
  the original model, then the methods in registry order)
* ``summary.md``   the same as tables, the definitions, and a line per method saying where it loses
  to retrain
* ``figures/*.json`` Plotly figures (``plotly.io.from_json``), ``figures.html`` all of them, offline
* ``meta.json``    command, date, machine, git commit, profile settings
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from core.bench.figures import build_figures
from core.bench.report import _as_list, runs_frame, summarize_runs, summary_markdown


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_outputs(rows: list[dict] | pd.DataFrame, out_dir: str | Path, meta: dict, figures: bool = True) -> None:
    """Write runs.csv, summary.csv, summary.md and meta.json (and figures) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = runs_frame(rows)
    if len(runs) == 0:
        _atomic_write(out / "meta.json", json.dumps(meta, indent=2, default=str))
        return
    summary = summarize_runs(runs)
    _atomic_write(out / "runs.csv", runs.to_csv(index=False))
    _atomic_write(out / "summary.csv", summary.to_csv(index=False))
    _atomic_write(out / "summary.md", summary_markdown(runs, summary, meta))
    _atomic_write(out / "meta.json", json.dumps(meta, indent=2, default=str))
    if figures:
        folder = out / "figures"
        folder.mkdir(exist_ok=True)
        built = build_figures(runs, summary)
        html = ["<html><head><meta charset='utf-8'><title>Unlearning benchmark</title></head><body>"]
        for i, (stem, fig) in enumerate(built.items()):
            _atomic_write(folder / f"{stem}.json", fig.to_json())
            html.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
        html.append("</body></html>")
        _atomic_write(out / "figures.html", "\n".join(html))


MERGE_KEYS = ["dataset", "arch", "method", "forget_class", "seed"]


def merge_bench(parts: list[str | Path], out_dir: str | Path, command: str = "", warn=None) -> tuple[pd.DataFrame, dict]:
    """Merge bench folders (each with runs.csv and meta.json, e.g. one per process) into ``out_dir``.

    Rows are concatenated in the order of ``parts``; a row whose (dataset, arch, method, forget
    class, seed) came already from an earlier part is dropped, with a warning. The combined meta
    lists each part (folder, command, status, rows, wall time); its wall time is the longest
    part's, and its status "complete" only if every part is complete, else "partial". A part that
    stopped before finishing its first case (an empty folder) counts as partial with 0 rows.
    Returns (runs, meta)."""
    import datetime as dt
    import sys

    from core.errors import UserError

    warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr))
    if not parts:
        raise UserError("bench-merge needs at least one bench folder.")
    out = Path(out_dir)
    frames, metas, infos = [], [], []
    for part in parts:
        folder = Path(part)
        runs_path, meta_path = folder / "runs.csv", folder / "meta.json"
        if not folder.is_dir():
            raise UserError(f"The bench folder '{folder}' does not exist.")
        if folder.resolve() == out.resolve():
            raise UserError(f"The output folder '{out}' is also one of the parts; choose another --out.")
        try:
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        except (OSError, ValueError) as err:
            raise UserError(f"Could not read {meta_path} ({err}).") from err
        try:
            runs = pd.read_csv(runs_path) if runs_path.is_file() else pd.DataFrame()
        except (OSError, ValueError, pd.errors.ParserError) as err:
            raise UserError(f"Could not read {runs_path} ({err}).") from err
        missing = [k for k in MERGE_KEYS if len(runs) and k not in runs.columns]
        if missing:
            raise UserError(f"{runs_path} lacks the column(s) {', '.join(missing)}; it is not a bench runs.csv.")
        if not runs_path.is_file():
            warn(f"{folder} has no runs.csv (a bench that stopped before finishing its first case?); it adds no rows.")
        status = "complete" if meta.get("status") == "complete" and runs_path.is_file() else "partial"
        frames.append(runs)
        metas.append(meta)
        infos.append({"dir": str(folder), "command": meta.get("command", ""), "status": status, "rows": len(runs),
                      "wall_seconds": meta.get("wall_seconds"), "date": meta.get("date"),
                      "git_commit": meta.get("git_commit"), "device": (meta.get("machine") or {}).get("device")})
    nonempty = [f for f in frames if len(f)]
    if not nonempty:
        raise UserError("None of the bench folders has any runs to merge.")
    runs = pd.concat(nonempty, ignore_index=True, sort=False)
    source = pd.Series([info["dir"] for info, f in zip(infos, frames) for _ in range(len(f))])
    dup = runs.duplicated(MERGE_KEYS, keep="first").to_numpy()
    if dup.any():
        examples = runs.loc[dup, MERGE_KEYS].head(3).astype(str).agg("/".join, axis=1).tolist()
        warn(f"dropped {int(dup.sum())} row(s) whose (dataset, arch, method, forget class, seed) an earlier part "
             f"already had (kept the first; from {', '.join(sorted(set(source[dup])))}; e.g. {', '.join(examples)}).")
        runs = runs.loc[~dup].reset_index(drop=True)
    first = next((m for m in metas if m), {})
    commits = sorted({c for i in infos for c in _as_list(i["git_commit"]) if c})   # a merged part lists several
    profiles = list(dict.fromkeys((m.get("profile") or {}).get("name") for m in metas if m.get("profile")))
    if len(profiles) > 1:
        warn(f"the parts ran different profiles ({', '.join(profiles)}); the summary names the first.")
    targets: dict[tuple, dict] = {}
    for m in metas:
        for t in m.get("targets", []):
            targets.setdefault((t.get("dataset"), t.get("arch")), t)
    walls = [i["wall_seconds"] for i in infos if isinstance(i["wall_seconds"], (int, float))]
    complete = all(i["status"] == "complete" for i in infos)
    meta = {"command": command, "date": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": first.get("machine", {}), "git_commit": commits[0] if len(commits) == 1 else commits or None,
            "git_core_modified": any(m.get("git_core_modified") for m in metas),
            "profile": first.get("profile", {}), "targets": list(targets.values()),
            "methods": list(dict.fromkeys(x for m in metas for x in m.get("methods", []))),
            "skipped": list(dict.fromkeys(x for m in metas for x in m.get("skipped", []))),
            "retrain_cache": first.get("retrain_cache"), "unlearn_configs": first.get("unlearn_configs"),
            "wall_seconds": max(walls) if walls else None, "status": "complete" if complete else "partial",
            "parts": infos, "partial_parts": [i["dir"] for i in infos if i["status"] != "complete"],
            "commands": [i["command"] for i in infos]}
    write_outputs(runs, out, meta, figures=True)
    return runs, meta


def load_bench(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(runs, summary, meta) of a bench folder, for the dashboard."""
    folder = Path(folder)
    runs = pd.read_csv(folder / "runs.csv")
    summary = pd.read_csv(folder / "summary.csv") if (folder / "summary.csv").is_file() else summarize_runs(runs)
    meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").is_file() else {}
    return runs, summary, meta
