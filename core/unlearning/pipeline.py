"""The unlearning pipeline: relevance -> neuronal path -> perturbation, from the analysis pool only.

:func:`unlearn` is the one-shot call (CLI, benchmark): it finds the path, calibrates how many units
to take on the validation part of the pool, perturbs them, then (where the settings ask) erases the
class direction, relabels the forget images and repairs the other classes' logits.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from core.attribution.paths import NeuronPath, find_path
from core.attribution.relevance import RelevanceAnalyzer
from core.data.sets import AnalysisPool, require_analysis_pool
from core.errors import UserError
from core.models.compute import Activations
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


def load_libraries() -> float:
    """Import what :func:`unlearn` imports on its first call, so that a caller timing one call (the
    CLI) times the unlearning, not Python loading modules: zennit's canonizers, with torchvision
    (whose ``ops`` pull in ``torch._dynamo``, about 1-2 s on a 2-core CPU), and the symbolic shapes
    torch.fx's shape propagation imports when it first traces a model. Returns the seconds taken."""
    start = time.perf_counter()
    import core.attribution.canonizers  # noqa: F401  (zennit, torchvision)
    import torch.fx.experimental.symbolic_shapes  # noqa: F401
    return time.perf_counter() - start


def unlearn(model: nn.Module, pool: AnalysisPool, forget_class: int, config: UnlearnConfig | None = None,
            analyzer: RelevanceAnalyzer | None = None, activations=None) -> UnlearnResult:
    """Forget ``forget_class`` using only the analysis pool (with ``default_config()`` unless a
    config is given). Returns a new model; ``model`` is untouched. ``analyzer`` and ``activations``
    (called as ``activations(model, image_set)`` for a :class:`core.models.compute.Activations`) may
    remember earlier answers, as the dashboard's do; the results are the same.

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
    make = activations or Activations
    fit_acts, val_acts = (make(model, fit), make(model, val)) if val is not None else (None, None)
    if calibration is not None:
        ranked, candidates = path, config.targets()
        trials = {t: config.override({"perturbation.target": t}) for t in candidates}
        cuts = {t: first_cut(model, graph, ranked, trials[t].perturbation) for t in candidates}
        first = min(cuts.values(), key=lambda cut: cut.position)
        erasable = candidate_layers(graph)[:config.erasure.max_layers] if config.erasure is not None else []
        early = [graph.earliest_cut(erasable)] if erasable else []
        rows_at = [graph.cut_after(graph.nodes[c.position]) for c in cuts.values() if c.position < len(graph.nodes) - 1]
        # one pass: every target's cut, the output of its first layer (a row cache reads it) and the erasure's
        val_acts.prepare([first, *early, *rows_at, val_acts.classifier_cut()])
        chosen = None
        for target in candidates:   # in order, until one forgets the validation images; the lowest forget kept
            trial = trials[target]
            found = calibrate_path(model, ranked, val, trial.perturbation, calibration, val_acts)
            if chosen is None or found.settings["validation_forget_acc"] < chosen[1].settings["validation_forget_acc"]:
                chosen = (trial, found)
            if found.settings["validation_forget_acc"] <= calibration.max_forget:
                break
        config, path = chosen
    analysed = time.perf_counter()
    edits = plan_edits(model, path.units, forget_class, config.perturbation, pool.info.input_shape)
    variant = apply_edits(model, edits, config.perturbation)
    perturbed = time.perf_counter()
    last = last_stages(variant, model, fit, val, forget_class, config, fit_acts, val_acts) if config.has_last_stages \
        else LastStages([], None, None, {}, {name: 0.0 for name in STAGES})
    done = time.perf_counter()
    seconds = {"relevance_and_selection": analysed - start, "perturbation": perturbed - analysed, **last.seconds,
               "total": done - start}
    return UnlearnResult(last.model(variant), path, config, seconds, last.erased_layers, last.relabelling,
                         last.repairing)


STAGES = ("erasure", "relabelling", "repair")


@dataclass
class LastStages:
    """What :func:`last_stages` did: the erased layers, the relabelling and the repair (None where
    the config has no such stage), the model after each stage that changed it (``"erased"`` whenever
    erasure ran, ``"relabelled"`` and ``"repaired"`` where their strength is above 0, in that order)
    and the seconds each stage took."""

    erased_layers: list[str]
    relabelling: Relabelling | None
    repairing: Repairing | None
    models: dict[str, nn.Module]
    seconds: dict[str, float]

    def model(self, perturbed: nn.Module) -> nn.Module:
        """The final model: the last stage's, else ``perturbed``."""
        return list(self.models.values())[-1] if self.models else perturbed


