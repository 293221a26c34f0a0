"""The one summariser of benchmark runs: mean and std per dataset/arch/method, verdicts against
retrain, Markdown. The written bench folder (``core.bench.store``), the Compare page
(``core.ui.results``) and ``python -m benchmarks.headline`` all summarise through here.
"""
from __future__ import annotations

import math

import pandas as pd

from core.bench.columns import (LABELS, METRICS, ORIGINAL, ORIGINAL_DESCRIPTION, REFERENCE, RUN_COLUMNS,
                                training_data_columns)


# Tolerances of the "loses to retrain" lines (absolute unless stated).
TOL = {"forget_acc": 0.02, "retain_acc": 0.01, "mia_entropy": 0.05, "mia_loss_gap": 0.05, "probe_recall": 0.05,
       "relearn_factor": 0.5}


DEFINITIONS = """\
- **forget acc / retain acc**: accuracy on the evaluation set's forget-class images / mean per-class accuracy over the other classes.
- **MIA (entropy)**: SSD's attack (`core.metrics.attacks`): a logistic regression on the softmax entropy, fitted on retain-class training images (members) vs retain-class held-out images; the share of forget-class *training* images it calls members. Retrain shows the level to match.
- **MIA loss gap**: |AUC - 0.5| of per-example cross-entropy ("lower loss = member") separating forget-class training images from held-out forget-class images. 0 = no trace of training on them (as retrained).
- **relearn steps / relearn to 90 %**: the same recipe for every method, retrain and the output mask included (`core.metrics.relearn`): Adam (lr 3e-4, batch 32) fine-tuning on a fixed relearn set (64 forget-class training images and 64 retain-class ones, the same for every method of a case) until the forget class is back to 50 % / 90 % accuracy on the evaluation set, checked after every step up to 8 and then about 20 % apart; the cap when it never comes back. Few steps = the knowledge is still in the weights.
- **MIA (loss), MIA (confidence), and the AUCs**: the entropy attack's procedure with the per-example loss and the true-class probability as the score (`core.metrics.attacks`); "share" = forget-class training images called members, AUC = how well the score tells forget-class training images from held-out ones (0.5 = not at all). Read all three with their spread: one attack alone can be unstable.
- **forget / retain acc (train)**: the same accuracies on a seeded sample of the training split (200 images per class), the authors' protocol.
- **probe recall / AUC**: a logistic regression on the classifier's input features, fitted on one half of the evaluation set and scored on the other, telling the forget class from the rest. Retrain shows how separable the class stays in a model that never learned it; the output mask keeps the original features.
- **seconds**: the unlearning only (no evaluation). **peak MB**: memory the unlearning needed above what was held before it (CPU: peak RSS sampled every 2 ms; GPU: peak allocated CUDA memory).
"""


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def runs_frame(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Rows as a DataFrame with :data:`RUN_COLUMNS` first (missing ones added empty), the training
    data as a bool plus its label (:func:`core.bench.columns.training_data_columns`)."""
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    for col in RUN_COLUMNS:
        if col not in df.columns:
            df[col] = pd.NA
    df = training_data_columns(df)
    return df[RUN_COLUMNS + [c for c in df.columns if c not in RUN_COLUMNS]]


def summary_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """A summary read back from a summary.csv (old or new) with the training data as bool + label."""
    return training_data_columns(summary)


def method_description(method: str) -> str:
    """One line saying what a method does (the registry's description)."""
    from core.bench.methods import DESCRIPTIONS

    return ORIGINAL_DESCRIPTION if method == ORIGINAL else DESCRIPTIONS.get(method, "")


def method_order(methods) -> list[str]:
    """retrain, original, then the registry's order, then anything else alphabetically."""
    from core.bench.methods import METHODS

    present = list(dict.fromkeys(methods))
    ranked = [REFERENCE, ORIGINAL] + [m for m in METHODS if m != REFERENCE]
    return [m for m in ranked if m in present] + sorted(m for m in present if m not in ranked)


def summarize_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (over seeds and classes) of every metric per dataset, arch and method."""
    runs = runs_frame(runs)
    for col in METRICS:                      # older runs.csv files lack the later metrics: empty there
        runs[col] = pd.to_numeric(runs[col], errors="coerce") if col in runs else float("nan")
    keys = ["dataset", "arch", "method"]
    grouped = runs.groupby(keys, sort=False)
    table = grouped[METRICS].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table = table.reset_index()
    table.insert(3, "runs", grouped.size().values)
    table.insert(4, "uses_training_data", grouped["uses_training_data"].any().values.astype(bool))
    table.insert(5, "training_data", grouped["training_data"].first().values)
    order = {m: i for i, m in enumerate(method_order(table["method"]))}
    targets = list(dict.fromkeys(zip(runs["dataset"], runs["arch"])))
    table["_t"] = [targets.index((d, a)) for d, a in zip(table["dataset"], table["arch"])]
    table["_m"] = table["method"].map(order)
    return table.sort_values(["_t", "_m"]).drop(columns=["_t", "_m"]).reset_index(drop=True)


def _num(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def fmt_metric(metric: str, mean, std=None) -> str:
    """A metric's mean (± std) as the summaries print it: accuracies in percent, seconds to 2-3 digits."""
    m, s = _num(mean), _num(std)
    if m is None:
        return "–"
    if metric in ("forget_acc", "retain_acc", "probe_recall", "forget_acc_train", "retain_acc_train"):
        text = f"{100 * m:.1f}" + (f" ± {100 * s:.1f}" if s is not None else "") + " %"
    elif metric.startswith("mia_") or metric == "probe_auc":
        text = f"{m:.3f}" + (f" ± {s:.3f}" if s is not None else "")
    elif metric in ("relearn_steps", "relearn_steps_90"):
        text = f"{m:.0f}" + (f" ± {s:.0f}" if s is not None else "")
    elif metric == "seconds":
        text = _seconds(m) + (f" ± {_seconds(s)}" if s is not None else "")
    else:
        text = f"{m:.0f}" + (f" ± {s:.0f}" if s is not None else "")
    return text


def _seconds(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10:
        return f"{value:.0f}"
    if abs(value) >= 0.01:
        return f"{value:.2f}"
    return f"{value:.1e}"


def verdicts(summary: pd.DataFrame, relearn_cap: int | None = None) -> dict[tuple[str, str], list[str]]:
    """Per (dataset, arch): one plain sentence per method saying where it does worse than retrain."""
    out: dict[tuple[str, str], list[str]] = {}
    for (dataset, arch), group in summary.groupby(["dataset", "arch"], sort=False):
        ref = group[group["method"] == REFERENCE]
        lines = []
        if ref.empty:
            out[(dataset, arch)] = ["No retrain row, so nothing to compare with."]
            continue
        r = ref.iloc[0]
        for _, row in group.iterrows():
            if row["method"] in (REFERENCE, ORIGINAL):
                continue
            lines.append(_verdict(row, r, relearn_cap))
        out[(dataset, arch)] = lines
    return out


def _gap(row, ref, metric: str) -> tuple[float | None, float, float | None, float | None]:
    """(method mean - retrain mean, its standard error over the runs, method mean, retrain mean)."""
    m, r = _num(row.get(f"{metric}_mean")), _num(ref.get(f"{metric}_mean"))
    if m is None or r is None:
        return None, 0.0, m, r
    sm, sr = _num(row.get(f"{metric}_std")) or 0.0, _num(ref.get(f"{metric}_std")) or 0.0
    nm, nr = max(int(_num(row.get("runs")) or 1), 1), max(int(_num(ref.get("runs")) or 1), 1)
    return m - r, math.sqrt(sm ** 2 / nm + sr ** 2 / nr), m, r


def _worse(row, ref, metric: str, tol: float, sign: int) -> tuple[bool, float | None, float | None]:
    """Is the method worse than retrain by more than ``tol`` and the standard error of the difference?
    ``sign`` +1: higher is worse, -1: lower is worse, 0: any distance is worse."""
    diff, se, m, r = _gap(row, ref, metric)
    if diff is None:
        return False, m, r
    signed = abs(diff) if sign == 0 else sign * diff
    return signed > max(tol, se), m, r


def mia_unstable(ref) -> bool:
    """True when retrain's entropy-MIA scores scatter so widely (std > 0.2) that the attack is noise."""
    std = _num(ref.get("mia_entropy_std"))
    return std is not None and std > 0.2


def _verdict(row, ref, relearn_cap: int | None) -> str:
    losses, wins = [], []
    worse, fa, rfa = _worse(row, ref, "forget_acc", TOL["forget_acc"], +1)
    if worse:
        losses.append(f"keeps {100 * fa:.1f} % forget accuracy (retrain {100 * rfa:.1f} %)")
    worse, ra, rra = _worse(row, ref, "retain_acc", TOL["retain_acc"], -1)
    if worse:
        losses.append(f"retain accuracy {100 * ra:.1f} % vs {100 * rra:.1f} % (-{100 * (rra - ra):.1f} pts)")
    worse, mi, rmi = _worse(row, ref, "mia_entropy", TOL["mia_entropy"], 0)
    if worse and not mia_unstable(ref):
        side = "more" if mi > rmi else "fewer"
        losses.append(f"entropy MIA calls {side} forget images members ({mi:.3f} vs {rmi:.3f})")
    worse, gap, rgap = _worse(row, ref, "mia_loss_gap", TOL["mia_loss_gap"], +1)
    if worse:
        losses.append(f"loss MIA still separates forget training images (gap {gap:.3f} vs {rgap:.3f})")
    worse, rl, rrl = _worse(row, ref, "relearn_steps", 0.0, -1)
    if worse and rl < TOL["relearn_factor"] * rrl:
        losses.append(f"relearns the class in {rl:.0f} step{'s' if round(rl) != 1 else ''} (retrain {rrl:.0f})")
    worse, pr, rpr = _worse(row, ref, "probe_recall", TOL["probe_recall"], +1)
    if worse:
        losses.append(f"features still single out the class (probe recall {100 * pr:.0f} % vs {100 * rpr:.0f} %)")
    g = lambda col: _num(row.get(col))  # noqa: E731
    rg = lambda col: _num(ref.get(col))  # noqa: E731
    s, rs = g("seconds_mean"), rg("seconds_mean")
    if s is not None and rs is not None:
        if s > rs:
            losses.append(f"slower than retraining ({_seconds(s)} s vs {_seconds(rs)} s)")
        elif s > 0:
            wins.append(f"{rs / s:,.0f}x faster than retraining" if rs / s >= 2 else "about as fast as retraining")
    if not training_data_columns(pd.DataFrame([dict(row)]))["uses_training_data"].iloc[0]:
        wins.append("needs no training data")
    head = f"- **{row['method']}**"
    if losses:
        text = f"{head} loses to retrain on: " + "; ".join(losses) + "."
    else:
        text = f"{head} matches retrain within the tolerances on every metric."
    if wins:
        text += " " + wins[0][0].upper() + wins[0][1:] + "".join(", " + w for w in wins[1:]) + "."
    if row["method"] == "output_mask":
        text += " Only the classifier's row for the class is gone; every feature below it is the original's."
    return text


def _notes(part: pd.DataFrame) -> list[str]:
    """Caveats for one model's table: an unstable entropy attack, metrics that do not even separate
    the original model from retrain (so they cannot rank the methods)."""
    ref, orig = part[part["method"] == REFERENCE], part[part["method"] == ORIGINAL]
    if ref.empty:
        return []
    r, lines = ref.iloc[0], []
    if mia_unstable(r):
        lines += [f"Note: the entropy attack is unstable on this model (retrain's MIA std "
                  f"{_num(r['mia_entropy_std']):.2f}): members and held-out images have almost the same entropy, "
                  "so the attack's threshold flips from run to run and its scores land near 0 or 1. Its "
                  "differences are left out of the lines below; read the per-run values with care.", ""]
    if not orig.empty:
        o = orig.iloc[0]
        flat = []
        for metric, tol, sign in (("mia_loss_gap", TOL["mia_loss_gap"], +1), ("probe_recall", TOL["probe_recall"], +1)):
            worse, _, _ = _worse(o, r, metric, tol, sign)
            if not worse:
                flat.append(LABELS[metric])
        if flat:
            lines += [f"Note: {' and '.join(flat)} do not separate the original model from retrain here "
                      f"(within the tolerances below), so they cannot rank the methods on this model.", ""]
    return lines


SECOND_TABLE = ["forget_acc_train", "retain_acc_train", "relearn_steps_90", "mia_loss_share", "mia_confidence_share",
                "mia_entropy_auc", "mia_loss_auc", "mia_confidence_auc"]


def summary_table(summary: pd.DataFrame, dataset: str, arch: str) -> str:
    """One model's summary as Markdown tables (retrain in bold): the main metrics, then (where the
    runs have them) the authors' protocol, relearning to 90 % and the other membership attacks."""
    part = summary_frame(summary[(summary["dataset"] == dataset) & (summary["arch"] == arch)])
    tables = [["forget_acc", "retain_acc", "mia_entropy", "mia_loss_gap", "relearn_steps", "probe_recall", "probe_auc",
               "seconds", "peak_mem_mb"]]
    if f"{SECOND_TABLE[0]}_mean" in part and part[[f"{c}_mean" for c in SECOND_TABLE]].notna().any().any():
        tables.append(SECOND_TABLE)
    lines = []
    for cols in tables:
        if lines:
            lines.append("")
        lines += ["| method | training data | " + " | ".join(LABELS[c] for c in cols) + " | runs |",
                  "|" + "---|" * (len(cols) + 3)]
        for _, row in part.iterrows():
            cells = [fmt_metric(c, row[f"{c}_mean"], row[f"{c}_std"]) for c in cols]
            name = f"**{row['method']}**" if row["method"] == REFERENCE else row["method"]
            lines.append(f"| {name} | {row['training_data']} | " + " | ".join(cells) + f" | {row['runs']} |")
    return "\n".join(lines)


def summary_markdown(runs: pd.DataFrame, summary: pd.DataFrame, meta: dict | None = None) -> str:
    """The bench summary as Markdown: settings, one table per model, where each method loses."""
    meta = meta or {}
    profile = meta.get("profile", {}) or {}
    lines = [f"# Unlearning benchmark: {profile.get('name', runs['profile'].iloc[0] if len(runs) else '?')} profile", ""]
    if profile.get("description"):
        lines += [f"Profile: {profile['description']}.", ""]
    machine = meta.get("machine", {})
    facts = []
    if meta.get("date"):
        facts.append(f"run {meta['date']}")
    if machine:
        facts.append(f"{machine.get('device', '?')}, {machine.get('torch_threads', '?')} torch thread(s) of "
                     f"{machine.get('cpu_count', '?')} cores, torch {machine.get('torch', '?')}")
    if meta.get("wall_seconds") is not None:
        facts.append(f"wall time {meta['wall_seconds']:.0f} s ({meta.get('status', '')})")
    if meta.get("git_commit"):
        commits = _as_list(meta["git_commit"])
        facts.append(("commits " if len(commits) > 1 else "commit ") + ", ".join(c[:10] for c in commits))
    if facts:
        lines += ["- " + "; ".join(facts), ""]
    if meta.get("command"):
        lines += [f"Command: `{meta['command']}`", ""]
    parts = meta.get("parts") or []
    if parts:
        lines += [f"Merged from {len(parts)} part{'s' if len(parts) != 1 else ''} (wall time above: the longest part):", ""]
        for part in parts:
            wall = part.get("wall_seconds")
            lines.append(f"- `{part.get('dir')}`: {part.get('status') or '?'}, {part.get('rows', 0)} rows"
                         + (f", wall time {wall:.0f} s" if isinstance(wall, (int, float)) else "")
                         + (f"; `{part['command']}`" if part.get("command") else ""))
        lines.append("")
        partial = [p.get("dir") for p in parts if p.get("status") != "complete"]
        if partial:
            lines += [f"**Partial parts** (stopped before finishing; their rows up to the last finished case are "
                      f"included, the rest is missing): {', '.join(f'`{d}`' for d in partial)}.", ""]
    relearn_cap = profile.get("relearn_cap")
    target_info = {(t["dataset"], t["arch"]): t for t in meta.get("targets", [])}
    summaries = verdicts(summary, relearn_cap)
    for (dataset, arch), sentences in summaries.items():
        part = runs[(runs["dataset"] == dataset) & (runs["arch"] == arch)]
        lines += [f"## {dataset} / {arch}", ""]
        t = target_info.get((dataset, arch), {})
        classes = sorted(set(int(c) for c in part["forget_class"]))
        seeds = sorted(set(int(s) for s in part["seed"]))
        desc = [f"forget classes {', '.join(map(str, classes))}", f"seeds {', '.join(map(str, seeds))}"]
        if "eval_size" in part and len(part):
            desc.append(f"evaluation set {int(part['eval_size'].iloc[0])} images")
        if "pool_size" in part and len(part):
            desc.append(f"analysis pool {int(part['pool_size'].iloc[0])} images")
        budget = t.get("budget") or {}
        present = set(part["method"])
        if budget.get("retrain_epochs") is not None or budget.get("retrain_samples") is not None:
            desc.append("**reduced budget**: " + (t.get("note") or f"retrain {budget.get('retrain_epochs')} epoch(s)"))
        elif t and REFERENCE in present:
            desc.append("retrain with the model's full recipe")
        if budget and present & {"finetune", "random_labels", "gradient_ascent", "ssd"}:
            desc.append(f"baselines: fine-tune {budget.get('finetune_steps')} steps, random labels "
                        f"{budget.get('random_label_steps')} steps (AdamW, recipe rate), gradient ascent at most "
                        f"{budget.get('ascent_steps')} steps (Adam {budget.get('ascent_lr')}, stop at chance level), "
                        f"SSD importances from {budget.get('ssd_samples')} images (alpha {budget.get('ssd_alpha')}, "
                        f"lambda {budget.get('ssd_lambda')})")
        if "cached" in part and part["cached"].astype(str).str.lower().eq("true").any():
            desc.append("some retrain rows reuse a cached model (their seconds are those measured when it was trained)")
        lines += ["- " + "; ".join(desc), "", summary_table(summary, dataset, arch), ""]
        lines += _notes(summary[(summary["dataset"] == dataset) & (summary["arch"] == arch)])
        lines += ["Where each method loses to retrain:", ""] + sentences + [""]
    if meta.get("skipped"):
        lines += ["Skipped: " + "; ".join(meta["skipped"]), ""]
    lines += ["## Definitions", "", DEFINITIONS,
              f"Tolerances of the 'loses' lines: forget acc +{100 * TOL['forget_acc']:.0f} pts, retain acc "
              f"-{100 * TOL['retain_acc']:.0f} pt, entropy MIA ±{TOL['mia_entropy']}, loss gap +{TOL['mia_loss_gap']}, "
              f"probe recall +{100 * TOL['probe_recall']:.0f} pts, relearn steps below "
              f"{TOL['relearn_factor']:.0%} of retrain's" + (f" (cap {relearn_cap})" if relearn_cap else "") +
              "; in each case only where the difference also exceeds its standard error over the runs "
              "(seeds x classes), so that seed-to-seed noise is not called a loss.", ""]
    return "\n".join(lines)
