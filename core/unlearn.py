"""The unlearning pipeline: relevance -> neuronal path -> perturbation, from the analysis pool only.

:func:`unlearn` is the one-shot call (CLI, benchmark). :class:`PerturbationExplorer` keeps the
selected path and an activation cache of the evaluation set, so that a new strength or method
re-runs only the stages after the earliest perturbed one (the dashboard's slider).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

from torch import nn

from core.compute import ActivationCache
from core.data import AnalysisPool, ImageSet, require_analysis_pool
from core.errors import UserError
from core.evaluate import Evaluation, summarize
from core.paths import NeuronPath, find_path
from core.perturb import PerturbationSpec, apply_edits, first_changed_stage, plan_edits
from core.relevance import RelevanceAnalyzer

# The authors' defaults (MNIST: K=50, H=80 of 512 units) as shares of the analysed layer's width.
PAPER_K_SHARE, PAPER_H_SHARE = 50 / 512, 80 / 512


@dataclass(frozen=True)
class UnlearnConfig:
    """Every knob of neuronal-path unlearning. ``k``/``h``: unit counts, or shares of the layer
    width when in (0, 1); ``h="auto"`` covers ``coverage`` of the contrast score."""

    k: int | float = PAPER_K_SHARE
    h: int | float | str = PAPER_H_SHARE
    layers: tuple[str, ...] | None = None
    rule: str = "epsilon"
    epsilon: float = 0.1
    selection: str = "frequency"
    n_images: int | None = 36
    coverage: float = 0.5
    method: str = "zero"
    target: str = "both"
    strength: float = 1.0
    keep_bias: bool = False
    out_classes: str = "forget"
    seed: int = 0

    def spec(self) -> PerturbationSpec:
        return PerturbationSpec(self.method, self.strength, self.target, self.keep_bias, self.out_classes, self.seed)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers) if self.layers else None
        return d


# The authors' recipe (DESIGN.md 1): epsilon LRP at the classifier input, frequency selection,
# zero the units' incoming rows (bias kept) and their weight to the forget class.
PAPER_CONFIG = UnlearnConfig(keep_bias=True)

# This project's default: class-contrast selection of 30 % of the classifier-input units, each
# silenced completely (incoming rows, bias, BatchNorm, and its weight to the forget class).
OURS_CONFIG = UnlearnConfig(selection="contrast", h=0.3, target="both", keep_bias=False)


def default_config() -> UnlearnConfig:
    """The settings ``python -m core unlearn`` and the dashboard start from."""
    return OURS_CONFIG


@dataclass
class UnlearnResult:
    model: nn.Module
    path: NeuronPath
    config: UnlearnConfig
    seconds: dict = field(default_factory=dict)

    @property
    def seconds_unlearn(self) -> float:
        return self.seconds["total"]


def check_class(forget_class: int, num_classes: int) -> int:
    if not 0 <= int(forget_class) < num_classes:
        raise UserError(f"Class {forget_class} is out of range; the model has {num_classes} classes (0-{num_classes - 1}).")
    return int(forget_class)


def unlearn(model: nn.Module, pool: AnalysisPool, forget_class: int, config: UnlearnConfig = UnlearnConfig(),
            analyzer: RelevanceAnalyzer | None = None) -> UnlearnResult:
    """Forget ``forget_class`` using only the analysis pool. Returns a new model; ``model`` is untouched."""
    pool = require_analysis_pool(pool)
    forget_class = check_class(forget_class, pool.info.num_classes)
    start = time.perf_counter()
    analyzer = analyzer or RelevanceAnalyzer(model, config.rule, config.epsilon)
    path = find_path(analyzer, pool, forget_class, list(config.layers) if config.layers else None, config.k,
                     config.h, config.selection, config.n_images, config.seed, config.coverage)
    analysed = time.perf_counter()
    edits = plan_edits(model, path.units, forget_class, config.spec(), pool.info.input_shape)
    variant = apply_edits(model, edits, config.spec())
    done = time.perf_counter()
    seconds = {"relevance_and_selection": analysed - start, "perturbation": done - analysed, "total": done - start}
    return UnlearnResult(variant, path, config, seconds)


class PerturbationExplorer:
    """Re-evaluate one selected path under many perturbation settings, fast.

    The evaluation set's activations are cached at the input of the earliest stage the edits touch;
    each call copies the model, applies the edits and runs only the remaining stages."""

    def __init__(self, model: nn.Module, path: NeuronPath, eval_set: ImageSet, base: PerturbationSpec):
        self.model, self.path, self.eval_set, self.base = model, path, eval_set, base
        self.input_shape = eval_set.info.input_shape
        edits = plan_edits(model, path.units, path.forget_class, base, self.input_shape)
        self.cache = ActivationCache.build(model, eval_set.images, first_changed_stage(model, edits))

    def variant(self, **changes) -> tuple[nn.Module, PerturbationSpec]:
        spec = replace(self.base, **changes)
        edits = plan_edits(self.model, self.path.units, self.path.forget_class, spec, self.input_shape)
        if first_changed_stage(self.model, edits) < self.cache.start:
            raise UserError("This target changes layers before the cached activations; build a new explorer.")
        return apply_edits(self.model, edits, spec), spec

    def evaluate(self, **changes) -> tuple[Evaluation, nn.Module]:
        """Evaluation of the perturbed model (e.g. ``strength=0.5``) from the cache."""
        variant, _ = self.variant(**changes)
        logits = self.cache.tail_logits(variant)
        return summarize(logits, self.eval_set.labels, self.path.forget_class), variant

