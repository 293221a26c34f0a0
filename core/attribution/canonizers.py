"""LRP on any graph: the twin of a model rewritten so that zennit's rules apply everywhere.

zennit attaches rules to modules (Linear, Conv, activations, ``Sum``); operations written as
functions in a ``forward()`` get plain gradients, which are not relevance. The twin (a private copy,
:class:`core.attribution.relevance.RelevanceAnalyzer`) is traced (:mod:`core.models.graph`) and rewritten:

* **residual sums** ``a + b`` become zennit's ``Sum`` over ``stack([a, b], -1)``, which the base
  layer map gives the Norm rule, ``R_a = a / (a + b) R``: relevance is shared in proportion to each
  branch's contribution instead of being copied to both (a plain gradient doubles it);
* **gates** ``x * g`` (squeeze-and-excitation) pass all relevance to the signal ``x``, none to the
  gate ``g``, ``R_x = R`` (the gate only rescales), through :class:`GatePass`;
* **activations written as functions** (hardswish, gelu, sigmoid ..., and arithmetic with a
  constant) get zennit's Pass rule, ``R_in = R_out``, through :class:`FunctionPass`;
* **BatchNorm after a Conv/Linear** is merged into it for the LRP pass by
  :class:`GraphMergeBatchNorm`, zennit's ``MergeBatchNorm`` with the pairs read off the graph
  (zennit's own ``SequentialMergeBatchNorm`` finds them by the order of children, which a nested
  module or a functional forward does not give).

A layer LRP has no rule for (attention, LayerNorm, an unknown module with weights, softmax) stops the
analysis with one sentence naming it, never a silently wrong heatmap.
"""
from __future__ import annotations

import copy
import operator

import torch
import torch.fx as fx
from torch import nn
from zennit.canonizers import MergeBatchNorm
from zennit.layer import Sum

from core.errors import UserError
from core.models.graph import ModelGraph
from core.models.tracing import NORMS, PASS_MODULES, WEIGHTED


# operations that only move or copy values: their gradient routes relevance without changing it
ROUTING_FUNCTIONS = {torch.cat, torch.concat, torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze,
                     torch.transpose, torch.permute, torch.chunk, torch.split, operator.getitem}
ROUTING_METHODS = {"view", "reshape", "flatten", "permute", "transpose", "contiguous", "chunk", "split", "squeeze",
                   "unsqueeze", "size", "dim", "clone"}
SHAPE_FUNCTIONS = {getattr, operator.getitem, len}
CONSTANT_ARITHMETIC = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub,
                       operator.imul, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div}


class _PassFunction(torch.autograd.Function):
    """y = f(x) forward; the incoming relevance passes unchanged backward (zennit's Pass rule)."""

    @staticmethod
    def forward(ctx, x, y):
        return y.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class FunctionPass(nn.Module):
    """``fn(x, ...)`` (an element-wise function written in a forward pass) with zennit's Pass rule:
    the relevance reaching its output passes to its input unchanged."""

    def __init__(self, fn, method: bool = False):
        super().__init__()
        self.fn, self.method = fn, method

    def forward(self, x, *args, **kwargs):
        y = getattr(x, self.fn)(*args, **kwargs) if self.method else self.fn(x, *args, **kwargs)
        return _PassFunction.apply(x, y)


class _GateFunction(torch.autograd.Function):
    """y = x * g forward; relevance R_x = R backward, none to the gate."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.gate_shape, ctx.gate_dtype = g.shape, g.dtype
        return x * g

    @staticmethod
    def backward(ctx, grad):
        return grad, torch.zeros(ctx.gate_shape, dtype=ctx.gate_dtype, device=grad.device)


def gate_pass(x, g):
    return _GateFunction.apply(x, g)


def broadcast_stack(a, b):
    """The operands of a + b stacked on a new last axis, for zennit's Sum (Norm rule)."""
    return torch.stack(torch.broadcast_tensors(a, b), dim=-1)




class GraphMergeBatchNorm(MergeBatchNorm):
    """zennit's BatchNorm merge for (Conv/Linear, BatchNorm) pairs given by module path."""

    def __init__(self, pairs: list[tuple[str, str]] | None = None):
        super().__init__()
        self.pairs = list(pairs or [])

    def apply(self, root_module):
        instances = []
        for linear, norm in self.pairs:
            instance = GraphMergeBatchNorm()
            instance.register([root_module.get_submodule(linear)], root_module.get_submodule(norm))
            instances.append(instance)
        return instances

    def copy(self):
        return GraphMergeBatchNorm(self.pairs)


