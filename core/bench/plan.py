"""What a benchmark run measures: profiles, the plan of targets, and the cases they expand to.

For each (dataset, architecture, seed, forget class) the test split is cut by
:func:`core.data.split_heldout` (seeded) into the analysis pool (the only data zero-shot methods
see) and the evaluation set (everything else). The seed changes the pool / evaluation split, the
analysis sample, the noise and the baselines' training randomness.

The grid is the list of :class:`CaseSpec` (:func:`plan_cases`): one per (dataset, arch, method,
forget class, seed), the original model counting as the method ``original``. A spec is small and
picklable, and everything a case computes follows from it (and the data), so any process can run
any case in any order and get the same row.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import torch

from core.bench.methods import BaselineBudget, UnlearnContext, check_methods
from core.data.catalog import dataset_available, dataset_info
from core.data.sets import ImageSet
from core.errors import UserError
from core.models.train import TrainConfig, recipe_for


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
    relearn_images: int = 64               # forget-class training images in the relearn set (and as many retain)
    train_eval_per_class: int = 200        # training images per class for the authors' protocol

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
    from core.models.cards import shipped_checkpoints

    return [path.stem for path, card in shipped_checkpoints() if path.parent.name == dataset]


def _checkpoint_exists(dataset: str, arch: str) -> bool:
    from core.models.checkpoints import shipped_checkpoint

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
    relearn_set: ImageSet           # fixed relearn set: forget-class and as many retain-class training images
    train_eval: ImageSet            # seeded sample of the training split (the authors' protocol)

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

    mia_members = sample(train, train.labels != forget_class)
    mia_heldout = sample(eval_set, eval_set.labels != forget_class)
    forget_train = sample(train, train.labels == forget_class)
    relearn_set = _relearn_set(train, forget_class, profile.relearn_images, seed)
    return Case(target.dataset, target.arch, forget_class, seed, pool, eval_set, train, train_config, target.budget,
                mia_members=mia_members, mia_heldout=mia_heldout, forget_train=forget_train,
                eval_forget=eval_set.images[eval_set.labels == forget_class], relearn_set=relearn_set,
                train_eval=stratified_sample(train, profile.train_eval_per_class, seed + 104729))


def _relearn_set(train: ImageSet, forget_class: int, n: int, seed: int) -> ImageSet:
    """``n`` forget-class training images and ``n`` retain-class ones, seeded by (seed, class) only,
    so every method of a case relearns from the same images."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + forget_class)
    parts = []
    for mask in (train.labels == forget_class, train.labels != forget_class):
        where = mask.nonzero(as_tuple=True)[0]
        parts.append(where[torch.randperm(len(where), generator=g)[:n]])
    return train.subset(torch.cat(parts).sort().values)


@dataclass(frozen=True)
class CaseSpec:
    """One cell of the grid: ``method`` (or ``original``) on (target, seed, forget class)."""

    profile: Profile
    target: Target
    seed: int
    forget_class: int
    method: str

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        """(dataset, arch, method, forget class, seed): what identifies a row of runs.csv."""
        return (self.target.dataset, self.target.arch, self.method, self.forget_class, self.seed)

    def label(self) -> str:
        return f"{self.target.dataset}/{self.target.arch} seed {self.seed} class {self.forget_class} {self.method}"


def plan_cases(plan: Plan) -> list[CaseSpec]:
    """Every case of ``plan`` in report order: per target, seed and class the original model, then
    the methods in registry order."""
    from core.bench.columns import ORIGINAL

    return [CaseSpec(plan.profile, t, seed, c, m) for t in plan.targets for seed in t.seed_range
            for c in t.classes for m in [ORIGINAL, *plan.methods]]


def run_settings(profile: Profile) -> dict:
    """What every row of a run depends on besides its own case: the profile's measuring settings
    (not its list of targets) and the two unlearning recipes as they are now."""
    from core.unlearning.config import PAPER_CONFIG, default_config

    settings = {k: v for k, v in profile.settings().items() if k not in ("targets", "description")}
    return {"profile": settings, "unlearn_configs": {"lra_npp": PAPER_CONFIG.to_dict(), "ours": default_config().to_dict()}}


def case_settings(spec: CaseSpec, run: dict) -> str:
    """A digest of everything a case's numbers depend on apart from the code and the data: the run
    settings and the target's baseline budget and evaluation sample. Two rows with the same key and
    digest were measured the same way."""
    own = {"run": run, "budget": spec.target.budget.to_dict(), "eval_per_class": spec.target.eval_per_class}
    return hashlib.sha256(json.dumps(own, sort_keys=True, default=str).encode()).hexdigest()[:16]
