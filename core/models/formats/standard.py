"""The standard form every imported program is lowered to, and its check against the source.

Standard form: a ``torch.fx.GraphModule`` in eval mode with one input (N, C, H, W) and one output
(N, classes), where

* every Conv, Linear and BatchNorm computation is a ``call_module`` node on a real ``nn.Conv2d`` /
  ``nn.Linear`` / ``nn.BatchNorm2d`` ... submodule, named by the dotted module path recovered from
  the file, else by a sanitized unique name; names never contain ``/``, so ``state_dict()`` keys are
  ``<module path>.weight`` and weight edits by parameter name work;
* activations and pools are standard modules; a mean over (H, W) becomes
  ``nn.AdaptiveAvgPool2d(1)``; other ops are ``call_function`` nodes with standard targets
  (``operator.add``, ``torch.flatten``, ...); an op without a lowering stays as it is, for the
  engine to report;
* scalar constants are inlined, other constant tensors are buffers under ``constants.``;
* reshape targets carry -1 for the batch dimension, so a program exported with a static example
  batch accepts any batch size. :func:`_verify` checks that the result equals the source program on
  an example batch and that every sample's output does not depend on the rest of the batch.

``gm.meta["input_shape"]`` holds the (C, H, W) the file declares.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import torch
from torch import fx, nn

from core.errors import UserError
from core.models.formats.kinds import _EXPORT_HINT


_TOL = 1e-4  # agreement required between the standard form and the source program (relative to output scale)


def _sanitize(name: str) -> str:
    """A dotted module path whose parts are identifiers-ish (letters, digits, ``_``)."""
    parts = [re.sub(r"\W+", "_", p).strip("_") for p in str(name).split(".")]
    parts = [p for p in parts if p]
    return ".".join(parts) if parts else "op"


class _Builder:
    """Collects submodules under unique dotted paths and the new graph that calls them."""

    def __init__(self) -> None:
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.leaves: set[str] = set()
        self.constants: dict[str, fx.Node] = {}

    def _free(self, path: str) -> bool:
        parts = path.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts))}
        if path in self.leaves or prefixes & self.leaves:
            return False
        return not any(leaf.startswith(path + ".") for leaf in self.leaves)

    def unique(self, path: str) -> str:
        path = _sanitize(path)
        if path.split(".")[0][0].isdigit():
            path = "m" + path
        candidate, i = path, 0
        while not self._free(candidate):
            i += 1
            candidate = f"{path}_{i}"
        return candidate

    def module(self, path: str, module: nn.Module, args: tuple, kwargs: dict | None = None) -> fx.Node:
        path = self.unique(path)
        parent = self.root
        for part in path.split(".")[:-1]:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(path.split(".")[-1], module.eval())
        self.leaves.add(path)
        return self.graph.call_module(path, args, kwargs or {})

    def function(self, target: Callable, args: tuple, kwargs: dict | None = None) -> fx.Node:
        return self.graph.call_function(target, args, kwargs or {})

    def constant(self, value: torch.Tensor, name: str | None = None) -> fx.Node | float | int:
        """A scalar tensor becomes a Python number; any other tensor a buffer ``constants.<name>``
        (``name`` sanitized, default ``cK``)."""
        if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dim() == 0:
            return value.item()
        if not isinstance(value, torch.Tensor):
            return value
        if not hasattr(self.root, "constants"):
            self.root.add_module("constants", nn.Module())
            self.leaves.add("constants")
        holder = self.root.constants
        name = re.sub(r"\W+", "_", name).strip("_") if name else ""
        if not name or name in self.constants or name[0].isdigit():
            name = f"c{len(self.constants)}"
            while name in self.constants:
                name += "_"
        holder.register_buffer(name, value.detach().clone())
        node = self.graph.get_attr(f"constants.{name}")
        self.constants[name] = node
        return node

    def finish(self, output: Any, input_shape: tuple[int, ...]) -> fx.GraphModule:
        self.graph.output(output)
        gm = fx.GraphModule(self.root, self.graph, class_name="StandardModel")
        gm.graph.eliminate_dead_code()
        gm.delete_all_unused_submodules()
        used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
        if hasattr(gm, "constants"):
            for name in [k for k, _ in gm.constants.named_buffers()]:
                if f"constants.{name}" not in used:
                    delattr(gm.constants, name)
        gm.recompile()
        gm.meta["input_shape"] = tuple(int(d) for d in input_shape)
        return gm.eval()


def _batch_free_shape(out_shape, in_shape) -> list[int] | None:
    """Reshape target with -1 for the batch dim when the reshape keeps dim 0 (the batch)."""
    out_shape = list(out_shape)
    if not out_shape or not in_shape or any(not isinstance(d, int) for d in out_shape[1:]):
        return None
    if isinstance(out_shape[0], int) and isinstance(in_shape[0], int) and out_shape[0] != in_shape[0]:
        return None
    return [-1] + [int(d) for d in out_shape[1:]]


def _mean_hw(builder: _Builder, path: str, x: fx.Node, dims, keepdim: bool, rank: int) -> fx.Node:
    """Mean over (H, W) of a 4-D tensor as ``nn.AdaptiveAvgPool2d(1)`` (+ flatten when dims drop)."""
    dims = sorted(int(d) % rank for d in dims)
    if rank == 4 and dims == [2, 3]:
        node = builder.module(path, nn.AdaptiveAvgPool2d(1), (x,))
        return node if keepdim else builder.function(torch.flatten, (node, 1))
    return builder.function(torch.mean, (x,), {"dim": tuple(dims), "keepdim": keepdim})


def _verify(source: Callable, result: fx.GraphModule, example: torch.Tensor, name: str) -> None:
    """Raise UserError unless ``result`` equals ``source`` on ``example`` and each sample's output
    is independent of the rest of the batch (so the dropped batch size really is free)."""
    with torch.no_grad():
        want = source(example)
        want = want[0] if isinstance(want, (tuple, list)) else want
        try:
            got = result(example)
            single = result(example[:1])
        except Exception as exc:
            raise UserError(f"'{name}' could not be converted into a model this lab can run "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}).") from exc
    if not isinstance(got, torch.Tensor) or got.dim() != 2:
        raise UserError(f"'{name}' must have exactly one output of shape (N, classes); this one gives "
                        f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}.")
    scale = max(1.0, float(want.abs().max()))
    if got.shape != want.shape or not torch.allclose(got, want, atol=_TOL * scale, rtol=_TOL):
        raise UserError(f"'{name}' changed its outputs when converted, so it cannot be used as is; {_EXPORT_HINT}.")
    if not torch.allclose(single, got[:1], atol=_TOL * scale, rtol=_TOL):
        raise UserError(f"'{name}' mixes samples across the batch, so it cannot be run with other batch sizes.")