def batch_norm_pairs(graph: ModelGraph) -> list[tuple[str, str]]:
    """(Conv/Linear, BatchNorm) module pairs where the BatchNorm reads the layer's output alone."""
    pairs = []
    for node in graph.nodes:
        if graph.kind(node) != "norm":
            continue
        source = node.args[0]
        if (isinstance(source, fx.Node) and graph.kind(source) == "weighted" and len(source.users) == 1
                and graph.called_once(source.target) and graph.called_once(node.target)):
            pairs.append((source.target, node.target))
    return pairs


def lrp_twin(model: nn.Module, graph: ModelGraph) -> tuple[fx.GraphModule, list[tuple[str, str]]]:
    """(rewritten private twin of ``model``, its BatchNorm pairs). Raises UserError at the first
    operation LRP has no rule for."""
    twin = fx.GraphModule(copy.deepcopy(model).eval(), copy.deepcopy(graph.module.graph))
    kinds = {node.name: graph.kind(node) for node in graph.nodes}
    shapes = {node.name: graph.shape(node) for node in graph.nodes}
    modules = dict(twin.named_modules())
    sums = passes = 0
    for node in list(twin.graph.nodes):
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        kind = kinds.get(node.name, "other")
        if node.op == "call_module":
            _check_module(node.target, modules[node.target])
            continue
        tensors = [a for a in node.args if isinstance(a, fx.Node) and a.op != "get_attr" and shapes.get(a.name)]
        if kind == "add" and len(tensors) == 2:
            sums += 1
            twin.add_submodule(f"lrp_sum_{sums}", Sum(dim=-1))
            with twin.graph.inserting_before(node):
                stacked = twin.graph.call_function(broadcast_stack, tuple(tensors))
                new = twin.graph.call_module(f"lrp_sum_{sums}", (stacked,))
            node.replace_all_uses_with(new)
            twin.graph.erase_node(node)
        elif kind == "gate" and len(tensors) == 2:
            signal, gate = tensors
            if shapes[gate.name] == shapes[node.name] and shapes[signal.name] != shapes[node.name]:
                signal, gate = gate, signal
            _replace(twin, node, gate_pass, (signal, gate))
        elif kind == "pass" and node.op in ("call_function", "call_method") and _elementwise(node, shapes) \
                and not _is_relu(node):
            passes += 1
            _to_module(twin, node, f"lrp_pass_{passes}", FunctionPass(node.target, method=node.op == "call_method"))
        elif kind in ("pass", "reshape", "shape"):
            continue
        elif _routing(node) or not shapes.get(node.name):
            continue
        elif node.op == "call_function" and node.target in CONSTANT_ARITHMETIC and len(tensors) == 1 \
                and isinstance(node.args[0], fx.Node):
            passes += 1
            _to_module(twin, node, f"lrp_pass_{passes}", FunctionPass(node.target))
        else:
            name = getattr(node.target, "__name__", str(node.target))
            raise UserError(f"LRP has no rule for the operation '{name}' ({node.name}) in this model; relevance would "
                            "be wrong there, so export or rebuild the model with Conv, Linear, BatchNorm, pooling, "
                            "activations and residual sums only.")
    twin.graph.lint()
    twin.recompile()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin.eval(), batch_norm_pairs(graph)


def _check_module(name: str, module: nn.Module) -> None:
    if isinstance(module, WEIGHTED + NORMS + PASS_MODULES + (nn.Flatten,)):
        return
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.MultiheadAttention, nn.Embedding)):
        what = type(module).__name__
    else:
        what = f"{type(module).__name__} (a module LRP has no rule for)"
    raise UserError(f"Layer '{name}' is a {what}; LRP here has rules for Conv, Linear, BatchNorm, pooling and "
                    "activations only, so analyse a model without it (or export it to ONNX with such layers folded).")


def _is_relu(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in (torch.relu, torch.nn.functional.relu)) or \
        (node.op == "call_method" and node.target == "relu")


def _routing(node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in ROUTING_FUNCTIONS or node.target in SHAPE_FUNCTIONS
    return node.op == "call_method" and node.target in ROUTING_METHODS


def _elementwise(node: fx.Node, shapes: dict) -> bool:
    """Same shape in and out (an activation, not a pooling)."""
    source = node.args[0] if node.args else None
    return isinstance(source, fx.Node) and shapes.get(source.name) == shapes.get(node.name)


def _to_module(gm: fx.GraphModule, node: fx.Node, name: str, module: nn.Module) -> None:
    """Replace a function or method call by a call of ``module`` with the same arguments."""
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, node.args, dict(node.kwargs))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


def _replace(gm: fx.GraphModule, node: fx.Node, fn, args: tuple, kwargs: dict | None = None) -> None:
    with gm.graph.inserting_after(node):
        new = gm.graph.call_function(fn, args, kwargs or {})
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
