"""The benchmark runner: every method of :mod:`core.bench.methods` against retraining, on the same data.

Each method unlearns a copy of the shipped model; its seconds (unlearning only) and peak memory are
recorded; the result is measured on the evaluation set: forget / retain / per-class accuracy, the
three membership attacks (:mod:`core.metrics.attacks`), the loss attack gap,
relearn steps and the representation probe (:mod:`core.metrics.probes`). The original model is
measured the same way (row ``original``).

One case (:class:`~core.bench.plan.CaseSpec`) is one row: :func:`run_case` rebuilds its data from the
spec alone (checkpoint, seeded split, seeded samples; memoised per process, so consecutive cases of
one target and seed share them) and every random draw is seeded by the case, so a case gives the
same row in any process and order, with the same torch threads. :func:`run_grid` hands the cases
to an executor (:mod:`core.bench.executors`), stores each as it finishes
(:mod:`core.bench.store`), shows one progress bar and rebuilds the folder's outputs;
:func:`run_bench` plans, checks the folder and runs the grid.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import math
import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.bench.columns import ORIGINAL, ORIGINAL_DATA
from core.bench.machine import PeakMemory, _git_commit, _git_dirty, choose_threads, machine_info
from core.bench.executors import CaseResult, InProcessExecutor, RayExecutor, run_grid
from core.bench.methods import METHODS, UnlearnOutcome
from core.bench.plan import (Case, CaseSpec, Plan, Profile, _train_config, case_settings, make_case, make_plan,
                             plan_cases, run_settings, stratified_sample)
from core.bench.report import _as_list
from core.bench.retrain_cache import _load_retrain, _store_retrain, retrain_lock
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
    """(outcome, peak memory in MB, cached?) of one method; ``model`` is not changed. With the cache,
    a retrain is looked up, and trained and stored if absent, under the key's inter-process lock."""
    if name == "retrain" and use_cache:
        with retrain_lock(case):
            hit = _load_retrain(case, model)
            if hit is not None:
                return hit[0], hit[1], True
            outcome, peak = _timed_method(name, model, case)
            _store_retrain(case, outcome, peak, model_device(model))
            return outcome, peak, False
    outcome, peak = _timed_method(name, model, case)
    return outcome, peak, False


def _timed_method(name: str, model: nn.Module, case: Case) -> tuple[UnlearnOutcome, float]:
    torch.manual_seed(case.seed)
    with PeakMemory(model_device(model)) as memory:
        outcome = METHODS[name](model, case.context())
    return outcome, memory.peak_mb


def _row(profile: Profile, case: Case, method: str, metrics: dict, seconds: float, peak: float, uses: str,
         cached: bool, device: torch.device, details: dict) -> dict:
    return {"profile": profile.name, "dataset": case.dataset, "arch": case.arch, "method": method,
            "forget_class": case.forget_class, "seed": case.seed, **metrics, "seconds": seconds, "peak_mem_mb": peak,
            "uses_training_data": uses, "cached": cached, "eval_size": len(case.eval_set), "pool_size": len(case.pool),
            "device": str(device), "details": json.dumps(details, default=str)}


# ----------------------------------------------------------------------------- one case, in any process
@functools.lru_cache(maxsize=2)
def _target_model(dataset: str, arch: str, device: str, stamp: int):
    """(model on ``device`` in eval mode, its training recipe) of a shipped checkpoint (``stamp``:
    the file's mtime, so a retrained checkpoint is read again)."""
    from core.models.checkpoints import load_checkpoint, shipped_checkpoint

    model, card = load_checkpoint(shipped_checkpoint(dataset, arch))
    if card.dataset != dataset:
        raise UserError(f"assets/{dataset}/{arch} was trained on {card.dataset}.")
    return model.to(torch.device(device)).eval(), _train_config(card, dataset)


@functools.lru_cache(maxsize=2)
def _splits(dataset: str, data_dir: str | None):
    return load_split(dataset, "train", data_dir), load_split(dataset, "test", data_dir)


