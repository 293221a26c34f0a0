"""The benchmark runner: every method of :mod:`core.bench.methods` against retraining, on the same data.

Each method unlearns a copy of the shipped model; its seconds (unlearning only) and peak memory are
recorded; the result is measured on the evaluation set: forget / retain / per-class accuracy, the
entropy membership attack (:func:`core.metrics.evaluate.membership_inference`), the loss attack gap,
relearn steps and the representation probe (:mod:`core.metrics.probes`). The original model is
measured the same way (row ``original``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from torch import nn

from core.bench.columns import ORIGINAL, ORIGINAL_DATA
from core.bench.machine import PeakMemory, _git_commit, _git_dirty, choose_threads, machine_info
from core.bench.methods import METHODS, UnlearnOutcome
from core.bench.plan import Case, Plan, Profile, _train_config, make_case, make_plan, stratified_sample
from core.bench.retrain_cache import _load_retrain, _store_retrain
from core.data.cache import cache_dir
from core.data.catalog import load_split
from core.data.sets import split_heldout
from core.errors import UserError
from core.metrics.attacks import membership_attacks
from core.metrics.evaluate import summarize
from core.metrics.probes import forward_with_features, loss_mia_gap, per_example_loss, representation_probe
from core.metrics.relearn import relearn
from core.models.compute import model_device, pick_device, predict_logits


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def measure(model: nn.Module, case: Case, profile: Profile, forward=None) -> dict:
    """Every metric of ``model`` on ``case`` (evaluation only; nothing here is timed as unlearning):
    held-out accuracy; accuracy on a seeded sample of the training split (the authors' protocol);
    three membership attacks (:mod:`core.metrics.attacks`); relearning to 50 % and 90 % with the
    fixed recipe on the case's relearn set (:mod:`core.metrics.relearn`); the representation probe."""
    start = time.perf_counter()
    fwd = forward or forward_with_features(model, case.eval_set.images)
    ev = summarize(fwd.logits, case.eval_set.labels, case.forget_class)
    on_train = summarize(predict_logits(model, case.train_eval.images), case.train_eval.labels, case.forget_class)
    forget_mask = case.eval_set.labels == case.forget_class
    attacks = membership_attacks(model, case.mia_members, case.mia_heldout, case.forget_train,
                                 case.eval_set.subset(forget_mask), n=profile.mia_n, seed=case.seed)
    member_logits = forward_with_features(model, case.forget_train.images).logits
    gap = loss_mia_gap(per_example_loss(member_logits, case.forget_train.labels),
                       per_example_loss(fwd.logits[forget_mask], case.eval_set.labels[forget_mask]))
    steps = relearn(model, case.relearn_set.images, case.relearn_set.labels, case.eval_forget, case.forget_class,
                    profile.relearn_cap, profile.relearn_every, profile.relearn_lr, profile.relearn_batch, case.seed)
    probe = representation_probe(fwd.features.numpy(), case.eval_set.labels.numpy(), case.forget_class, case.seed)
    row = {"forget_acc": ev.forget_acc, "retain_acc": ev.retain_acc, "overall_acc": ev.overall,
           "forget_acc_train": on_train.forget_acc, "retain_acc_train": on_train.retain_acc,
           "mia_entropy": attacks["entropy"].share, "mia_loss_gap": gap,
           "relearn_steps": profile.relearn_cap if steps[0.5] is None else steps[0.5],
           "relearn_reached": steps[0.5] is not None,
           "relearn_steps_90": profile.relearn_cap if steps[0.9] is None else steps[0.9],
           "relearn_reached_90": steps[0.9] is not None,
           "probe_recall": probe.recall, "probe_auc": probe.auc,
           "per_class": json.dumps([_clean(round(a, 4)) for a in ev.per_class]),
           "eval_seconds": round(time.perf_counter() - start, 3)}
    for name, result in attacks.items():
        row[f"mia_{name}_share"], row[f"mia_{name}_auc"] = result.share, result.auc
    return row


def run_method(name: str, model: nn.Module, case: Case, use_cache: bool = False) -> tuple[UnlearnOutcome, float, bool]:
    """(outcome, peak memory in MB, cached?) of one method; ``model`` is not changed."""
    device = model_device(model)
    if name == "retrain" and use_cache:
        hit = _load_retrain(case, model)
        if hit is not None:
            return hit[0], hit[1], True
    torch.manual_seed(case.seed)
    with PeakMemory(device) as memory:
        outcome = METHODS[name](model, case.context())
    if name == "retrain" and use_cache:
        _store_retrain(case, outcome, memory.peak_mb, device)
    return outcome, memory.peak_mb, False


def _row(profile: Profile, case: Case, method: str, metrics: dict, seconds: float, peak: float, uses: str,
         cached: bool, device: torch.device, details: dict) -> dict:
    return {"profile": profile.name, "dataset": case.dataset, "arch": case.arch, "method": method,
            "forget_class": case.forget_class, "seed": case.seed, **metrics, "seconds": seconds, "peak_mem_mb": peak,
            "uses_training_data": uses, "cached": cached, "eval_size": len(case.eval_set), "pool_size": len(case.pool),
            "device": str(device), "details": json.dumps(details, default=str)}


def run_plan(plan: Plan, data_dir: str | None = None, device: str = "auto", use_cache: bool = True,
             progress: bool = True, on_case=None) -> list[dict]:
    """Run every (target, seed, class, method); returns the rows (``on_case(rows)`` after each case)."""
    from tqdm import tqdm

    from core.models.checkpoints import load_checkpoint, shipped_checkpoint

    dev = pick_device(device)
    profile = plan.profile
    total = sum(t.seeds * len(t.classes) * (len(plan.methods) + 1) for t in plan.targets)
    bar = tqdm(total=total, desc="bench", unit="run", disable=not progress, mininterval=0.5, dynamic_ncols=True)
    rows: list[dict] = []
    try:
        for target in plan.targets:
            model, card = load_checkpoint(shipped_checkpoint(target.dataset, target.arch))
            if card.dataset != target.dataset:
                raise UserError(f"assets/{target.dataset}/{target.arch} was trained on {card.dataset}.")
            model = model.to(dev).eval()
            train = load_split(target.dataset, "train", data_dir)
            test = load_split(target.dataset, "test", data_dir)
            train_config = _train_config(card, target.dataset)
            for seed in target.seed_range:
                pool, eval_set = split_heldout(test, profile.pool_per_class, seed)
                if target.eval_per_class:
                    eval_set = stratified_sample(eval_set, target.eval_per_class, seed)
                base_forward = forward_with_features(model, eval_set.images)
                for c in target.classes:
                    case = make_case(target, profile, train, pool, eval_set, train_config, c, seed)
                    bar.set_description(f"{target.dataset}/{target.arch} seed {seed} class {c} original")
                    metrics = measure(model, case, profile, base_forward)
                    rows.append(_row(profile, case, ORIGINAL, metrics, 0.0, 0.0, ORIGINAL_DATA, False, dev, {}))
                    bar.update(1)
                    for name in plan.methods:
                        bar.set_description(f"{target.dataset}/{target.arch} seed {seed} class {c} {name}")
                        outcome, peak, cached = run_method(name, model, case, use_cache)
                        metrics = measure(outcome.model, case, profile)
                        rows.append(_row(profile, case, name, metrics, outcome.seconds, peak,
                                         outcome.uses_training_data, cached, dev, outcome.details))
                        del outcome
                        bar.update(1)
                    if on_case is not None:
                        on_case(rows)
    finally:
        bar.close()
    return rows


def run_bench(profile: str = "quick", methods: list[str] | None = None, datasets: list[str] | None = None,
              seeds: int | None = None, classes: list[int] | None = None, data_dir: str | None = None,
              device: str = "auto", out: str | Path | None = None, use_cache: bool = True, progress: bool = True,
              command: str = "", archs: list[str] | None = None, first_seed: int = 0) -> Path:
    """Plan, run and write runs.csv, summary.csv, summary.md, figures/ and meta.json under ``out``."""
    from core.bench.store import write_outputs
    from core.unlearning.config import PAPER_CONFIG, default_config

    plan = make_plan(profile, methods, datasets, seeds, classes, data_dir, archs=archs, first_seed=first_seed)
    out_dir = Path(out) if out else Path("bench-results") / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = choose_threads()
    torch.set_num_threads(threads)
    dev = pick_device(device)
    meta = {"command": command, "date": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": machine_info(dev, threads), "git_commit": _git_commit(),
            "git_core_modified": _git_dirty(), "profile": plan.profile.settings(),
            "targets": [dataclasses.asdict(t) for t in plan.targets], "methods": plan.methods,
            "skipped": plan.skipped, "retrain_cache": str(cache_dir() / "bench" / "retrain") if use_cache else None,
            "unlearn_configs": {"lra_npp": PAPER_CONFIG.to_dict(), "ours": default_config().to_dict()},
            "status": "running"}
    for note in plan.skipped:
        print(f"skipped {note}", file=sys.stderr)
    start = time.perf_counter()

    def write(rows: list[dict], final: bool = False) -> None:
        meta["wall_seconds"] = round(time.perf_counter() - start, 1)
        meta["status"] = "complete" if final else "partial"
        write_outputs(rows, out_dir, meta, figures=final)

    rows = run_plan(plan, data_dir, device, use_cache, progress, on_case=write)
    write(rows, final=True)
    return out_dir


def run_bench_cli(args) -> int:
    """``python -m core bench``: without --out the results go to bench-results/<profile>."""
    command = "python -m core " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = args.out or Path("bench-results") / args.profile
    out_dir = run_bench(args.profile, args.methods, args.datasets, args.seeds, args.classes, args.data_dir,
                        args.device, out, use_cache=os.environ.get("UNLEARN_BENCH_NO_CACHE", "") in ("", "0"),
                        command=command, archs=getattr(args, "archs", None),
                        first_seed=getattr(args, "first_seed", 0))
    print((out_dir / "summary.md").read_text())
    print(f"wrote {out_dir}/runs.csv, summary.csv, summary.md, meta.json and figures/")
    return 0
