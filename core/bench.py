"""Benchmark: every unlearning method of :mod:`core.baselines` against retraining, on the same data.

For each (dataset, architecture, seed, forget class):

1. the test split is cut by :func:`core.data.split_heldout` (seeded) into the analysis pool (100
   images per class, the only data zero-shot methods see) and the evaluation set (everything else);
2. each method unlearns a copy of the shipped model; its seconds (unlearning only) and peak memory
   (extra RSS on CPU, sampled every 2 ms; extra allocated CUDA memory on GPU) are recorded;
3. the result is measured on the evaluation set: forget / retain / per-class accuracy, the entropy
   membership attack (:func:`core.evaluate.membership_inference`), the loss attack gap, relearn
   steps and the representation probe (:mod:`core.probes`).

The original model is measured the same way (row ``original``). The seed changes the pool /
evaluation split, the analysis sample, the noise and the baselines' training randomness.
Retrained models are cached on disk (``<cache_dir>/bench/retrain``) keyed by everything that
determines them, so a rerun skips retraining and reports the seconds measured when it was trained.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from core.baselines import METHODS, BaselineBudget, UnlearnContext, UnlearnOutcome, check_methods
from core.compute import model_device, pick_device
from core.data import ImageSet, cache_dir, dataset_available, dataset_info, load_split, split_heldout
from core.errors import UserError
from core.evaluate import membership_inference, summarize
from core.probes import (forward_with_features, loss_mia_gap, per_example_loss, relearn_steps,
                         representation_probe)
from core.train import TrainConfig, recipe_for

from core.report import RUN_COLUMNS  # noqa: E402,F401  (the dashboard reads these names)

EXTRA_COLUMNS = ["overall_acc", "relearn_reached", "cached", "eval_size", "pool_size", "device", "eval_seconds",
                 "details"]
ORIGINAL = "original"
ORIGINAL_DATA = "n/a (the original model)"


# ----------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class Target:
    """One model to benchmark: the shipped checkpoint ``assets/<dataset>/<arch>.safetensors``."""

    dataset: str
    arch: str
    classes: tuple[int, ...]
    seeds: int
    budget: BaselineBudget = field(default_factory=BaselineBudget)
    eval_per_class: int | None = None      # None: the whole evaluation set
    note: str = ""
    first_seed: int = 0                    # seeds first_seed .. first_seed + seeds - 1

    @property
    def seed_range(self) -> range:
        return range(self.first_seed, self.first_seed + self.seeds)


@dataclass(frozen=True)
class Profile:
    name: str
    targets: tuple[Target, ...]
    description: str
    pool_per_class: int = 100
    mia_n: int = 2000
    relearn_cap: int = 200
    relearn_every: int | None = None       # None: every step to 8, then ~20 % apart
    relearn_lr: float = 3e-4
    relearn_batch: int = 32

    def settings(self) -> dict:
        d = dataclasses.asdict(self)
        d["targets"] = [dataclasses.asdict(t) for t in self.targets]
        return d


ALL_CLASSES = tuple(range(10))
# The quick profile must finish its first run (no cached retrains) within 10 minutes on 2 shared CPU
# cores. MNIST: retraining is 1 epoch over a seeded 16,384-image sample of the retain data (128
# steps of 128; the recipe is 3 epochs over all ~54,000), fine-tuning and random labels 30 steps,
# SSD importances from 2,048 images, and the metrics use 100 images per class of the evaluation set.
QUICK_DIGITS_BUDGET = BaselineBudget(finetune_steps=50, random_label_steps=50)
QUICK_MNIST_BUDGET = BaselineBudget(retrain_epochs=1, retrain_samples=16_384, finetune_steps=30,
                                    random_label_steps=30, ssd_samples=2048)

PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        (Target("digits", "cnn", (0, 3, 8), 2, QUICK_DIGITS_BUDGET),
         Target("mnist", "cnn", (0, 3, 8), 2, QUICK_MNIST_BUDGET, eval_per_class=100,
                note="retrain 1 epoch over a seeded 16,384-image sample of the retain data (128 steps; the "
                     "recipe is 3 epochs over all ~54,000), metrics on a seeded 100 images per class of the "
                     "evaluation set")),
        "minutes on a CPU: digits and MNIST CNN, forget classes 0, 3, 8, 2 seeds, short baseline budgets; "
        "MNIST retraining reduced to 128 steps (recipe: 3 epochs) and metrics on 100 images per class",
        mia_n=500, relearn_cap=100),
    "full": Profile(
        "full",
        (Target("digits", "cnn", ALL_CLASSES, 3),
         Target("mnist", "cnn", ALL_CLASSES, 3),
         Target("mnist", "allcnn", ALL_CLASSES, 3),
         Target("cifar10", "*", (0, 3, 5), 3)),
        "every class of MNIST (CNN and All-CNN) with the full retraining recipe, 3 seeds; CIFAR-10 on "
        "each shipped model, 3 classes; meant for long runs or a GPU"),
}


def _shipped_archs(dataset: str) -> list[str]:
    from core.models import shipped_checkpoints

    return [path.stem for path, card in shipped_checkpoints() if path.parent.name == dataset]


def _checkpoint_exists(dataset: str, arch: str) -> bool:
    from core.models import shipped_checkpoint

    return shipped_checkpoint(dataset, arch).is_file()


@dataclass
class Plan:
    profile: Profile
    targets: list[Target]
    methods: list[str]
    skipped: list[str]


def make_plan(profile_name: str, methods: list[str] | None = None, datasets: list[str] | None = None,
              seeds: int | None = None, classes: list[int] | None = None, data_dir: str | None = None,
              archs: list[str] | None = None, first_seed: int = 0) -> Plan:
    """The targets to run, with the command line's overrides applied and unavailable ones skipped.

    A dataset named with ``--datasets`` that the profile does not list runs on every shipped
    checkpoint for it, with the full profile's classes (or 0, 1, 2). A target named explicitly whose
    data or checkpoint is missing is an error; one that only comes with the profile is skipped.
    ``archs`` keeps only the targets of those architectures; ``first_seed`` shifts the seeds to
    ``first_seed .. first_seed + seeds - 1`` (so that one run can be split over several processes)."""
    if profile_name not in PROFILES:
        raise UserError(f"Unknown profile '{profile_name}'; choose {' or '.join(PROFILES)}.")
    profile = PROFILES[profile_name]
    methods = check_methods(methods)
    if seeds is not None and seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}.")
    if first_seed is None:
        first_seed = 0
    if first_seed < 0:
        raise UserError(f"--first-seed must be 0 or more, got {first_seed}.")
    wanted = None if archs is None else list(dict.fromkeys(archs))
    seen: list[str] = []            # dataset/arch of every candidate, for the --archs message
    matched: set[str] = set()       # the wanted architectures some candidate has
    candidates: list[Target] = []
    explicit = datasets is not None
    if datasets is None:
        candidates = list(profile.targets)
    else:
        for name in datasets:
            key = dataset_info(name).name if ":" not in name else name
            own = [t for t in profile.targets if t.dataset == key]
            if not own:
                like = [t for t in PROFILES["full"].targets if t.dataset == key]
                base = like[0] if like else Target(key, "*", (0, 1, 2), 3)
                own = [dataclasses.replace(base, seeds=max(t.seeds for t in profile.targets))]
            candidates += own
    targets, skipped = [], []
    for target in candidates:
        archs = _shipped_archs(target.dataset) if target.arch == "*" else [target.arch]
        if not archs:
            reason = f"{target.dataset}: no shipped checkpoint in assets/{target.dataset}/"
            if explicit:
                raise UserError(f"No shipped checkpoint for {target.dataset}; train one with 'python -m core train'.")
            skipped.append(reason)
            continue
        for arch in archs:
            seen.append(f"{target.dataset}/{arch}")
            if wanted is not None and arch not in wanted:
                continue
            matched.add(arch)
            if not _checkpoint_exists(target.dataset, arch):
                if explicit:
                    raise UserError(f"No shipped checkpoint assets/{target.dataset}/{arch}.safetensors.")
                skipped.append(f"{target.dataset}/{arch}: checkpoint not found")
                continue
            ok, why = dataset_available(target.dataset, data_dir)
            if not ok:
                if explicit:
                    raise UserError(why)
                skipped.append(f"{target.dataset}/{arch}: {why}")
                continue
            t = dataclasses.replace(target, arch=arch, first_seed=first_seed)
            if seeds is not None:
                t = dataclasses.replace(t, seeds=seeds)
            if classes is not None:
                n = dataset_info(t.dataset).num_classes
                bad = [c for c in classes if not 0 <= c < n]
                if bad:
                    raise UserError(f"Class {bad[0]} is out of range; {t.dataset} has classes 0 to {n - 1}.")
                t = dataclasses.replace(t, classes=tuple(dict.fromkeys(classes)))
            targets.append(t)
    if wanted is not None:
        if not matched:
            raise UserError(f"No target of the {profile.name} profile" + (f" for {', '.join(datasets)}" if datasets else "")
                            + f" has the architecture {' or '.join(wanted)}; its targets are "
                            + (", ".join(dict.fromkeys(seen)) or "none") + ".")
        for arch in wanted:
            if arch not in matched:
                skipped.append(f"--archs {arch}: no target of the {profile.name} profile has it")
    if not targets:
        raise UserError("Nothing to run: " + ("; ".join(skipped) or "no targets") + ".")
    return Plan(profile, targets, methods, skipped)


# ----------------------------------------------------------------------------- memory
def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Extra memory a block needed: on CUDA max_memory_allocated during the block minus the memory
    allocated when it started; on CPU the peak resident set size (sampled from /proc/self/statm
    every ``interval`` seconds in a thread) minus the RSS when it started. Where /proc is missing,
    the increase of ru_maxrss (0 unless the block set a new process-wide peak)."""

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device, self.interval = device, interval
        self.peak_mb = 0.0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = _rss_bytes()
        if self._base is None:
            import resource

            self._ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return self
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            value = _rss_bytes()
            if value is not None and value > self._peak:
                self._peak = value
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            extra = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self._base is None:
            import resource

            scale = 1 if sys.platform == "darwin" else 1024
            extra = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._ru) * scale
        else:
            self._stop.set()
            self._thread.join()
            last = _rss_bytes() or 0
            extra = max(self._peak, last) - self._base
        self.peak_mb = max(extra, 0) / 2 ** 20


