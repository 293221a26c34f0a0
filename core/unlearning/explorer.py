"""The dashboard's slider: a path perturbed at any strength, re-running only what changes.

:class:`PerturbationExplorer` keeps the selected path and an activation cache of the evaluation
set, so that a new strength or method re-runs only the stages after the earliest perturbed one.
"""
from __future__ import annotations

from dataclasses import replace

from torch import nn

from core.attribution.paths import NeuronPath
from core.data.sets import ImageSet
from core.errors import UserError
from core.metrics.evaluate import Evaluation, summarize
from core.models.compute import ActivationCache, Activations, LinearRowCache
from core.models.graph import graph_of
from core.unlearning.perturb import ParamEdit, PerturbationSpec, apply_edits, edit_cut, plan_edits


def edited_rows(edits: list[ParamEdit], layer: str) -> list[int] | None:
    """The rows ``edits`` change in module ``layer``; None when an edit there is not by rows."""
    here = [e for e in edits if e.param.rsplit(".", 1)[0] == layer]
    if any(e.rows is None or e.cols is not None for e in here):
        return None
    return sorted({r for e in here for r in e.rows})


def row_edit_cache(model: nn.Module, cache: ActivationCache, edits: list[ParamEdit],
                   activations: Activations | None = None) -> LinearRowCache | None:
    """A :class:`LinearRowCache` over the layer right after ``cache``'s cut when it is a Linear
    layer whose rows alone are edited (then only those rows need recomputing), else None.
    ``activations``: the images' :class:`Activations` under ``model``, which then runs that layer
    once for every path that starts there (:meth:`LinearRowCache.build`)."""
    graph = cache.graph
    if cache.cut.position >= len(graph.nodes):
        return None
    node = graph.nodes[cache.cut.position]
    if node.op != "call_module" or not isinstance(graph.modules[node.target], nn.Linear):
        return None
    if not graph.called_once(node.target):
        return None
    rows = edited_rows(edits, node.target)
    return None if rows is None else LinearRowCache.build(model, cache, node.target, rows, activations)


class PerturbationExplorer:
    """Re-evaluate one selected path under many perturbation settings, fast.

    The evaluation set's live tensors are cached at the cut before the earliest layer the edits
    touch (:mod:`core.models.graph`: one tensor for a chain, skip connections too in a residual network);
    each call copies the model, applies the edits and runs only the part after the cut. When that
    layer is a Linear layer whose rows alone change, its output is cached too and only the edited
    rows are updated (:class:`core.models.compute.LinearRowCache`)."""

    def __init__(self, model: nn.Module, path: NeuronPath, eval_set: ImageSet, base: PerturbationSpec):
        self.model, self.path, self.eval_set, self.base = model, path, eval_set, base
        self.input_shape = eval_set.info.input_shape
        self.graph = graph_of(model, self.input_shape)
        edits = plan_edits(model, path.units, path.forget_class, base, self.input_shape)
        self.cache = ActivationCache.build(model, self.graph, eval_set.images, edit_cut(self.graph, edits))
        self.rows_cache = row_edit_cache(model, self.cache, edits)

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