@functools.lru_cache(maxsize=4)
def _seed_data(dataset: str, data_dir: str | None, seed: int, pool_per_class: int, eval_per_class: int | None):
    """(analysis pool, evaluation set) of one seed: the seeded held-out split of the test data."""
    pool, eval_set = split_heldout(_splits(dataset, data_dir)[1], pool_per_class, seed)
    if eval_per_class:
        eval_set = stratified_sample(eval_set, eval_per_class, seed)
    return pool, eval_set


@functools.lru_cache(maxsize=2)
def _case(profile: Profile, target, seed: int, forget_class: int, data_dir: str | None, device: str):
    from core.models.checkpoints import shipped_checkpoint

    stamp = shipped_checkpoint(target.dataset, target.arch).stat().st_mtime_ns
    model, train_config = _target_model(target.dataset, target.arch, device, stamp)
    pool, eval_set = _seed_data(target.dataset, data_dir, seed, profile.pool_per_class, target.eval_per_class)
    train = _splits(target.dataset, data_dir)[0]
    return model, make_case(target, profile, train, pool, eval_set, train_config, forget_class, seed)


def clear_memo() -> None:
    """Forget the checkpoints and data memoised for consecutive cases of this process."""
    for memo in (_case, _seed_data, _splits, _target_model):
        memo.cache_clear()


def run_case(spec: CaseSpec, data_dir: str | None = None, device: str = "auto", use_cache: bool = True) -> dict:
    """The row of one case: the original model measured, or ``spec.method`` run and measured."""
    dev = pick_device(device)
    model, case = _case(spec.profile, spec.target, spec.seed, spec.forget_class, data_dir, str(dev))
    if spec.method == ORIGINAL:
        return _row(spec.profile, case, ORIGINAL, measure(model, case, spec.profile), 0.0, 0.0, ORIGINAL_DATA,
                    False, dev, {})
    outcome, peak, cached = run_method(spec.method, model, case, use_cache)
    metrics = measure(outcome.model, case, spec.profile)
    return _row(spec.profile, case, spec.method, metrics, outcome.seconds, peak, outcome.uses_training_data, cached,
                dev, outcome.details)


@dataclass(frozen=True)
class CaseJob:
    """What every case of a run shares, as a picklable callable ``job(spec) -> CaseResult`` that
    executors send to their workers. ``threads``: torch threads to set first (None: leave them);
    ``env``: environment variables to set first (the data and cache folders of the driver). An
    exception of the case becomes a failed result; KeyboardInterrupt and SystemExit pass."""

    data_dir: str | None = None
    device: str = "auto"
    use_cache: bool = True
    threads: int | None = None
    env: tuple[tuple[str, str], ...] = ()

    def row(self, spec: CaseSpec) -> dict:
        return run_case(spec, self.data_dir, self.device, self.use_cache)

    def __call__(self, spec: CaseSpec) -> CaseResult:
        for name, value in self.env:
            os.environ[name] = value
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return CaseResult(spec, self.row(spec))
        except Exception as err:  # noqa: BLE001 - one failing case must not stop the grid
            message = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return CaseResult(spec, None, f"{type(err).__name__}: {message}"[:500], traceback.format_exc())


def run_plan(plan: Plan, data_dir: str | None = None, device: str = "auto", use_cache: bool = True,
             progress: bool = True, executor=None) -> list[dict]:
    """Every case of ``plan`` in this process (or on ``executor``); the rows in plan order. A case
    that raises is re-raised here (as RuntimeError with its traceback) after the others ran."""
    results = run_grid(plan_cases(plan), executor or InProcessExecutor(), CaseJob(data_dir, device, use_cache),
                       progress)
    clear_memo()
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} case(s) failed; the first, {failed[0].spec.label()}:\n{failed[0].trace}")
    return [r.row for r in results]


# ----------------------------------------------------------------------------- a bench folder
def check_targets(plan: Plan) -> None:
    """Every target's checkpoint is readable and was trained on its dataset (before any work)."""
    from core.models.checkpoints import load_checkpoint, shipped_checkpoint

    for target in plan.targets:
        _, card = load_checkpoint(shipped_checkpoint(target.dataset, target.arch))
        if card.dataset != target.dataset:
            raise UserError(f"assets/{target.dataset}/{target.arch} was trained on {card.dataset}.")


