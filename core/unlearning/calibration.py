"""Calibration: how many of the ranked units to perturb, chosen on the validation part of the pool.

The path's units are ranked in full (selection ``h=None``); shares :data:`CALIBRATION_SHARES` of
that ranking are tried in order on one working copy. The chosen share is the smallest reaching the
lowest validation forget accuracy while the validation retain accuracy drops at most
``retain_budget`` and no single retain class's validation accuracy drops more than ``class_budget``
(shares stop growing at the first that would exceed either; then ``margin_steps`` shares further
while the budgets allow). Where some validation forget images are still recognised at every
share, shares of the same forget accuracy are told apart by the forget class's mean softmax
probability p_c on the validation forget images, the lowest taken: the count of 50 images moves in
steps of 2 points and stalls on one stubborn image, while p_c keeps saying how close the other
images of the class are to being recognised (on the choice seeds this took the MNIST cnn's worst
run from 4.5 % to 1.5 % of its held-back forget images; BENCHMARKS.md, section 2).
With several ``targets`` they are calibrated in turn until one forgets
the validation images (forget accuracy at most ``max_forget``); of those calibrated, the one with
the lowest validation forget accuracy is kept (the earlier on a tie).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.attribution.paths import NeuronPath
from core.data.sets import AnalysisPool
from core.errors import UserError, check_share, check_whole
from core.metrics.evaluate import summarize, worst_class_drop
from core.models.compute import Activations
from core.models.graph import Cut, ModelGraph, graph_of
from core.unlearning.explorer import edited_rows, row_edit_cache
from core.unlearning.perturb import (TARGETS, PerturbationSpec, edit_cut, edit_in_place, edited_modules, plan_edits,
                                     shallow_variant)


@dataclass(frozen=True)
class Calibration:
    """Settings of the calibration (see the module docstring). ``targets=None``: the perturbation's
    own target only; ``("out", "both")``: the forget-class weights alone first, else the units
    silenced completely."""

    retain_budget: float = 0.02
    class_budget: float | None = None
    margin_steps: int = 0
    targets: tuple[str, ...] | None = None
    max_forget: float = 0.0

    def __post_init__(self):
        check_share(self.retain_budget, "calibration.retain_budget")
        if self.class_budget is not None:
            check_share(self.class_budget, "calibration.class_budget")
        check_share(self.max_forget, "calibration.max_forget")
        check_whole(self.margin_steps, "calibration.margin_steps")
        if self.targets is not None:
            targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
            if not targets or any(t not in TARGETS for t in targets):
                raise UserError(f"calibration.targets must list targets among {', '.join(TARGETS)}, "
                                f"got {self.targets!r}.")
            object.__setattr__(self, "targets", targets)


CALIBRATION_SHARES = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)


def first_cut(model: nn.Module, graph: ModelGraph, ranked: NeuronPath, spec: PerturbationSpec) -> Cut:
    """The cut before the earliest layer the full ranked path would edit under ``spec``."""
    edits = plan_edits(model, ranked.truncated(1.0).units, ranked.forget_class, spec, graph.input_shape)
    return edit_cut(graph, edits)


def calibrate_path(model: nn.Module, ranked: NeuronPath, val: AnalysisPool, spec: PerturbationSpec,
                   calibration: Calibration, activations: Activations | None = None) -> NeuronPath:
    """Cut a fully ranked path to the share of units chosen on the validation part of the pool:
    the smallest share reaching the lowest forget accuracy within the retain budget, then
    the calibration's ``margin_steps`` shares further while the budget allows (a safety margin: the validation part
    holds few forget images). Shares grow on one working copy, each step editing only new units.
    ``activations``: ``val``'s :class:`Activations` under ``model`` (the original model's logits and
    the tensors before the path's first layer are read from it; made here when not given)."""
    shape, forget = val.info.input_shape, ranked.forget_class
    graph = graph_of(model, shape)
    full_edits = plan_edits(model, ranked.truncated(1.0).units, forget, spec, shape)
    activations = activations if activations is not None and activations.model is model else Activations(model, val)
    cache = activations.at(edit_cut(graph, full_edits))
    base = summarize(activations.logits(), val.labels, forget)
    working = shallow_variant(model, edited_modules(full_edits))     # the full path's layers copied, the rest shared
    generator = torch.Generator().manual_seed(spec.seed)
    rows_cache = row_edit_cache(model, cache, full_edits, activations)
    done: dict[str, set[int]] = {name: set() for name in ranked.selections}
    best, margin_left = ranked.truncated(CALIBRATION_SHARES[0]), None
    best_score = (float("inf"), float("inf"))          # (forget accuracy, mean forget-class probability)
    is_forget = val.labels == forget
    class_budget = float("inf") if calibration.class_budget is None else calibration.class_budget
    for share in CALIBRATION_SHARES:
        candidate = ranked.truncated(share)
        new_units = {name: [u for u in units if u not in done[name]] for name, units in candidate.units.items()}
        edits = plan_edits(model, new_units, forget, spec, shape)
        edit_in_place(working, edits, spec, generator)
        for name, units in new_units.items():
            done[name].update(units)
        if rows_cache is not None:
            logits = rows_cache.recomputed_logits(working, edited_rows(edits, rows_cache.layer))
        else:
            logits = cache.tail_logits(working)
        score = summarize(logits, val.labels, forget)
        if base.retain_acc - score.retain_acc > calibration.retain_budget or \
                worst_class_drop(base, score) > class_budget:
            break
        if margin_left is not None:
            best, margin_left = candidate, margin_left - 1
        elif (scored := (score.forget_acc, forget_probability(logits, is_forget, forget))) < best_score:
            best, best_score = candidate, scored
            if score.forget_acc == 0.0:
                margin_left = calibration.margin_steps
        if margin_left == 0:
            break
    best.settings["validation_forget_acc"] = best_score[0]
    best.settings["validation_forget_probability"] = round(best_score[1], 6)
    return best


def forget_probability(logits: torch.Tensor, is_forget: torch.Tensor, forget_class: int) -> float:
    """p_c: the forget class's mean softmax probability over the forget images (``is_forget``)."""
    return float(torch.softmax(logits[is_forget], 1)[:, forget_class].mean()) if is_forget.any() else 0.0


