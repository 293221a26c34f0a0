"""The benchmark results folder: each case stored as it finishes, outputs rebuilt from them, merged, read back.

* ``cases/*.json``  one file per case (dataset, arch, method, forget class, seed), written atomically
  (temporary file in the same folder, then ``os.replace``) as soon as the case finishes: its row, or
  its error; the code commit and the settings digest (:func:`core.bench.plan.case_settings`) it
  was measured with. These files are the folder's truth; everything below is rebuilt from them.
* ``runs.csv``     one row per finished case, columns :data:`core.bench.columns.RUN_COLUMNS` first
* ``summary.csv``  mean and std over seeds and classes per dataset/arch/method (retrain first, then
  the original model, then the methods in registry order)
* ``summary.md``   the same as tables, the definitions, a line per method saying where it loses to
  retrain, and the failed cases with their errors
* ``figures/*.json`` Plotly figures (``plotly.io.from_json``), ``figures.html`` all of them, offline;
  removed when a run stores its first new case and rebuilt when it ends, so they never show other
  rows than ``runs.csv``
* ``meta.json``    command(s), dates, machine, git commit(s), settings, executor, status

:func:`open_folder` decides what a run may do with an existing folder: it resumes a folder of the
same commit and settings (finished cases are skipped, failed ones run again), refuses one made by
another commit unless ``resume`` is set, and always refuses one measured with other settings or
one without case files (an older bench or a merge), so that no folder mixes results silently.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
from pathlib import Path

import pandas as pd

from core.bench.figures import build_figures
from core.bench.report import _as_list, runs_frame, summarize_runs, summary_markdown
from core.errors import UserError

CASES = "cases"
OUTPUTS = ("runs.csv", "summary.csv", "summary.md", "meta.json", "figures", "figures.html")
MERGE_KEYS = ["dataset", "arch", "method", "forget_class", "seed"]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _plain(value):
    """A JSON value for ``value``: numpy and torch scalars as Python numbers, NaN and inf as null."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- case files
def case_file(folder: str | Path, key: tuple) -> Path:
    """``cases/<dataset>__<arch>__s<seed>__c<class>__<method>.json``; a name part with characters
    other than letters, digits, ``._-`` (an image folder's path) is cleaned and given a hash."""
    def safe(text: str) -> str:
        clean = re.sub(r"[^A-Za-z0-9._-]", "_", str(text))[:40]
        return clean if clean == str(text) else f"{clean}-{hashlib.sha256(str(text).encode()).hexdigest()[:8]}"

    dataset, arch, method, forget_class, seed = key
    return Path(folder) / CASES / f"{safe(dataset)}__{safe(arch)}__s{seed}__c{forget_class}__{safe(method)}.json"


def save_case(folder: str | Path, key: tuple, row: dict | None, settings: str, commit: str | None,
              error: str | None = None, trace: str | None = None, executor: str = "") -> dict:
    """Store one finished case atomically (a row, or its error) and return the record."""
    record = {"format": 1, "key": list(key), "status": "done" if error is None else "failed",
              "row": None if row is None else {k: _plain(v) for k, v in row.items()},
              "error": error, "traceback": trace, "settings": settings, "git_commit": commit,
              "executor": executor, "finished": dt.datetime.now().isoformat(timespec="seconds")}
    path = case_file(folder, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, json.dumps(record, indent=1, allow_nan=False))
    return record


