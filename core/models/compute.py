"""Where and how models run: device choice, batched inference, and the activation caches.

The activation cache stores a set of images' live tensors at a cut of the model
(:mod:`core.models.graph`). A perturbation that only edits layers at or after the cut is then
re-evaluated by running just the tail: ``logits = tail(cached)`` instead of ``model(images)``.
:class:`Activations` holds one image set's caches at every cut asked for, so that each edited copy
of a model runs only the layers its edits change.
"""
from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

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


ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid,
                       nn.Sigmoid, nn.Tanh, nn.Dropout, nn.Identity)
ELEMENTWISE_FUNCTIONS = {torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardswish, F.hardsigmoid,
                         torch.sigmoid, torch.tanh, F.dropout}
ELEMENTWISE_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone"}


def _elementwise(graph: ModelGraph, node: fx.Node) -> bool:
    """Whether ``node`` acts on each element of its one tensor input alone (no parameters, no
    reshaping), so that it may run on some of the columns of a (N, F) tensor."""
    if node.op == "call_module":
        return type(graph.modules[node.target]) in ELEMENTWISE_MODULES
    extra = [a for a in list(node.args[1:]) + list(node.kwargs.values()) if isinstance(a, fx.Node)]
    if extra:
        return False
    return (node.op == "call_function" and node.target in ELEMENTWISE_FUNCTIONS
            or node.op == "call_method" and node.target in ELEMENTWISE_METHODS)


def _apply(model: nn.Module, chain: list[fx.Node], x: torch.Tensor) -> torch.Tensor:
    """The elementwise operations ``chain`` (:func:`_elementwise` nodes) of ``model`` on ``x``."""
    for node in chain:
        if node.op == "call_module":
            x = model.get_submodule(node.target)(x)
        elif node.op == "call_function":
            x = node.target(x, *node.args[1:], **node.kwargs)
        else:
            x = getattr(x, node.target)(*node.args[1:], **node.kwargs)
    return x


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
        self._known: "weakref.WeakKeyDictionary[nn.Module, dict[Cut, tuple]]" = weakref.WeakKeyDictionary()
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

    def remember(self, variant: nn.Module, cut: Cut, live: tuple[torch.Tensor, ...]) -> None:
        """Keep ``live``, ``variant``'s live tensors at ``cut`` that a caller has just computed (the
        erasure's last trial, for the repair), for as long as ``variant`` exists: :meth:`live` then
        returns them. ``variant`` must not be changed afterwards."""
        with self._lock:
            self._known.setdefault(variant, {})[cut] = live

    @torch.no_grad()
    def live(self, variant: nn.Module, cut: Cut, start: Cut | None = None) -> tuple[torch.Tensor, ...]:
        """``variant``'s live tensors at ``cut``. ``start``: a cut before which ``variant`` equals
        ``model`` (found by comparing their weights when not given)."""
        known = self._known.get(variant, {}).get(cut)
        if known is not None:
            return known
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

    Where that part is an elementwise activation a (ReLU, dropout, ...) and then the classifier,
    logits = a(z) V^T + c, the columns outside U never change: with P = a(z_{~U}) V_{~U}^T kept,
    a copy's logits are P + a(z'_U) V'_U^T + c', for any V', c' whose columns outside U are V's
    (:attr:`classifier_tail`; else the whole tail runs).
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
    _kept: tuple | None = field(default=None, repr=False)       # (columns outside U, P, V_{~U}) of the source

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

    @functools.cached_property
    def classifier_tail(self) -> tuple[list[fx.Node], str] | None:
        """(the elementwise operations from the layer's output z to the classifier, the classifier's
        name) when the logits are classifier(a(z)) and z is the only live tensor; else None."""
        if len(self.live) != 1:
            return None
        graph, node, chain = self.graph, self.graph.call_of(self.layer), []
        classifier = graph.classifier()
        while len(node.users) == 1:
            (node,) = node.users
            if len(node.all_input_nodes) != 1:
                return None
            if node.op == "call_module" and node.target == classifier:
                return (chain, classifier) if graph.output is node else None
            if not _elementwise(graph, node):
                return None
            chain.append(node)
        return None

    def _split_logits(self, source: nn.Module, variant: nn.Module, z_rows: torch.Tensor) -> torch.Tensor | None:
        """Logits of ``variant`` whose layer output has ``z_rows`` in rows U (:attr:`classifier_tail`),
        or None where the split does not hold for it."""
        chain, classifier = self.classifier_tail
        old, new = source.get_submodule(classifier), variant.get_submodule(classifier)
        with GATE.run():                     # the activations are modules: never while a trace patches calls
            if self._kept is None:
                index = self._rows_out[0]
                others = torch.ones(self.outputs.shape[1], dtype=torch.bool, device=index.device)
                others[index] = False
                others = others.nonzero().flatten()
                kept_w = old.weight.index_select(1, others)
                self._kept = (others, _apply(source, chain, self.outputs.index_select(1, others)) @ kept_w.T, kept_w)
            others, kept, kept_w = self._kept
            if new.weight is not old.weight and not torch.equal(new.weight.index_select(1, others), kept_w):
                return None
            logits = torch.addmm(kept, _apply(variant, chain, z_rows), new.weight.index_select(1, self._rows_out[0]).T)
        return (logits if new.bias is None else logits + new.bias).float().cpu()

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
            self._rows_out = self._kept = None
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
        if method == "zero":                      # (1 - s)(z_U - b_U) + b_U + (b'_U - b_U), in one pass
            shift = strength * bias + delta_b
            new_rows = (torch.add(shift, z_rows, alpha=1 - strength) if torch.is_tensor(shift)
                        else z_rows * (1 - strength))
        elif strength > 0:
            key = (method, seed)
            if key not in self.products:
                delta_w = after.weight[index] - before.weight[index]
                self.products[key] = self.inputs @ (delta_w / strength).T
            new_rows = z_rows + strength * self.products[key] + delta_b
        else:
            new_rows = z_rows
        if self.classifier_tail is not None:
            logits = self._split_logits(source, variant, new_rows)
            if logits is not None:
                return logits
        z = self.outputs.clone()
        z.index_copy_(1, index, new_rows)
        return self._logits(variant, z)
