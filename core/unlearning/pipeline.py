"""The unlearning pipeline: relevance -> neuronal path -> perturbation, from the analysis pool only.

:func:`unlearn` is the one-shot call (CLI, benchmark): it finds the path, calibrates how many units
to take on the validation part of the pool, perturbs them, then (where the settings ask) erases the
class direction, relabels the forget images and repairs the other classes' logits.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from core.attribution.paths import NeuronPath, find_path
from core.attribution.relevance import RelevanceAnalyzer
from core.data.sets import AnalysisPool, require_analysis_pool
from core.errors import UserError
from core.models.compute import ActivationCache, predict_logits
from core.models.graph import fitting_graph, graph_of
from core.unlearning.calibration import calibrate_path, first_cut
from core.unlearning.config import UnlearnConfig, default_config
from core.unlearning.erase import candidate_layers, choose_layers
from core.unlearning.perturb import apply_edits, plan_edits
from core.unlearning.relabel import Relabelling, relabel
from core.unlearning.repair import Repairing, repair


@dataclass
class UnlearnResult:
    model: nn.Module
    path: NeuronPath
    config: UnlearnConfig
    seconds: dict = field(default_factory=dict)
    erased_layers: list[str] = field(default_factory=list)
    relabelling: Relabelling | None = None
    repairing: Repairing | None = None

    @property
    def seconds_unlearn(self) -> float:
        return self.seconds["total"]


def check_class(forget_class: int, num_classes: int) -> int:
    if not 0 <= int(forget_class) < num_classes:
        raise UserError(f"Class {forget_class} is out of range; the model has {num_classes} classes (0-{num_classes - 1}).")
    return int(forget_class)


def unlearn(model: nn.Module, pool: AnalysisPool, forget_class: int, config: UnlearnConfig | None = None,
            analyzer: RelevanceAnalyzer | None = None, activations=None) -> UnlearnResult:
    """Forget ``forget_class`` using only the analysis pool (with ``default_config()`` unless a
    config is given). Returns a new model; ``model`` is untouched. ``analyzer`` and ``activations``
    (an object with :meth:`core.models.compute.ActivationCache.build`'s signature) may remember
    earlier answers, as the dashboard's do; the results are the same.

    Where a stage needs validation (``config.calibration``, ``erasure``, ``relabel`` or ``repair``), the pool
    is split into an analysis part (fitting; the path's relevance under calibration) and a
    validation part; without calibration the path is found on the whole pool.

    1. The path: LRP relevance of the forget images, units selected per layer
       (:func:`core.attribution.paths.find_path`); under calibration every unit is ranked.
    2. Calibration (:mod:`core.unlearning.calibration`): H is the smallest share of the ranking that
       drives the validation forget accuracy to its minimum within the retain budget and the
       per-class budget; with several targets, the one that forgets the validation images best is
       kept, and the result's config names it.
    3. The perturbation (:mod:`core.unlearning.perturb`) of the path's weights.
    4. Erasure: the class direction erased from the deepest layers before the classifier whose
       erasure stays within its budget (:func:`core.unlearning.erase.choose_layers`).
    5. Relabelling: the classifier learns, in closed form, to give the class's images their second
       choice under the original model (:func:`core.unlearning.relabel.relabel`).
    6. Repair: the classifier is refitted, in closed form, towards the original model's logits on
       the retain images, leaving the forget class's weights as they are
       (:func:`core.unlearning.repair.repair`)."""
    pool = require_analysis_pool(pool)
    forget_class = check_class(forget_class, pool.info.num_classes)
    config = config or default_config()
    start = time.perf_counter()
    graph = fitting_graph(model, pool.info.input_shape, pool.info.num_classes)
    analyzer = analyzer or config.lrp.analyzer(model)
    sel = config.selection
    fit, val = pool.validation_split(config.validation_fraction, config.seed) if config.validated else (pool, None)
    calibration = config.calibration
    path = find_path(analyzer, fit if calibration is not None else pool, forget_class, list(sel.layers) if sel.layers else None, sel.k,
                     "all" if calibration is not None else sel.h, sel.method, sel.n_images, config.seed, sel.coverage)
    val_cache = None
    if calibration is not None:
        ranked, candidates = path, config.targets()
        trials = {t: config.override({"perturbation.target": t}) for t in candidates}
        cuts = {t: first_cut(model, graph, ranked, trials[t].perturbation) for t in candidates}
        first = min(cuts.values(), key=lambda cut: cut.position)
        keep = tuple(name for layer in candidate_layers(graph)[:config.erasure.max_layers_few_errors]
                     for name in graph.cut_at_module(layer).live) if config.erasure is not None else ()
        val_cache = (activations or ActivationCache).build(model, graph, val.images, first, keep=keep)   # every candidate
        chosen = None
        for target in candidates:   # in order, until one forgets the validation images; the lowest forget kept
            trial = trials[target]
            found = calibrate_path(model, ranked, val, trial.perturbation, calibration,
                                   val_cache.advanced(model, cuts[target]))
            if chosen is None or found.settings["validation_forget_acc"] < chosen[1].settings["validation_forget_acc"]:
                chosen = (trial, found)
            if found.settings["validation_forget_acc"] <= calibration.max_forget:
                break
        config, path = chosen
    analysed = time.perf_counter()
    edits = plan_edits(model, path.units, forget_class, config.perturbation, pool.info.input_shape)
    variant = apply_edits(model, edits, config.perturbation)
    perturbed = time.perf_counter()
    erased: list[str] = []
    original_logits = None       # the original model on the validation part: the later stages' reference
    if config.erasure is not None or config.relabel is not None or config.repair is not None:
        original_logits = val_cache.tail_logits(model) if val_cache is not None else predict_logits(model, val.images)
    if config.erasure is not None:
        erased, variant = erase_class_direction(variant, model, fit, val, forget_class, config, original_logits,
                                                val_cache)
    erased_at = time.perf_counter()
    relabelling = None
    if config.relabel is not None:
        s = config.relabel
        relabelling, variant = relabel(variant, model, fit, val, forget_class, s.budget, s.shrinkage, s.min_wrong,
                                       original_logits)
    relabelled_at = time.perf_counter()
    repairing = None
    if config.repair is not None:
        repairing, variant = repair(variant, model, fit, val, forget_class, config.repair.shrinkage, original_logits)
    done = time.perf_counter()
    seconds = {"relevance_and_selection": analysed - start, "perturbation": perturbed - analysed,
               "erasure": erased_at - perturbed, "relabelling": relabelled_at - erased_at, "repair": done - relabelled_at,
               "total": done - start}
    return UnlearnResult(variant, path, config, seconds, erased, relabelling, repairing)


def erase_class_direction(perturbed: nn.Module, original: nn.Module, fit: AnalysisPool, val: AnalysisPool,
                          forget_class: int, config: UnlearnConfig,
                          original_val_logits: torch.Tensor | None = None,
                          val_cache: ActivationCache | None = None) -> tuple[list[str], nn.Module]:
    """:func:`core.unlearning.erase.choose_layers` with ``config.erasure``'s settings, to the depth
    :meth:`core.unlearning.erase.Erasure.depth` allows: (erased layers, erased copy)."""
    settings = config.erasure
    if original_val_logits is None:
        original_val_logits = predict_logits(original, val.images)
    return choose_layers(perturbed, fit, val, forget_class, settings.depth(original_val_logits, val, forget_class),
                         settings.budget, settings.shrinkage, seed=config.seed, error_share=settings.error_share,
                         graph=graph_of(original, fit.info.input_shape), val_cache=val_cache)