def load_cases(folder: str | Path) -> dict[tuple, dict]:
    """Every readable case record of a folder by key (a file that is not a record is ignored)."""
    records = {}
    for path in sorted((Path(folder) / CASES).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            key = tuple(record["key"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        records[key] = record
    return records


def _read_meta(folder: Path) -> dict:
    path = folder / "meta.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"Could not read {path} ({err}).") from err
    return meta if isinstance(meta, dict) else {}


def open_folder(out: str | Path, settings_digest: str, case_digests: dict[tuple, str], commit: str | None,
                resume: bool = False) -> tuple[dict[tuple, dict], dict]:
    """(finished records by key, the folder's previous meta) of ``out``, after the checks of the
    module docstring; nothing is written. ``case_digests`` maps the planned keys to their digests."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file, not a folder.")
    if not out.is_dir():
        return {}, {}
    if not (out / CASES).is_dir():
        ours = [name for name in OUTPUTS if (out / name).exists()]
        if ours:
            raise UserError(f"'{out}' holds bench results without per-case files (an older bench or a "
                            f"bench-merge output: {', '.join(ours)}); choose another --out.")
        return {}, {}
    meta = _read_meta(out)
    done = {k: r for k, r in load_cases(out).items() if r.get("status") == "done" and r.get("row")}
    if meta.get("settings_digest") not in (None, settings_digest) or any(
            r.get("settings") != case_digests[k] for k, r in done.items() if k in case_digests):
        raise UserError(f"'{out}' holds results measured with other settings (another profile, baseline "
                        "budget or unlearning recipe); choose another --out.")
    commits = {c for c in _as_list(meta.get("git_commit")) if c} | {r.get("git_commit") for r in done.values()}
    commits.discard(None)
    if commit is not None and commits and commits != {commit} and not resume:
        theirs = ", ".join(sorted(c[:10] for c in commits))
        raise UserError(f"'{out}' holds results of commit {theirs}, not of this commit {commit[:10]}; pass "
                        "--resume to continue it with this code, or choose another --out.")
    return done, meta


def _sort_key(order: dict[tuple, int]):
    from core.bench.methods import METHODS
    from core.bench.columns import ORIGINAL

    rank = {m: i for i, m in enumerate([ORIGINAL, *METHODS])}

    def key(k: tuple):
        if k in order:
            return (0, order[k])
        dataset, arch, method, forget_class, seed = k
        return (1, str(dataset), str(arch), int(seed), int(forget_class), rank.get(method, len(rank)), str(method))
    return key


def stored_rows(folder: str | Path, order: list[tuple] | None = None, records: dict | None = None) -> list[dict]:
    """The rows of the finished cases of ``folder`` (or of ``records``, its case records already
    read): planned keys in ``order``, the rest after them."""
    records = load_cases(folder) if records is None else records
    done = {k: r for k, r in records.items() if r.get("status") == "done" and r.get("row")}
    ranks = {k: i for i, k in enumerate(order or [])}
    return [done[k]["row"] for k in sorted(done, key=_sort_key(ranks))]


def drop_figures(folder: str | Path) -> None:
    """Remove a bench folder's figures (before new rows make them out of date)."""
    folder = Path(folder)
    for path in sorted((folder / "figures").glob("*.json")) if (folder / "figures").is_dir() else []:
        path.unlink()
    if (folder / "figures.html").is_file():
        (folder / "figures.html").unlink()


def rebuild_outputs(folder: str | Path, meta: dict, order: list[tuple] | None = None, figures: bool = True,
                    records: dict | None = None) -> int:
    """runs.csv, summaries and meta.json (and the figures) of ``folder`` from its case files only
    (``records``: the same, already read); the failed cases are listed at the end of summary.md.
    Returns the number of rows."""
    folder = Path(folder)
    records = load_cases(folder) if records is None else records
    rows = stored_rows(folder, order, records)
    failed = [r for r in records.values() if r.get("status") == "failed"]
    meta = {**meta, "failed_cases": [{"key": r["key"], "error": r.get("error")} for r in failed]}
    if not rows:
        for name in ("runs.csv", "summary.csv", "summary.md"):
            if (folder / name).is_file():
                (folder / name).unlink()
        drop_figures(folder)
    write_outputs(rows, folder, meta, figures=figures)
    if failed and rows:
        lines = ["## Failed cases", "", f"{len(failed)} case(s) raised; a rerun of the same command runs them again.", ""]
        lines += [f"- {'/'.join(map(str, r['key']))}: {r.get('error')}" for r in failed]
        _atomic_write(folder / "summary.md", (folder / "summary.md").read_text() + "\n" + "\n".join(lines) + "\n")
    return len(rows)


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


def merge_bench(parts: list[str | Path], out_dir: str | Path, command: str = "", warn=None) -> tuple[pd.DataFrame, dict]:
    """Merge bench folders (e.g. one per cluster; each with case files, or runs.csv, and meta.json)
    into ``out_dir`` (derived outputs only, no case files: resume each part in its own folder).

    Rows are concatenated in the order of ``parts``; a row whose (dataset, arch, method, forget
    class, seed) came already from an earlier part is dropped, with a warning. The combined meta
    lists each part (folder, command, status, rows, wall time); its wall time is the longest
    part's, and its status "complete" only if every part is complete, else "partial". A part that
    stopped before finishing its first case (an empty folder) counts as partial with 0 rows.
    Returns (runs, meta)."""
    import sys

    warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr))
    if not parts:
        raise UserError("bench-merge needs at least one bench folder.")
    out = Path(out_dir)
    if (out / CASES).is_dir():
        raise UserError(f"The output folder '{out}' is a bench folder with its own cases; choose another --out.")
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
            if (folder / CASES).is_dir():          # a resumable folder: its case files are the truth
                rows = stored_rows(folder)
                runs = runs_frame(rows) if rows else pd.DataFrame()
            else:
                runs = pd.read_csv(runs_path) if runs_path.is_file() else pd.DataFrame()
        except (OSError, ValueError, pd.errors.ParserError) as err:
            raise UserError(f"Could not read {runs_path} ({err}).") from err
        missing = [k for k in MERGE_KEYS if len(runs) and k not in runs.columns]
        if missing:
            raise UserError(f"{runs_path} lacks the column(s) {', '.join(missing)}; it is not a bench runs.csv.")
        if not len(runs):
            warn(f"{folder} has no runs.csv (a bench that stopped before finishing its first case?); it adds no rows.")
        status = "complete" if meta.get("status") == "complete" and len(runs) else "partial"
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
    """(runs, summary, meta) of a bench folder, for the dashboard. A folder with case files is read
    from them (so a run still going, or one that was killed, shows every case it finished)."""
    folder = Path(folder)
    if (folder / CASES).is_dir():
        rows = stored_rows(folder)
        if rows:
            runs = runs_frame(rows)
            return runs, summarize_runs(runs), _read_meta(folder)
    runs = pd.read_csv(folder / "runs.csv")
    summary = pd.read_csv(folder / "summary.csv") if (folder / "summary.csv").is_file() else summarize_runs(runs)
    meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").is_file() else {}
    return runs, summary, meta