# ----------------------------------------------------------------------------- one case
@dataclass
class Case:
    """The data of one (target, seed, forget class): what methods may use and what metrics read."""

    dataset: str
    arch: str
    forget_class: int
    seed: int
    pool: object
    eval_set: ImageSet
    train: ImageSet
    train_config: TrainConfig
    budget: BaselineBudget
    mia_members: ImageSet           # retain-class training images (entropy attack's members)
    mia_heldout: ImageSet           # retain-class evaluation images (its non-members)
    forget_train: ImageSet          # forget-class training images (sample)
    eval_forget: torch.Tensor       # evaluation images of the forget class

    def context(self) -> UnlearnContext:
        return UnlearnContext(self.forget_class, self.pool, self.train, self.arch, self.train_config,
                              self.seed, self.budget)


def _train_config(card, dataset: str) -> TrainConfig:
    raw = (card.notes or {}).get("train_config")
    if isinstance(raw, dict):
        known = {k: v for k, v in raw.items() if k in TrainConfig.__dataclass_fields__}
        return TrainConfig(**known)
    return recipe_for(dataset)


def stratified_sample(data: ImageSet, per_class: int, seed: int) -> ImageSet:
    """At most ``per_class`` images of each class, seeded, original order kept."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(data.info.num_classes):
        where = (data.labels == c).nonzero(as_tuple=True)[0]
        keep.append(where[torch.randperm(len(where), generator=g)[:per_class]])
    return data.subset(torch.cat(keep).sort().values)


def make_case(target: Target, profile: Profile, train: ImageSet, pool, eval_set: ImageSet, train_config: TrainConfig,
              forget_class: int, seed: int) -> Case:
    g = torch.Generator().manual_seed(seed * 7919 + forget_class)
    n = profile.mia_n

    def sample(data: ImageSet, mask: torch.Tensor) -> ImageSet:
        where = mask.nonzero(as_tuple=True)[0]
        return data.subset(where[torch.randperm(len(where), generator=g)[:n]].sort().values)

    return Case(target.dataset, target.arch, forget_class, seed, pool, eval_set, train, train_config, target.budget,
                mia_members=sample(train, train.labels != forget_class),
                mia_heldout=sample(eval_set, eval_set.labels != forget_class),
                forget_train=sample(train, train.labels == forget_class),
                eval_forget=eval_set.images[eval_set.labels == forget_class])


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def measure(model: nn.Module, case: Case, profile: Profile, forward=None) -> dict:
    """Every metric of ``model`` on ``case`` (evaluation only; nothing here is timed as unlearning)."""
    start = time.perf_counter()
    fwd = forward or forward_with_features(model, case.eval_set.images)
    ev = summarize(fwd.logits, case.eval_set.labels, case.forget_class)
    mia = membership_inference(model, case.mia_members, case.mia_heldout, case.forget_train, n=profile.mia_n,
                               seed=case.seed)
    member_logits = forward_with_features(model, case.forget_train.images).logits
    forget_mask = case.eval_set.labels == case.forget_class
    gap = loss_mia_gap(per_example_loss(member_logits, case.forget_train.labels),
                       per_example_loss(fwd.logits[forget_mask], case.eval_set.labels[forget_mask]))
    steps, reached = relearn_steps(model, case.pool, case.eval_forget, case.forget_class, profile.relearn_cap,
                                   profile.relearn_every, profile.relearn_lr, profile.relearn_batch, case.seed)
    probe = representation_probe(fwd.features.numpy(), case.eval_set.labels.numpy(), case.forget_class, case.seed)
    return {"forget_acc": ev.forget_acc, "retain_acc": ev.retain_acc, "overall_acc": ev.overall,
            "mia_entropy": mia, "mia_loss_gap": gap, "relearn_steps": steps, "relearn_reached": reached,
            "probe_recall": probe.recall, "probe_auc": probe.auc,
            "per_class": json.dumps([_clean(round(a, 4)) for a in ev.per_class]),
            "eval_seconds": round(time.perf_counter() - start, 3)}


# ----------------------------------------------------------------------------- retrain cache
def _retrain_key(case: Case) -> dict:
    config = dataclasses.replace(case.train_config, seed=case.seed)
    if case.budget.retrain_epochs is not None:
        config = dataclasses.replace(config, epochs=case.budget.retrain_epochs)
    return {"dataset": case.dataset, "arch": case.arch, "forget_class": case.forget_class, "seed": case.seed,
            "train_config": config.to_dict(), "samples": case.budget.retrain_samples, "n_train": len(case.train),
            "labels_sum": int(case.train.labels.sum()), "format": 1}


def _retrain_cache_path(case: Case) -> Path:
    key = _retrain_key(case)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{case.dataset.replace(':', '_').replace('/', '_')}-{case.arch}-c{case.forget_class}-s{case.seed}-{digest}"
    return cache_dir() / "bench" / "retrain" / f"{name}.safetensors"


def _load_retrain(case: Case, model: nn.Module) -> tuple[UnlearnOutcome, float] | None:
    from safetensors.torch import load_file

    from core.models import build_model, load_weights

    path = _retrain_cache_path(case)
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        fresh = build_model(case.arch, case.eval_set.info.num_classes, case.eval_set.info.input_shape, seed=case.seed)
        load_weights(fresh, load_file(str(path)), path.name)
    except Exception:  # noqa: BLE001 - a broken cache entry is simply retrained
        return None
    outcome = UnlearnOutcome(fresh.to(model_device(model)).eval(), float(meta["seconds"]), meta["uses_training_data"],
                             {**meta.get("details", {}), "cached_from": meta.get("created", "")})
    return outcome, float(meta["peak_mem_mb"])


def _store_retrain(case: Case, outcome: UnlearnOutcome, peak_mb: float, device: torch.device) -> None:
    from safetensors.torch import save_file

    path = _retrain_cache_path(case)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in outcome.model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
    meta = {"key": _retrain_key(case), "seconds": outcome.seconds, "peak_mem_mb": peak_mb, "device": str(device),
            "uses_training_data": outcome.uses_training_data, "details": outcome.details,
            "created": dt.datetime.now().isoformat(timespec="seconds")}
    tmp_meta = path.with_name(f".{path.stem}.json.tmp-{os.getpid()}")
    tmp_meta.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_meta, path.with_suffix(".json"))


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


# ----------------------------------------------------------------------------- the run
def choose_threads() -> int:
    """Torch threads for the run: $UNLEARN_BENCH_THREADS, else $OMP_NUM_THREADS, else the cores not
    already busy (cpu count minus the 1-minute load average, at least 1): on a shared machine
    fewer threads avoid the stalls of threads waiting for each other."""
    for var in ("UNLEARN_BENCH_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").strip().isdigit() and int(os.environ[var]) > 0:
            return int(os.environ[var])
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (OSError, AttributeError):
        busy = 0.0
    return max(1, min(cores, int(round(cores - busy))))


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

    from core.models import load_checkpoint, shipped_checkpoint

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


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[1],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_commit() -> str | None:
    return _git("rev-parse", "HEAD") or None


def _git_dirty() -> bool | None:
    """True when tracked files under core/ differ from the commit (the results may not match it)."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", "core")
    return None if status is None else bool(status)


def machine_info(device: torch.device, threads: int) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "device": str(device), "torch_threads": threads}
    try:
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import zennit
        import sklearn

        info["zennit"] = getattr(zennit, "__version__", "?")
        info["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    return info


def run_bench(profile: str = "quick", methods: list[str] | None = None, datasets: list[str] | None = None,
              seeds: int | None = None, classes: list[int] | None = None, data_dir: str | None = None,
              device: str = "auto", out: str | Path | None = None, use_cache: bool = True, progress: bool = True,
              command: str = "", archs: list[str] | None = None, first_seed: int = 0) -> Path:
    """Plan, run and write runs.csv, summary.csv, summary.md, figures/ and meta.json under ``out``."""
    from core import report
    from core.unlearn import PAPER_CONFIG, default_config

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
        report.write_outputs(rows, out_dir, meta, figures=final)

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
