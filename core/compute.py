"""Where and how models run: device choice, batched inference, and the activation cache.

The activation cache stores the evaluation set's activations at the input of one stage of a
``nn.Sequential`` model. A perturbation that only edits that stage or later ones is then
re-evaluated by running just the tail: ``logits = tail(cached)`` instead of ``model(images)``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn


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
    outputs = [model(images[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(outputs) if outputs else torch.empty(0)


def stage_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_children()]


def stage_index_of(model: nn.Module, param_or_module_name: str) -> int:
    """Index of the top-level stage that contains a parameter or module name (``fc1.weight`` -> fc1)."""
    top = param_or_module_name.split(".")[0].split(":")[0]
    names = stage_names(model)
    if top not in names:
        raise KeyError(f"'{param_or_module_name}' is not inside a top-level stage of the model")
    return names.index(top)


@torch.no_grad()
def run_stages(model: nn.Sequential, x: torch.Tensor, start: int = 0, stop: int | None = None,
                keep: set[int] = frozenset(), batch_size: int = 1024) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """(output of stages start..stop-1, inputs of the stages in ``keep`` (``stop`` itself included)),
    in batches on the model's device."""
    stages = list(model.children())[start:stop]
    end = start + len(stages)
    device = model_device(model)
    outputs, kept = [], {i: [] for i in keep}
    for first in range(0, len(x), batch_size):
        h = x[first:first + batch_size].to(device)
        for offset, stage in enumerate(stages):
            if start + offset in kept:
                kept[start + offset].append(h)
            h = stage(h)
        if end in kept:
            kept[end].append(h)
        outputs.append(h)
    return torch.cat(outputs), {i: torch.cat(parts) for i, parts in kept.items()}


@dataclass
class ActivationCache:
    """Evaluation-set activations at the input of stage ``start`` of a Sequential model.

    ``tail_logits(variant)`` runs stages ``start:`` of ``variant`` (same architecture, possibly
    perturbed from ``start`` on) on the cached tensor; the result equals ``variant(images)``.
    """

    start: int
    activations: torch.Tensor
    batch_size: int = 2048
    inputs: dict[int, torch.Tensor] = field(default_factory=dict)   # inputs of earlier stages, kept on request

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, images: torch.Tensor, start: int, batch_size: int = 2048,
              keep: tuple[int, ...] = ()) -> "ActivationCache":
        """Run stages ``:start`` once; ``keep``: also keep the inputs of these stages (< start)."""
        if not isinstance(model, nn.Sequential):
            start, keep = 0, ()
        if len(images) == 0:
            return cls(start=start, activations=images[:0], batch_size=batch_size)
        acts, inputs = run_stages(model, images, 0, start, keep={i for i in keep if 0 <= i < start},
                                  batch_size=batch_size)
        return cls(start=start, activations=acts, batch_size=batch_size, inputs=inputs)

    @torch.no_grad()
    def tail_logits(self, variant: nn.Module) -> torch.Tensor:
        tail = variant[self.start:] if isinstance(variant, nn.Sequential) else variant
        acts = self.activations
        return torch.cat([tail(acts[i:i + self.batch_size]).float().cpu()
                          for i in range(0, len(acts), self.batch_size)])

    @torch.no_grad()
    def advanced(self, model: nn.Module, start: int) -> "ActivationCache":
        """The same activations carried on to the input of stage ``start`` (>= this cache's start)."""
        if start == self.start or not isinstance(model, nn.Sequential):
            return self
        return ActivationCache(start, model[self.start:start](self.activations), self.batch_size, self.inputs)


@dataclass
class LinearRowCache:
    """Cache for perturbations whose earliest edit is to rows U of a Linear stage.

    The stage computes z = x W^T + b. A copy that changes only rows U has
    z'_U = z_U + x (W'_U - W_U)^T + (b'_U - b_U). Zeroing with strength s makes W'_U = (1 - s) W_U,
    so x (W'_U - W_U)^T = -s (z_U - b_U) costs nothing; noise adds s N_U, and x N_U^T is computed
    once per draw (method, seed). Only the stages after this one are then re-run.
    """

    start: int
    inputs: torch.Tensor
    outputs: torch.Tensor
    rows: list[int]
    products: dict = field(default_factory=dict)

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Sequential, inputs: torch.Tensor, start: int, rows: list[int]) -> "LinearRowCache":
        return cls(start=start, inputs=inputs, outputs=model[start](inputs), rows=sorted(rows))

    @torch.no_grad()
    def recomputed_logits(self, variant: nn.Sequential, rows: list[int]) -> torch.Tensor:
        """Logits of ``variant`` after recomputing ``rows`` of the cached output from its layer,
        z[:, R] = x W'[R]^T + b'[R]. The cache keeps the new rows: for one working copy whose
        edits accumulate (calibration)."""
        if rows:
            layer = variant[self.start]
            bias = layer.bias[rows] if layer.bias is not None else None
            self.outputs[:, rows] = torch.nn.functional.linear(self.inputs, layer.weight[rows], bias)
        return variant[self.start + 1:](self.outputs).float().cpu()

    @torch.no_grad()
    def tail_logits(self, source: nn.Sequential, variant: nn.Sequential, method: str, strength: float,
                    seed: int) -> torch.Tensor:
        before, after = source[self.start], variant[self.start]
        rows = self.rows
        delta_w = after.weight[rows] - before.weight[rows]
        delta_b = (after.bias[rows] - before.bias[rows]) if before.bias is not None else 0.0
        bias = before.bias[rows] if before.bias is not None else 0.0
        z = self.outputs.clone()
        if method == "zero":
            z[:, rows] = (1 - strength) * (self.outputs[:, rows] - bias) + bias + delta_b
        elif strength > 0:
            key = (method, seed)
            if key not in self.products:
                self.products[key] = self.inputs @ (delta_w / strength).T
            z[:, rows] = self.outputs[:, rows] + strength * self.products[key] + delta_b
        return variant[self.start + 1:](z).float().cpu()