def make_executor(name: str = "inprocess", ray_address: str | None = None, workers: int | None = None,
                  device: str = "auto"):
    """The executor called ``name`` (``inprocess`` or ``ray``); Ray cases get the torch threads of
    $UNLEARN_BENCH_THREADS (default 1) as their CPUs."""
    if name == "inprocess":
        if ray_address or workers is not None:
            raise UserError("--ray-address and --workers need --executor ray.")
        return InProcessExecutor()
    if name == "ray":
        raw = os.environ.get("UNLEARN_BENCH_THREADS", "").strip()
        threads = int(raw) if raw.isdigit() and int(raw) > 0 else 1
        return RayExecutor(ray_address, workers, cpus_per_case=threads, use_gpu=device != "cpu")
    raise UserError(f"Unknown executor '{name}'; choose inprocess or ray.")


def run_bench(profile: str = "quick", methods: list[str] | None = None, datasets: list[str] | None = None,
              seeds: int | None = None, classes: list[int] | None = None, data_dir: str | None = None,
              device: str = "auto", out: str | Path | None = None, use_cache: bool = True, progress: bool = True,
              command: str = "", archs: list[str] | None = None, first_seed: int = 0, executor="inprocess",
              ray_address: str | None = None, workers: int | None = None, resume: bool = False,
              job: CaseJob | None = None) -> Path:
    """Plan the grid, check the folder ``out`` (:func:`core.bench.store.open_folder`), skip its finished
    cases, run the rest on ``executor`` (a name or an executor object) storing each as it finishes,
    and rebuild runs.csv, summary.csv, summary.md, figures/ and meta.json from the stored cases.
    ``job`` replaces the default :class:`CaseJob` (e.g. to inject a failure in a test)."""
    from core.bench import store

    plan = make_plan(profile, methods, datasets, seeds, classes, data_dir, archs=archs, first_seed=first_seed)
    out_dir = Path(out) if out else Path("bench-results") / profile
    specs = plan_cases(plan)
    settings = run_settings(plan.profile)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    digests = {s.key: case_settings(s, settings) for s in specs}
    commit = _git_commit()
    done, old = store.open_folder(out_dir, digest, digests, commit, resume)
    check_targets(plan)
    runner = make_executor(executor, ray_address, workers, device) if isinstance(executor, str) else executor
    threads = choose_threads()
    dev = pick_device(device)
    todo = [s for s in specs if s.key not in done]
    skipped = len(specs) - len(todo)
    if skipped:
        print(f"skipped {skipped} finished case(s) already in {out_dir}; {len(todo)} to run", file=sys.stderr)
    for note in plan.skipped:
        print(f"skipped {note}", file=sys.stderr)
    threads_before = torch.get_num_threads()
    if isinstance(runner, InProcessExecutor):
        torch.set_num_threads(threads)
        job = job or CaseJob(data_dir, device, use_cache)
    else:
        env = tuple((k, os.environ[k]) for k in ("UNLEARN_CACHE_DIR", "UNLEARN_DATA_DIR") if os.environ.get(k))
        job = job or CaseJob(data_dir, device, use_cache, threads=runner.cpus_per_case, env=env)
        threads = runner.cpus_per_case
    commits = [c for c in _as_list(old.get("git_commit")) if c and c != commit] + ([commit] if commit else [])
    meta = {"command": command, "commands": [*old.get("commands", [old["command"]] if old.get("command") else []),
                                             command],
            "date": old.get("date") or dt.datetime.now().isoformat(timespec="seconds"),
            "updated": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": machine_info(dev, threads), "git_commit": commits[0] if len(commits) == 1 else commits or None,
            "git_core_modified": _git_dirty(), "profile": plan.profile.settings(),
            "targets": _union_targets(old.get("targets", []), [dataclasses.asdict(t) for t in plan.targets]),
            "methods": list(dict.fromkeys([*old.get("methods", []), *plan.methods])),
            "skipped": plan.skipped, "retrain_cache": str(cache_dir() / "bench" / "retrain") if use_cache else None,
            "unlearn_configs": settings["unlearn_configs"], "settings_digest": digest, "status": "running",
            "cases": {"planned": len(specs), "skipped_as_finished": skipped, "to_run": len(todo)}}
    order = [s.key for s in specs]
    try:
        with contextlib.ExitStack() as started:
            if todo:                    # start or join Ray (an error here leaves no folder behind)
                started.enter_context(runner)
            _run_into(out_dir, meta, order, todo, runner, job, progress, digests, commit)
    finally:
        clear_memo()
        torch.set_num_threads(threads_before)
    return out_dir


