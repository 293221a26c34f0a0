"""How a model becomes a ``torch.fx`` graph, and what kinds of operation the engine reads in it.

Tracing runs on a private copy of the model; :data:`GATE` keeps it from racing with models that
other threads are running (fx patches ``nn.Module.__call__`` for the whole process while it traces).
"""
from __future__ import annotations

import operator
import threading
from contextlib import contextmanager

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from core.errors import UserError

WEIGHTED = (nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# unit-preserving modules: output unit/channel u is computed from input unit/channel u alone
PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
                nn.Tanh, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
                nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
PASS_FUNCTIONS = {torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardswish, F.hardsigmoid,
                  torch.sigmoid, torch.tanh, F.dropout, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                  F.adaptive_max_pool2d, torch.nn.functional.dropout2d}
PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone"}
RESHAPES_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze}
RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze"}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul}
MEAN_FUNCTIONS = {torch.mean}


class _TracingGate:
    """torch.fx's symbolic tracing patches ``nn.Module.__call__`` for the whole process while it
    runs, so a model that another thread (another dashboard session) runs at that moment would go
    through the tracer and fail. Model runs share this gate; tracing takes it alone."""

    def __init__(self):
        self._condition = threading.Condition()
        self._runs = 0
        self._tracing = False

    @contextmanager
    def run(self):
        """Around running a model: waits while a trace is under way."""
        with self._condition:
            while self._tracing:
                self._condition.wait()
            self._runs += 1
        try:
            yield
        finally:
            with self._condition:
                self._runs -= 1
                self._condition.notify_all()

    @contextmanager
    def trace(self):
        """Around tracing: waits until no model runs, and keeps new runs waiting."""
        with self._condition:
            while self._tracing or self._runs:
                self._condition.wait()
            self._tracing = True
        try:
            yield
        finally:
            with self._condition:
                self._tracing = False
                self._condition.notify_all()


GATE = _TracingGate()


def describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return node.target
    target = getattr(node.target, "__name__", str(node.target))
    return f"{target} ({node.name})"


def trace(model: nn.Module) -> fx.GraphModule:
    """``model`` as an fx GraphModule (itself when it is one)."""
    if isinstance(model, fx.GraphModule):
        return model
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds of error for untraceable code
        raise UserError(f"The model's forward pass could not be traced ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120]}); export it with torch.export.save (.pt2) or to ONNX "
                        "and load that file instead.") from exc
