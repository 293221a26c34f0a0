"""What makes every dashboard answer quick: work done once per model, reused by every setting.

* :class:`EvalCaches` - the evaluation set's activations under the original model, per cut of its
  graph, each built once (from the nearest earlier cut) and shared by every class, K, H, target and
  strength. The original model's logits, each slider explorer and the erasure summary read them.
* :class:`MemoAnalyzer` - an LRP analyzer that remembers its answers, so that a K or H step (or a
  second visit to a class) re-selects units from stored relevance instead of re-running LRP.
* :class:`MemoActivations` - the pool's validation images' activations for the calibration, kept
  the same way.
* :func:`explorer_from` - a :class:`core.unlearning.explorer.PerturbationExplorer` on those caches.
* :func:`step_neighbours` - the path settings one slider step away, which the Unlearn page
  prepares in the background after each answer, so that the next K or H step is a cache hit.

Everything here only reads the model; each object carries a lock, so sessions may share it.
"""
from __future__ import annotations

import hashlib
import threading

import torch
from torch import nn

from core.attribution.paths import NeuronPath
from core.attribution.relevance import RelevanceAnalyzer
from core.data.sets import ImageSet
from core.models.compute import ActivationCache
from core.models.graph import Cut, graph_of
from core.unlearning.explorer import PerturbationExplorer, row_edit_cache
from core.unlearning.perturb import PerturbationSpec, edit_cut, plan_edits


class EvalCaches:
    """The evaluation set's live tensors under ``model`` at any cut, built lazily, kept for reuse."""

    def __init__(self, model: nn.Module, eval_set: ImageSet):
        self.model, self.eval_set = model, eval_set
        self.graph = graph_of(model, tuple(eval_set.info.input_shape))
        self._caches: dict[int, ActivationCache] = {}
        self._lock = threading.RLock()
        self._probes: dict[tuple, object] = {}

    def at(self, cut: Cut) -> ActivationCache:
        """The cache at ``cut``: carried on from the nearest earlier cached cut, else built from the images."""
        with self._lock:
            if cut.position in self._caches and self._caches[cut.position].cut == cut:
                return self._caches[cut.position]
            earlier = [c for p, c in self._caches.items() if p < cut.position and set(c.cut.live) != set()]
            cache = None
            for base in sorted(earlier, key=lambda c: -c.cut.position):
                try:
                    cache = base.advanced(self.model, cut)
                    break
                except Exception:          # noqa: BLE001 - a cut the segment cannot reach: build afresh
                    cache = None
            if cache is None:
                cache = ActivationCache.build(self.model, self.graph, self.eval_set.images, cut)
            self._caches[cut.position] = cache
            return cache

    def classifier_cut(self) -> Cut:
        return self.graph.cut_at_module(self.graph.classifier())

    def layer_cut(self, layer: str) -> Cut:
        """The cut before the earliest weights a path on ``layer`` would change (target "both")."""
        edits = plan_edits(self.model, {layer: [0]}, 0, PerturbationSpec(target="both"),
                           tuple(self.eval_set.info.input_shape))
        return edit_cut(self.graph, edits)

    def warm(self, layers: list[str], erasure_layers: int = 6) -> None:
        """Build the caches a first visit needs: before each layer's weights, at the classifier and
        before the (at most ``erasure_layers``) layers the erasure may change, so that "Erase and
        relabel" re-runs only those. Earliest first: each later cut is carried on from the one before,
        so the model runs once over the evaluation set in all."""
        from core.unlearning.erase import candidate_layers

        cuts = [self.layer_cut(layer) for layer in layers] + [self.classifier_cut()]
        erasable = candidate_layers(self.graph)[:erasure_layers]
        if erasable:
            cuts.append(self.graph.earliest_cut(erasable))
        for cut in sorted({c.position: c for c in cuts}.values(), key=lambda c: c.position):
            self.at(cut)

    def original_logits(self) -> torch.Tensor:
        return self.at(self.classifier_cut()).tail_logits(self.model)

    def probe(self, key: tuple, compute):
        """A probe result remembered under ``key`` (the original model's, per class)."""
        with self._lock:
            if key not in self._probes:
                self._probes[key] = compute()
            return self._probes[key]

    def forward(self, variant: nn.Module) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(logits, classifier-input features, features unchanged) of ``variant`` (a copy of the model,
        possibly edited) on the evaluation set, running only what its edits change."""
        changed = changed_modules(self.model, variant)
        classifier = self.classifier_cut()
        source = self.graph.classifier_input().name
        start = self.graph.earliest_cut(changed)
        if start.position >= classifier.position:
            cache = self.at(classifier)
            features = cache.activations[cache.cut.live.index(source)]
            return cache.tail_logits(variant), features.flatten(1), True
        cache = self.at(start)
        live = self.graph.run_segment(variant, cache.activations, cache.cut, classifier, cache.batch_size)
        carried = ActivationCache(self.graph, classifier, live, cache.batch_size)
        return carried.tail_logits(variant), live[classifier.live.index(source)].flatten(1), False


def changed_modules(original: nn.Module, variant: nn.Module) -> list[str]:
    """Modules of ``variant`` whose parameters or buffers differ from ``original``'s."""
    before = dict(original.state_dict(keep_vars=True))
    out = set()
    for name, tensor in variant.state_dict(keep_vars=True).items():
        old = before.get(name)
        if old is None or (tensor is not old and not torch.equal(tensor.detach(), old.detach())):
            out.add(name.rsplit(".", 1)[0])
    return sorted(out)


