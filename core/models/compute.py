"""Where and how models run: device choice, batched inference, and the activation caches.

The activation cache stores a set of images' live tensors at a cut of the model
(:mod:`core.models.graph`). A perturbation that only edits layers at or after the cut is then
re-evaluated by running just the tail: ``logits = tail(cached)`` instead of ``model(images)``.
:class:`Activations` holds one image set's caches at every cut asked for, so that each edited copy
of a model runs only the layers its edits change.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from core.models.graph import Cut, ModelGraph, batch_for, graph_of, remembered_graph
from core.models.tracing import GATE


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; any other value is used as given."""
    if preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_threads() -> None:
    """Use every core for torch on CPU unless the user set ``OMP_NUM_THREADS``."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Logits for ``images`` in batches, on the model's device, returned on the CPU. The default
    batch is the one :meth:`ModelGraph.batch_size` gives where the model's graph is already traced,
    else one for images 32 times the input's size (:func:`core.models.graph.batch_for`)."""
    device = model_device(model)
    if batch_size is None:
        graph = remembered_graph(model)
        batch_size = graph.batch_size(device) if graph is not None else \
            batch_for(32 * images[:1].element_size() * images[:1].numel(), device)
    with GATE.run():
        outputs = [model(images[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(outputs) if outputs else torch.empty(0)


@dataclass
class ActivationCache:
    """A set of images' live tensors at a cut of the model (:mod:`core.models.graph`).

    ``tail_logits(variant)`` runs only the part after the cut of ``variant`` (the same model,
    possibly edited at or after the cut) on the cached tensors; the result equals
    ``variant(images)``.
    """

    graph: ModelGraph
    cut: Cut
    activations: tuple[torch.Tensor, ...]
    batch_size: int | None = None      # None: the graph's (ModelGraph.batch_size)

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, graph: ModelGraph, images: torch.Tensor, cut: Cut,
              batch_size: int | None = None) -> "ActivationCache":
        """Run the part of ``model`` before ``cut`` once on ``images``."""
        return cls(graph, cut, graph.run_probe(model, images, cut.live, batch_size), batch_size)

    @torch.no_grad()
    def tail_logits(self, variant: nn.Module) -> torch.Tensor:
        return self.graph.run_tail(variant, self.activations, self.cut, self.batch_size)

    @torch.no_grad()
    def advanced(self, model: nn.Module, cut: Cut) -> "ActivationCache":
        """The same images carried on to a later ``cut`` through ``model``."""
        if cut == self.cut:
            return self
        return ActivationCache(self.graph, cut, self.graph.run_segment(model, self.activations, self.cut, cut,
                                                                       self.batch_size), self.batch_size)


def changed_modules(original: nn.Module, variant: nn.Module) -> list[str]:
    """Modules of ``variant`` whose parameters or buffers differ from ``original``'s."""
    before = dict(original.state_dict(keep_vars=True))
    out = set()
    for name, tensor in variant.state_dict(keep_vars=True).items():
        old = before.get(name)
        if old is None or (tensor is not old and not torch.equal(tensor.detach(), old.detach())):
            out.add(name.rsplit(".", 1)[0])
    return sorted(out)


class Activations:
    """One image set's live tensors under ``model`` at any cut of its graph, each built once
    (carried on from the nearest earlier cut held, else from the images) and kept.

    A copy of ``model`` that equals it before cut C has, at C, exactly the tensors held for
    ``model``; from C on only the copy's own layers run. So for any edited copy, :meth:`live`,
    :meth:`forward` and :meth:`features` run only the part after its earliest changed layer
    (:func:`changed_modules`), and each stage of the pipeline that measures a copy on the pool pays
    for what it changed, not for the whole model. ``images``: an image set (``.images``,
    ``.info.input_shape``). Only reads ``model``; the lock lets sessions share one."""

    def __init__(self, model: nn.Module, images):
        self.model, self.images = model, images
        self.graph = graph_of(model, tuple(images.info.input_shape))
        self._caches: dict[int, ActivationCache] = {}
        self._lock = threading.RLock()

    def at(self, cut: Cut) -> ActivationCache:
        """``model``'s cache at ``cut``: carried on from the nearest earlier cut held, else built."""
        with self._lock:
            if cut.position in self._caches and self._caches[cut.position].cut == cut:
                return self._caches[cut.position]
            cache = None
            for base in sorted((c for p, c in self._caches.items() if p < cut.position and c.cut.live),
                               key=lambda c: -c.cut.position):
                try:
                    cache = base.advanced(self.model, cut)
                    break
                except Exception:          # noqa: BLE001 - a cut the segment cannot reach: build afresh
                    cache = None
            if cache is None:
                cache = ActivationCache.build(self.model, self.graph, self.images.images, cut)
            self._caches[cut.position] = cache
            return cache

    def prepare(self, cuts: Iterable[Cut]) -> None:
        """Build the caches at ``cuts``, earliest first, so the model runs once over the images."""
        for cut in sorted({c.position: c for c in cuts}.values(), key=lambda c: c.position):
            self.at(cut)

    def classifier_cut(self) -> Cut:
        return self.graph.cut_at_module(self.graph.classifier())

    def start_of(self, variant: nn.Module) -> Cut:
        """The cut before ``variant``'s earliest layer that differs from ``model`` (the end when none)."""
        return self.graph.earliest_cut(changed_modules(self.model, variant)) if variant is not self.model \
            else self.graph.earliest_cut(())

    @torch.no_grad()
    def live(self, variant: nn.Module, cut: Cut, start: Cut | None = None) -> tuple[torch.Tensor, ...]:
        """``variant``'s live tensors at ``cut``. ``start``: a cut before which ``variant`` equals
        ``model`` (found by comparing their weights when not given)."""
        start = start or self.start_of(variant)
        if cut.position <= start.position:
            return self.at(cut).activations
        base = self.at(start)
        return self.graph.run_segment(variant, base.activations, start, cut, base.batch_size)

    def _classifier_rows(self, live: tuple[torch.Tensor, ...], classifier: Cut) -> torch.Tensor:
        """The classifier's input among the tensors ``live`` at its cut, flattened to rows."""
        return live[classifier.live.index(self.graph.classifier_input().name)].flatten(1)

    def _at_classifier(self, variant: nn.Module) -> tuple[tuple[torch.Tensor, ...], bool]:
        """(``variant``'s live tensors at the classifier's cut, whether they are ``model``'s)."""
        start, classifier = self.start_of(variant), self.classifier_cut()
        return self.live(variant, classifier, start), start.position >= classifier.position

    def _answer(self, variant: nn.Module, live: tuple[torch.Tensor, ...],
                unchanged: bool) -> tuple[torch.Tensor, torch.Tensor, bool]:
        classifier = self.classifier_cut()
        return self.graph.run_tail(variant, live, classifier), self._classifier_rows(live, classifier), unchanged

    @torch.no_grad()
    def forward(self, variant: nn.Module) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(logits, classifier inputs flattened, whether those inputs are ``model``'s) of ``variant``."""
        return self._answer(variant, *self._at_classifier(variant))

    @torch.no_grad()
    def forward_each(self, variants: dict[str, nn.Module]) -> dict[str, tuple[torch.Tensor, torch.Tensor, bool]]:
        """:meth:`forward` of each variant, in order. A variant that differs from the one before it
        only in the classifier (relabelling and the repair change nothing else) reads that one's
        classifier inputs, so only its classifier runs."""
        out, last = {}, None                         # last: (variant, its live tensors at the classifier, unchanged)
        for name, variant in variants.items():
            if last is not None and set(changed_modules(last[0], variant)) <= {self.graph.classifier()}:
                live, unchanged = last[1], last[2]
            else:
                live, unchanged = self._at_classifier(variant)
            out[name] = self._answer(variant, live, unchanged)
            last = (variant, live, unchanged)
        return out

    def features(self, variant: nn.Module | None = None) -> torch.Tensor:
        """The rows h ``variant``'s classifier (last Linear) reads, flattened, float64 on the CPU."""
        classifier = self.classifier_cut()
        live = self.live(self.model if variant is None else variant, classifier)
        return self._classifier_rows(live, classifier).double().cpu()

    def logits(self, variant: nn.Module | None = None) -> torch.Tensor:
        """``variant``'s logits on the images (``model``'s when not given)."""
        if variant is None or variant is self.model:
            return self.at(self.classifier_cut()).tail_logits(self.model)
        return self.forward(variant)[0]


@dataclass
class LinearRowCache:
    """Cache for perturbations whose earliest edit is to rows U of a Linear layer.

    The layer computes z = x W^T + b. A copy that changes only rows U has
    z'_U = z_U + x (W'_U - W_U)^T + (b'_U - b_U). Zeroing with strength s makes W'_U = (1 - s) W_U,
    so x (W'_U - W_U)^T = -s (z_U - b_U) costs nothing; noise adds s N_U, and x N_U^T is computed
    once per draw (method, seed). Only the part after this layer is then re-run.
    """

    graph: ModelGraph
    layer: str
    cut: Cut                            # just after the layer
    inputs: torch.Tensor                # x
    live: tuple[torch.Tensor, ...]      # live tensors after the layer, z among them
    slot: int                           # z's place in ``live``
    rows: list[int]
    products: dict = field(default_factory=dict)
    _rows_out: tuple | None = field(default=None, repr=False)   # (rows as an index, their cached outputs)

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, cache: ActivationCache, layer: str, rows: list[int],
              activations: "Activations | None" = None) -> "LinearRowCache | None":
        """From a cache at the cut just before ``layer``; None when its input is not one flat tensor.
        ``activations``: the same images' :class:`Activations` under ``model``, whose cache after the
        layer is then read (and kept there for the next path) instead of running the layer here."""
        graph = cache.graph
        call = graph.call_of(layer)
        source = call.args[0]
        if source.name not in cache.cut.live or len(graph.shape(source)) != 1:
            return None
        after = graph.cut_after(call)
        slot = after.live.index(call.name)
        if activations is not None and activations.model is model:
            held = activations.at(after).activations      # z is edited in place below: a copy of it alone
            live = held[:slot] + (held[slot].clone(),) + held[slot + 1:]
        else:
            live = graph.run_segment(model, cache.activations, cache.cut, after, cache.batch_size)
        return cls(graph, layer, after, cache.activations[cache.cut.live.index(source.name)], live, slot, sorted(rows))

    @property
    def outputs(self) -> torch.Tensor:
        return self.live[self.slot]

    def _logits(self, variant: nn.Module, z: torch.Tensor) -> torch.Tensor:
        live = self.live[:self.slot] + (z,) + self.live[self.slot + 1:]
        return self.graph.run_tail(variant, live, self.cut)

    @torch.no_grad()
    def recomputed_logits(self, variant: nn.Module, rows: list[int]) -> torch.Tensor:
        """Logits of ``variant`` after recomputing ``rows`` of the cached output from its layer,
        z[:, R] = x W'[R]^T + b'[R]. The cache keeps the new rows: for one working copy whose
        edits accumulate (calibration)."""
        if rows:
            layer = variant.get_submodule(self.layer)
            bias = layer.bias[rows] if layer.bias is not None else None
            self.outputs[:, rows] = torch.nn.functional.linear(self.inputs, layer.weight[rows], bias)
            self._rows_out = None
        return self._logits(variant, self.outputs)

    @torch.no_grad()
    def tail_logits(self, source: nn.Module, variant: nn.Module, method: str, strength: float,
                    seed: int) -> torch.Tensor:
        before, after = source.get_submodule(self.layer), variant.get_submodule(self.layer)
        if self._rows_out is None:                # once: indexing by a tensor is 2x faster than by a list
            index = torch.tensor(self.rows, dtype=torch.long, device=self.outputs.device)
            self._rows_out = (index, self.outputs.index_select(1, index))
        index, z_rows = self._rows_out
        delta_b = (after.bias[index] - before.bias[index]) if before.bias is not None else 0.0
        bias = before.bias[index] if before.bias is not None else 0.0
        z = self.outputs.clone()
        if method == "zero":
            z.index_copy_(1, index, (1 - strength) * (z_rows - bias) + bias + delta_b)
        elif strength > 0:
            key = (method, seed)
            if key not in self.products:
                delta_w = after.weight[index] - before.weight[index]
                self.products[key] = self.inputs @ (delta_w / strength).T
            z.index_copy_(1, index, z_rows + strength * self.products[key] + delta_b)
        return self._logits(variant, z)
