"""Where and how models run: device choice, batched inference, and the activation cache.

The activation cache stores a set of images' live tensors at a cut of the model
(:mod:`core.models.graph`). A perturbation that only edits layers at or after the cut is then
re-evaluated by running just the tail: ``logits = tail(cached)`` instead of ``model(images)``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn

from core.models.graph import Cut, ModelGraph
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
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits for ``images`` in batches, on the model's device, returned on the CPU."""
    device = model_device(model)
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
    batch_size: int = 2048
    kept: dict[str, torch.Tensor] = field(default_factory=dict)   # other tensors before the cut, on request

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, graph: ModelGraph, images: torch.Tensor, cut: Cut,
              batch_size: int = 2048, keep: tuple[str, ...] = ()) -> "ActivationCache":
        """Run the part of ``model`` before ``cut`` once on ``images``; ``keep``: also keep these
        tensors (node names before the cut) from the same pass."""
        extra = [n for n in dict.fromkeys(keep) if n not in cut.live and graph.position[n] < cut.position]
        values = graph.run_probe(model, images, list(cut.live) + extra, batch_size)
        live = values[:len(cut.live)]
        return cls(graph, cut, live, batch_size, dict(zip(extra, values[len(cut.live):])))

    def __len__(self) -> int:
        return len(self.activations[0]) if self.activations else 0

    @torch.no_grad()
    def tail_logits(self, variant: nn.Module) -> torch.Tensor:
        return self.graph.run_tail(variant, self.activations, self.cut, self.batch_size)

    @torch.no_grad()
    def advanced(self, model: nn.Module, cut: Cut) -> "ActivationCache":
        """The same images carried on to a later ``cut`` through ``model``."""
        if cut == self.cut:
            return self
        return ActivationCache(self.graph, cut, self.graph.run_segment(model, self.activations, self.cut, cut,
                                                                       self.batch_size), self.batch_size, self.kept)


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
    def build(cls, model: nn.Module, cache: ActivationCache, layer: str, rows: list[int]) -> "LinearRowCache | None":
        """From a cache at the cut just before ``layer``; None when its input is not one flat tensor."""
        graph = cache.graph
        call = graph.call_of(layer)
        source = call.args[0]
        if source.name not in cache.cut.live or len(graph.shape(source)) != 1:
            return None
        after = graph.cut_after(call)
        live = graph.run_segment(model, cache.activations, cache.cut, after, cache.batch_size)
        return cls(graph, layer, after, cache.activations[cache.cut.live.index(source.name)], live,
                   after.live.index(call.name), sorted(rows))

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