def explorer_from(caches: EvalCaches, path: NeuronPath, base: PerturbationSpec) -> PerturbationExplorer:
    """A slider explorer for ``path`` whose activation cache comes from ``caches`` (built once per model)."""
    explorer = PerturbationExplorer.__new__(PerturbationExplorer)
    explorer.model, explorer.path, explorer.eval_set, explorer.base = caches.model, path, caches.eval_set, base
    explorer.input_shape = caches.eval_set.info.input_shape
    explorer.graph = caches.graph
    edits = plan_edits(caches.model, path.units, path.forget_class, base, explorer.input_shape)
    explorer.cache = caches.at(edit_cut(caches.graph, edits))
    explorer.rows_cache = row_edit_cache(caches.model, explorer.cache, edits)
    return explorer


class MemoActivations:
    """:meth:`ActivationCache.build` for one model, remembering each answer (by the images' bytes, the
    cut and the tensors kept), so that a K, H or target step re-runs no part of the model on the pool's
    validation images. Passed to :func:`core.unlearning.pipeline.unlearn` as ``activations``."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._memo: dict[tuple, ActivationCache] = {}
        self._lock = threading.RLock()

    def build(self, model: nn.Module, graph, images: torch.Tensor, cut: Cut, batch_size: int = 2048,
              keep: tuple[str, ...] = ()) -> ActivationCache:
        if model is not self.model:
            return ActivationCache.build(model, graph, images, cut, batch_size, keep)
        key = (_digest(images), tuple(images.shape), cut, tuple(keep), batch_size)
        with self._lock:
            if key not in self._memo:
                self._memo[key] = ActivationCache.build(model, graph, images, cut, batch_size, keep)
            return self._memo[key]


def _digest(images: torch.Tensor) -> str:
    return hashlib.blake2b(images.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).hexdigest()


class MemoAnalyzer:
    """A :class:`RelevanceAnalyzer` that remembers each answer (by the images' bytes, target and
    layers); everything else is the analyzer's. One lock: the analyzer's hooks serve one call at a time."""

    def __init__(self, model: nn.Module, rule: str):
        self._analyzer = RelevanceAnalyzer(model, rule)
        self._memo: dict[tuple, object] = {}
        self._lock = threading.RLock()

    def __getattr__(self, name):
        return getattr(self._analyzer, name)

    def prepare(self, input_shape):
        with self._lock:
            self._analyzer.prepare(input_shape)
        return self

    def relevance(self, images: torch.Tensor, target="pred", layers=None, **kwargs):
        if kwargs.get("labels") is not None or isinstance(target, torch.Tensor):
            with self._lock:
                return self._analyzer.relevance(images, target=target, layers=layers, **kwargs)
        key = (_digest(images), tuple(images.shape), repr(target), tuple(layers or ()), tuple(sorted(kwargs.items())))
        with self._lock:
            if key not in self._memo:
                self._memo[key] = self._analyzer.relevance(images, target=target, layers=layers, **kwargs)
            return self._memo[key]

    def flow(self, *args, **kwargs):
        with self._lock:
            return self._analyzer.flow(*args, **kwargs)


def step_neighbours(values: dict, last: dict | None, ranges: dict[str, tuple[float, float]],
                    step: float = 0.5) -> list[dict]:
    """The settings ``values`` with one slider (a key of ``ranges``) moved one ``step`` either way,
    within its range: the slider that moved since ``last`` first (else in the order of ``ranges``),
    each in the direction it last moved first. Sliders whose key is missing from ``values`` are left out."""
    names = [name for name in ranges if name in values]
    moved = [name for name in names if last is not None and last.get(name) != values[name]]
    out = []
    for name in moved + [n for n in names if n not in moved]:
        low, high = ranges[name]
        value = values[name]
        down = last is not None and last.get(name) is not None and last[name] > value
        for delta in ((-step, step) if down else (step, -step)):
            moved_value = round(value + delta, 6)
            if low <= moved_value <= high:
                out.append({**values, name: moved_value})
    return out