def last_stages(perturbed: nn.Module, original: nn.Module, fit: AnalysisPool, val: AnalysisPool, forget_class: int,
                config: UnlearnConfig, fit_acts: Activations | None = None, val_acts: Activations | None = None,
                step: Callable[[str], None] | None = None) -> LastStages:
    """Stages 4-6 of :func:`unlearn` on ``perturbed`` (``original`` with its path perturbed), each where
    ``config`` has it: erasure (:func:`erase_class_direction`), relabelling
    (:func:`core.unlearning.relabel.relabel`) and the repair (:func:`core.unlearning.repair.repair`), each
    on the model the stage before left. ``fit_acts``, ``val_acts``: the parts' :class:`Activations`
    under ``original`` when the caller holds them; every stage reads the tensors before its model's
    first changed layer from them. ``step(name)`` is told each stage (:data:`STAGES`) as it starts."""
    say = step or (lambda name: None)
    fit_acts, val_acts = fit_acts or Activations(original, fit), val_acts or Activations(original, val)
    original_logits = val_acts.logits()           # the later stages' reference
    models, seconds, erased, relabelling, repairing = {}, {}, [], None, None
    variant, clock = perturbed, time.perf_counter()
    if config.erasure is not None:
        say("erasure")
        erased, variant = erase_class_direction(variant, original, fit, val, forget_class, config, original_logits,
                                                fit_acts, val_acts)
        models["erased"] = variant
    seconds["erasure"], clock = time.perf_counter() - clock, time.perf_counter()
    if config.relabel is not None:
        say("relabelling")
        s = config.relabel
        relabelling, relabelled = relabel(variant, original, fit, val, forget_class, s.budget, s.shrinkage, s.min_wrong,
                                          original_logits, fit_acts, val_acts)
        if relabelling.strength:
            models["relabelled"] = variant = relabelled
    seconds["relabelling"], clock = time.perf_counter() - clock, time.perf_counter()
    if config.repair is not None:
        say("repair")
        repairing, repaired = repair(variant, original, fit, val, forget_class, config.repair.shrinkage, original_logits,
                                     config.repair.forget_weight, fit_acts, val_acts)
        if repairing.strength:
            models["repaired"] = repaired
    seconds["repair"] = time.perf_counter() - clock
    return LastStages(erased, relabelling, repairing, models, seconds)


def erase_class_direction(perturbed: nn.Module, original: nn.Module, fit: AnalysisPool, val: AnalysisPool,
                          forget_class: int, config: UnlearnConfig,
                          original_val_logits: torch.Tensor | None = None, fit_acts: Activations | None = None,
                          val_acts: Activations | None = None) -> tuple[list[str], nn.Module]:
    """:func:`core.unlearning.erase.choose_layers` with ``config.erasure``'s settings, to the depth
    :meth:`core.unlearning.erase.Erasure.depth` allows: (erased layers, erased copy). ``fit_acts``,
    ``val_acts``: the parts' :class:`Activations` under ``original``."""
    settings = config.erasure
    fit_acts, val_acts = fit_acts or Activations(original, fit), val_acts or Activations(original, val)
    if original_val_logits is None:
        original_val_logits = val_acts.logits()
    return choose_layers(perturbed, fit, val, forget_class, settings.depth(original_val_logits, val, forget_class),
                         settings.budget, settings.shrinkage, seed=config.seed, error_share=settings.error_share,
                         graph=graph_of(original, fit.info.input_shape), fit_acts=fit_acts, val_acts=val_acts)
