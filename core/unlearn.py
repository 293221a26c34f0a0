"""The unlearning pipeline: relevance -> neuronal path -> perturbation, from the analysis pool only.

:func:`unlearn` is the one-shot call (CLI, benchmark). :class:`PerturbationExplorer` keeps the
selected path and an activation cache of the evaluation set, so that a new strength or method
re-runs only the stages after the earliest perturbed one (the dashboard's slider).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from core.compute import ActivationCache, LinearRowCache, predict_logits
from core.data import AnalysisPool, ImageSet, require_analysis_pool
from core.erase import candidate_layers, choose_layers
from core.errors import UserError
from core.evaluate import Evaluation, summarize, wrong_retain_answers
from core.graph import Cut, ModelGraph, fitting_graph, graph_of
from core.models import clone_model
from core.paths import NeuronPath, find_path
from core.perturb import ParamEdit, PerturbationSpec, apply_edits, edit_cut, edit_in_place, plan_edits
from core.relabel import Relabelling, relabel
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
    validation_fraction: float = 0.5     # share of the pool kept back to calibrate H (h="calibrate")
    retain_budget: float = 0.02          # largest retain-accuracy drop calibration may spend (validation)
    margin_steps: int = 0                # calibration: shares taken past the first that forgets the validation images
    auto_out_max_forget: float = 0.0     # target="auto": take "out" when its validation forget accuracy is at most this
    erase: str = "none"                  # "none" | "auto": erase the class direction before the classifier (core.erase)
    erase_max_layers: int = 6            # at most this many layers, from the classifier backwards, where ...
    erase_min_wrong: int = 20            # ... the validation part holds this many wrong retain answers to price them;
    erase_max_layers_few_errors: int = 2     # at most this many where it holds fewer (a near-perfect model)
    erase_budget: float = 0.005          # largest extra retain-accuracy drop erasure may spend (validation) ...
    erase_error_share: float = 0.1       # ... or this share of the validation retain error, if larger
    erase_shrinkage: float = 0.1         # covariance shrinkage of the eraser
    relabel: str = "none"                # "none" | "auto": teach forget images their second choice (core.relabel)
    relabel_budget: float = 0.02         # largest extra retain-accuracy drop relabelling may spend (validation)
    relabel_min_wrong: int = 20          # skip relabelling with fewer wrong validation answers to compare with

    def __post_init__(self):
        if self.target not in ("in", "out", "both", "auto"):
            raise UserError(f"Unknown target '{self.target}'; choose in, out, both or auto.")
        if self.target == "auto" and self.h != "calibrate":
            raise UserError("target 'auto' is chosen on the validation part of the pool; it needs h='calibrate'.")
        if self.h == "auto" and self.selection != "contrast":
            raise UserError("h='auto' covers a share of the class-contrast score; it needs selection 'contrast' "
                            "(or give H as a count or a share).")
        if self.erase not in ("none", "auto"):
            raise UserError(f"Unknown erase setting '{self.erase}'; choose none or auto.")
        if self.relabel not in ("none", "auto"):
            raise UserError(f"Unknown relabel setting '{self.relabel}'; choose none or auto.")

    def spec(self) -> PerturbationSpec:
        return PerturbationSpec(self.method, self.strength, self.target, self.keep_bias, self.out_classes, self.seed)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers) if self.layers else None
        return d


# The authors' recipe (DESIGN.md 1): epsilon LRP at the classifier input, frequency selection,
# zero the units' incoming rows (bias kept) and their weight to the forget class.
PAPER_CONFIG = UnlearnConfig(keep_bias=True)

# This project's default (chosen on the validation part of the pool, see BENCHMARKS.md): rank the
# classifier-input units by class contrast, calibrate how many to take on held-out pool images,
# cut their weights to the forget class, or silence them completely (incoming rows, bias, BatchNorm)
# where that alone does not forget the validation images, then erase the class direction from the
# layers before the classifier (core.erase), and teach the classifier to give the class's images
# their second choice as surely as a model that never learned the class would (core.relabel).
OURS_CONFIG = UnlearnConfig(selection="contrast", h="calibrate", target="auto", keep_bias=False, retain_budget=0.02,
                            erase="auto", relabel="auto")


def default_config() -> UnlearnConfig:
    """The settings ``python -m core unlearn`` and the dashboard start from."""
    return OURS_CONFIG


@dataclass
class UnlearnResult:
    model: nn.Module
    path: NeuronPath
    config: UnlearnConfig
    seconds: dict = field(default_factory=dict)
    erased_layers: list[str] = field(default_factory=list)
    relabelling: Relabelling | None = None

    @property
    def seconds_unlearn(self) -> float:
        return self.seconds["total"]


def check_class(forget_class: int, num_classes: int) -> int:
    if not 0 <= int(forget_class) < num_classes:
        raise UserError(f"Class {forget_class} is out of range; the model has {num_classes} classes (0-{num_classes - 1}).")
    return int(forget_class)


def unlearn(model: nn.Module, pool: AnalysisPool, forget_class: int, config: UnlearnConfig | None = None,
            analyzer: RelevanceAnalyzer | None = None) -> UnlearnResult:
    """Forget ``forget_class`` using only the analysis pool (with ``default_config()`` unless a
    config is given). Returns a new model; ``model`` is untouched.

    With ``h="calibrate"`` the pool is split into an analysis part (relevance, ranking) and a
    validation part; H is the smallest share of units that drives the validation forget accuracy
    to its minimum while the validation retain accuracy drops at most ``retain_budget``.
    ``target="auto"`` calibrates the forget-class weights alone ("out") first and keeps them when
    they forget every validation image of the class (``auto_out_max_forget``), else silences the
    units completely ("both"); the result's config names the target used.
    With ``erase="auto"`` the class direction is then erased from the deepest layers before the
    classifier (down to ``erase_max_layers``, or ``erase_max_layers_few_errors`` where the original
    model gets fewer than ``erase_min_wrong`` validation retain images wrong) whose erasure costs at
    most ``erase_budget`` of validation retain accuracy, or ``erase_error_share`` of the retain error
    if that is more (:func:`core.erase.choose_layers`; erasers fitted on the analysis part). With
    ``relabel="auto"`` the classifier finally learns, in closed form, to give the class's images
    their second choice under the original model, as surely as it answers the validation images it
    gets wrong (:func:`core.relabel.relabel`; skipped where it gets fewer than
    ``relabel_min_wrong`` wrong)."""
    pool = require_analysis_pool(pool)
    forget_class = check_class(forget_class, pool.info.num_classes)
    config = config or default_config()
    start = time.perf_counter()
    graph = fitting_graph(model, pool.info.input_shape, pool.info.num_classes)
    analyzer = analyzer or RelevanceAnalyzer(model, config.rule, config.epsilon)
    layers = list(config.layers) if config.layers else None
    calibrate = config.h == "calibrate"
    fit, val = pool.validation_split(config.validation_fraction, config.seed) if calibrate else (pool, None)
    path = find_path(analyzer, fit, forget_class, layers, config.k, "all" if calibrate else config.h,
                     config.selection, config.n_images, config.seed, config.coverage)
    val_cache = None
    if config.target == "auto" and not calibrate:
        raise UserError("target 'auto' is chosen on the validation part of the pool; it needs h='calibrate'.")
    if calibrate:
        ranked, candidates = path, (["out", "both"] if config.target == "auto" else [config.target])
        cuts = {t: _first_cut(model, graph, ranked, replace(config, target=t)) for t in candidates}
        first = min(cuts.values(), key=lambda cut: cut.position)
        keep = tuple(name for layer in candidate_layers(graph)[:config.erase_max_layers_few_errors]
                     for name in graph.cut_at_module(layer).live) if config.erase == "auto" else ()
        val_cache = ActivationCache.build(model, graph, val.images, first, keep=keep)   # shared by every candidate
        for target in candidates:   # "auto": the forget-class weights alone when they forget the validation images
            config = replace(config, target=target)
            path = calibrate_path(model, ranked, val, config, val_cache.advanced(model, cuts[target]))
            if path.settings["validation_forget_acc"] <= config.auto_out_max_forget:
                break
    analysed = time.perf_counter()
    edits = plan_edits(model, path.units, forget_class, config.spec(), pool.info.input_shape)
    variant = apply_edits(model, edits, config.spec())
    perturbed = time.perf_counter()
    erased: list[str] = []
    if val is None and "auto" in (config.erase, config.relabel):
        fit, val = pool.validation_split(config.validation_fraction, config.seed)
    original_logits = None       # the original model on the validation part: the erasure's and relabelling's gate
    if "auto" in (config.erase, config.relabel):
        original_logits = val_cache.tail_logits(model) if val_cache is not None else predict_logits(model, val.images)
    if config.erase == "auto":
        erased, variant = erase_class_direction(variant, model, fit, val, forget_class, config, original_logits,
                                                val_cache)
    erased_at = time.perf_counter()
    relabelling = None
    if config.relabel == "auto":
        relabelling, variant = relabel_forget_images(variant, model, fit, val, forget_class, config, original_logits)
    done = time.perf_counter()
    seconds = {"relevance_and_selection": analysed - start, "perturbation": perturbed - analysed,
               "erasure": erased_at - perturbed, "relabelling": done - erased_at, "total": done - start}
    return UnlearnResult(variant, path, config, seconds, erased, relabelling)


def erasure_depth(original_val_logits: torch.Tensor, val: AnalysisPool, forget_class: int, config: UnlearnConfig) -> int:
    """How many layers erasure may try: ``erase_max_layers`` where the original model answers at
    least ``erase_min_wrong`` validation retain images wrongly, else ``erase_max_layers_few_errors``.
    On a near-perfect model one validation image is already half the budget, too coarse to price
    deeper erasure (MNIST All-CNN: 6 layers stayed within it, yet cost 0.3 more points on held-back
    pool images for no probe recall; BENCHMARKS.md section 8)."""
    wrong = wrong_retain_answers(original_val_logits, val.labels, forget_class)
    return config.erase_max_layers if wrong >= config.erase_min_wrong else min(config.erase_max_layers,
                                                                               config.erase_max_layers_few_errors)


def erase_class_direction(perturbed: nn.Module, original: nn.Module, fit: AnalysisPool, val: AnalysisPool,
                          forget_class: int, config: UnlearnConfig,
                          original_val_logits: torch.Tensor | None = None,
                          val_cache: ActivationCache | None = None) -> tuple[list[str], nn.Module]:
    """:func:`core.erase.choose_layers` with ``config``'s erasure settings, to the depth
    :func:`erasure_depth` allows: (erased layers, erased copy)."""
    if original_val_logits is None:
        original_val_logits = predict_logits(original, val.images)
    return choose_layers(perturbed, fit, val, forget_class, erasure_depth(original_val_logits, val, forget_class, config),
                         config.erase_budget, config.erase_shrinkage, seed=config.seed,
                         error_share=config.erase_error_share, graph=graph_of(original, fit.info.input_shape),
                         val_cache=val_cache)


def relabel_forget_images(erased: nn.Module, original: nn.Module, fit: AnalysisPool, val: AnalysisPool,
                          forget_class: int, config: UnlearnConfig,
                          original_val_logits: torch.Tensor | None = None) -> tuple[Relabelling, nn.Module]:
    """:func:`core.relabel.relabel` with ``config``'s settings (the ridge shares the eraser's shrinkage)."""
    return relabel(erased, original, fit, val, forget_class, config.relabel_budget, config.erase_shrinkage,
                   config.relabel_min_wrong, original_val_logits)


CALIBRATION_SHARES = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)


def _first_cut(model: nn.Module, graph: ModelGraph, ranked: NeuronPath, config: UnlearnConfig) -> Cut:
    """The cut before the earliest layer the full ranked path would edit under ``config``."""
    edits = plan_edits(model, ranked.truncated(1.0).units, ranked.forget_class, config.spec(), graph.input_shape)
    return edit_cut(graph, edits)


def calibrate_path(model: nn.Module, ranked: NeuronPath, val: AnalysisPool, config: UnlearnConfig,
                   cache: ActivationCache | None = None) -> NeuronPath:
    """Cut a fully ranked path to the share of units chosen on the validation part of the pool:
    the smallest share reaching the lowest forget accuracy within the retain budget, then
    ``margin_steps`` shares further while the budget allows (a safety margin: the validation part
    holds few forget images). Shares grow on one working copy, each step editing only new units."""
    spec, shape, forget = config.spec(), val.info.input_shape, ranked.forget_class
    graph = graph_of(model, shape)
    full_edits = plan_edits(model, ranked.truncated(1.0).units, forget, spec, shape)
    cache = cache or ActivationCache.build(model, graph, val.images, edit_cut(graph, full_edits))
    base = summarize(cache.tail_logits(model), val.labels, forget)
    working, generator = clone_model(model), torch.Generator().manual_seed(spec.seed)
    rows_cache = _row_edit_cache(model, cache, full_edits)
    done: dict[str, set[int]] = {name: set() for name in ranked.selections}
    best, best_forget, margin_left = ranked.truncated(CALIBRATION_SHARES[0]), float("inf"), None
    for share in CALIBRATION_SHARES:
        candidate = ranked.truncated(share)
        new_units = {name: [u for u in units if u not in done[name]] for name, units in candidate.units.items()}
        edits = plan_edits(model, new_units, forget, spec, shape)
        edit_in_place(working, edits, spec, generator)
        for name, units in new_units.items():
            done[name].update(units)
        if rows_cache is not None:
            logits = rows_cache.recomputed_logits(working, _edited_rows(edits, rows_cache.layer))
        else:
            logits = cache.tail_logits(working)
        score = summarize(logits, val.labels, forget)
        if base.retain_acc - score.retain_acc > config.retain_budget:
            break
        if margin_left is not None:
            best, margin_left = candidate, margin_left - 1
        elif score.forget_acc < best_forget:
            best, best_forget = candidate, score.forget_acc
            if score.forget_acc == 0.0:
                margin_left = config.margin_steps
        if margin_left == 0:
            break
    best.settings["validation_forget_acc"] = best_forget
    return best


def _edited_rows(edits: list[ParamEdit], layer: str) -> list[int] | None:
    """The rows ``edits`` change in module ``layer``; None when an edit there is not by rows."""
    here = [e for e in edits if e.param.rsplit(".", 1)[0] == layer]
    if any(e.rows is None or e.cols is not None for e in here):
        return None
    return sorted({r for e in here for r in e.rows})


def _row_edit_cache(model: nn.Module, cache: ActivationCache, edits: list[ParamEdit]) -> LinearRowCache | None:
    """A :class:`LinearRowCache` over the layer right after ``cache``'s cut when it is a Linear
    layer whose rows alone are edited (then only those rows need recomputing), else None."""
    graph = cache.graph
    if cache.cut.position >= len(graph.nodes):
        return None
    node = graph.nodes[cache.cut.position]
    if node.op != "call_module" or not isinstance(graph.modules[node.target], nn.Linear):
        return None
    if not graph.called_once(node.target):
        return None
    rows = _edited_rows(edits, node.target)
    return None if rows is None else LinearRowCache.build(model, cache, node.target, rows)


class PerturbationExplorer:
    """Re-evaluate one selected path under many perturbation settings, fast.

    The evaluation set's live tensors are cached at the cut before the earliest layer the edits
    touch (:mod:`core.graph`: one tensor for a chain, skip connections too in a residual network);
    each call copies the model, applies the edits and runs only the part after the cut. When that
    layer is a Linear layer whose rows alone change, its output is cached too and only the edited
    rows are updated (:class:`core.compute.LinearRowCache`)."""

    def __init__(self, model: nn.Module, path: NeuronPath, eval_set: ImageSet, base: PerturbationSpec):
        self.model, self.path, self.eval_set, self.base = model, path, eval_set, base
        self.input_shape = eval_set.info.input_shape
        self.graph = graph_of(model, self.input_shape)
        edits = plan_edits(model, path.units, path.forget_class, base, self.input_shape)
        self.cache = ActivationCache.build(model, self.graph, eval_set.images, edit_cut(self.graph, edits))
        self.rows_cache = _row_edit_cache(model, self.cache, edits)

    @property
    def reuse(self) -> dict:
        """How much of the model a slider step skips: the operations before the cut, of all, and
        whether the step is a full evaluation (the earliest edit is the first operation)."""
        total = sum(1 for n in self.graph.nodes if n.op not in ("placeholder", "output", "get_attr"))
        skipped = sum(1 for n in self.graph.nodes[:self.cache.cut.position]
                      if n.op not in ("placeholder", "output", "get_attr"))
        return {"skipped": skipped, "total": total, "full": skipped == 0, "cached": list(self.cache.cut.live),
                "rows": self.rows_cache is not None}

    def variant(self, **changes) -> tuple[nn.Module, PerturbationSpec]:
        spec = replace(self.base, **changes)
        edits = plan_edits(self.model, self.path.units, self.path.forget_class, spec, self.input_shape)
        if edit_cut(self.graph, edits).position < self.cache.cut.position:
            raise UserError("This target changes layers before the cached activations; build a new explorer.")
        return apply_edits(self.model, edits, spec, share_unedited=True), spec

    def evaluate(self, **changes) -> tuple[Evaluation, nn.Module]:
        """Evaluation of the perturbed model (e.g. ``strength=0.5``) from the cache."""
        variant, spec = self.variant(**changes)
        same_rows = spec.target == self.base.target and spec.keep_bias == self.base.keep_bias
        if self.rows_cache is not None and same_rows:
            logits = self.rows_cache.tail_logits(self.model, variant, spec.method, float(spec.strength), spec.seed)
        else:
            logits = self.cache.tail_logits(variant)
        return summarize(logits, self.eval_set.labels, self.path.forget_class), variant
