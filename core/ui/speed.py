"""What makes every dashboard answer quick: work done once per model, reused by every setting.

* :class:`EvalCaches` - the evaluation set's activations under the original model, per cut of its
  graph, each built once (from the nearest earlier cut) and shared by every class, K, H, target and
  strength. The original model's logits, each slider explorer and the erasure summary read them.
* :class:`MemoAnalyzer` - an LRP analyzer that remembers its answers, so that a K or H step (or a
  second visit to a class) re-selects units from stored relevance instead of re-running LRP.
* :class:`MemoActivations` - the pool's images' activations (:class:`core.models.compute.Activations`,
  one per image set) for the calibration and the last stages, kept the same way.
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
from core.models.compute import Activations
from core.models.graph import Cut
from core.unlearning.explorer import PerturbationExplorer, row_edit_cache
from core.unlearning.perturb import PerturbationSpec, edit_cut, plan_edits


class EvalCaches(Activations):
    """The evaluation set's live tensors under ``model`` at any cut (:class:`Activations`), with what
    the dashboard adds: the cut each path layer needs, a warm-up, and remembered probes."""

    def __init__(self, model: nn.Module, eval_set: ImageSet):
        super().__init__(model, eval_set)
        self._probes: dict[tuple, object] = {}

    @property
    def eval_set(self) -> ImageSet:
        return self.images

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
        self.prepare(cuts)

    def original_logits(self) -> torch.Tensor:
        return self.logits()

    def probe(self, key: tuple, compute):
        """A probe result remembered under ``key`` (the original model's, per class)."""
        with self._lock:
            if key not in self._probes:
                self._probes[key] = compute()
            return self._probes[key]


def explorer_from(caches: EvalCaches, path: NeuronPath, base: PerturbationSpec) -> PerturbationExplorer:
    """A slider explorer for ``path`` whose activation cache comes from ``caches`` (built once per model)."""
    explorer = PerturbationExplorer.__new__(PerturbationExplorer)
    explorer.model, explorer.path, explorer.eval_set, explorer.base = caches.model, path, caches.eval_set, base
    explorer.input_shape = caches.eval_set.info.input_shape
    explorer.graph = caches.graph
    edits = plan_edits(caches.model, path.units, path.forget_class, base, explorer.input_shape)
    explorer.cache = caches.at(edit_cut(caches.graph, edits))
    explorer.rows_cache = row_edit_cache(caches.model, explorer.cache, edits, caches)
    return explorer


class MemoActivations:
    """:class:`Activations` of one model, one per image set (by the images' bytes), each remembered,
    so that a K, H or target step and the erase button re-run no part of the model the pool's
    images have already been through. Passed to :func:`core.unlearning.pipeline.unlearn` as
    ``activations``: called as ``memo(model, image_set)``."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._memo: dict[tuple, Activations] = {}
        self._lock = threading.RLock()

    def __call__(self, model: nn.Module, images) -> Activations:
        if model is not self.model:
            return Activations(model, images)
        key = (_digest(images.images), tuple(images.images.shape))
        with self._lock:
            if key not in self._memo:
                self._memo[key] = Activations(model, images)
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