def _run_into(out_dir: Path, meta: dict, order: list, todo: list, runner, job, progress: bool, digests: dict,
              commit: str | None) -> None:
    """Run ``todo`` into ``out_dir``: store each case, rebuild the outputs after each and at the end."""
    from core.bench import store

    out_dir.mkdir(parents=True, exist_ok=True)
    records = store.load_cases(out_dir)
    if todo:
        store.drop_figures(out_dir)
    store.rebuild_outputs(out_dir, meta, order, figures=False, records=records)
    start = time.perf_counter()
    name = getattr(runner, "name", type(runner).__name__)

    def stored(result: CaseResult) -> None:
        records[result.spec.key] = store.save_case(out_dir, result.spec.key, result.row, digests[result.spec.key],
                                                   commit, result.error, result.trace, name)
        meta["wall_seconds"] = round(time.perf_counter() - start, 1)
        store.rebuild_outputs(out_dir, meta, order, figures=False, records=records)

    complete = not todo
    try:
        if todo:
            results = run_grid(todo, runner, job, progress, on_result=stored)
            meta["executor"] = runner.describe()
            complete = all(r.ok for r in results)
    finally:
        meta["wall_seconds"] = round(time.perf_counter() - start, 1)
        meta["status"] = "complete" if complete else "partial"
        meta["updated"] = dt.datetime.now().isoformat(timespec="seconds")
        store.rebuild_outputs(out_dir, meta, order, figures=True, records=records)


def _union_targets(old: list[dict], new: list[dict]) -> list[dict]:
    """The targets of a folder after this run: this run's, then earlier ones it does not repeat."""
    seen = {(t["dataset"], t["arch"]) for t in new}
    return new + [t for t in old if (t.get("dataset"), t.get("arch")) not in seen]


def run_bench_cli(args) -> int:
    """``python -m core bench``: without --out the results go to bench-results/<profile>. Exit 1 when
    a case failed (the others are stored; a rerun runs the failed ones again)."""
    from core.bench.store import load_cases

    command = "python -m core " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = args.out or Path("bench-results") / args.profile
    out_dir = run_bench(args.profile, args.methods, args.datasets, args.seeds, args.classes, args.data_dir,
                        args.device, out, use_cache=os.environ.get("UNLEARN_BENCH_NO_CACHE", "") in ("", "0"),
                        command=command, archs=getattr(args, "archs", None),
                        first_seed=getattr(args, "first_seed", 0), executor=getattr(args, "executor", "inprocess"),
                        ray_address=getattr(args, "ray_address", None), workers=getattr(args, "workers", None),
                        resume=getattr(args, "resume", False))
    if (out_dir / "summary.md").is_file():
        print((out_dir / "summary.md").read_text())
    failed = [r for r in load_cases(out_dir).values() if r.get("status") == "failed"]
    print(f"wrote {out_dir}/cases/, runs.csv, summary.csv, summary.md, meta.json and figures/")
    if failed:
        print(f"{len(failed)} case(s) failed (stored with their errors in {out_dir}/cases/; a rerun runs them "
              f"again): " + "; ".join(f"{'/'.join(map(str, r['key']))}: {r['error']}" for r in failed[:5]),
              file=sys.stderr)
        return 1
    return 0
