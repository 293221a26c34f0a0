"""Whole models the user brings as files (ONNX, ``torch.export`` ``.pt2``), in one standard form.

Standard form: a ``torch.fx.GraphModule`` in eval mode with one input (N, C, H, W) and one output
(N, classes), where

* every Conv1d/2d/3d, Linear and BatchNorm1d/2d/3d computation is a ``call_module`` node on a real
  ``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` ... submodule, named by the dotted module path
  recovered from the file (parameter names such as ``layer4.1.conv2.weight``, ONNX scope names such
  as ``/layer4/layer4.1/conv2/Conv``, the dynamo exporter's ``namespace`` metadata), else by a
  sanitized unique name; names never contain ``/``, so ``state_dict()`` keys are
  ``<module path>.weight`` etc. and zennit hooks / weight edits by parameter name work;
* activations and pools are standard modules (``nn.ReLU``, ``nn.Hardswish``, ``nn.Hardsigmoid``,
  ``nn.MaxPool2d``, ``nn.AdaptiveAvgPool2d``, ...; ONNX ``GlobalAveragePool`` and a mean over
  (H, W) become ``nn.AdaptiveAvgPool2d(1)``, followed by ``torch.flatten(x, 1)`` when the mean
  drops the dims); other ops are ``call_function`` nodes with standard targets (``operator.add``,
  ``operator.mul``, ``torch.flatten``, ``torch.reshape``, ``torch.cat``, ...); an op without a
  lowering stays as it is (its module or aten target), for the engine to report;
* no ``get_attr`` node feeds a parameter of a lowered layer; scalar constants are inlined, other
  constant tensors are buffers under ``constants.`` (only where an op needs a constant tensor,
  e.g. a bare ``nn.Parameter`` multiplied in ``forward``: ``constants.<its name>`` in a .pt2);
* reshape targets carry -1 for the batch dimension, so a program exported with a static example
  batch accepts any batch size; the loader checks that the result equals the source program on
  an example batch and that every sample's output does not depend on the rest of the batch.

``gm.meta["input_shape"]`` holds the (C, H, W) the file declares.

Safety: nothing here unpickles a file's content with a full unpickler (see :func:`load_exported`).
"""
from __future__ import annotations

import contextlib
import io
import json
import operator
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import fx, nn

from core.errors import UserError

_EXPORT_HINT = ("export it with torch.onnx.export(model, (x,), 'model.onnx') or "
                "torch.export.save(torch.export.export(model, (x,)), 'model.pt2') and load that file instead")
_TOL = 1e-4  # agreement required between the standard form and the source program (relative to output scale)


# ----------------------------------------------------------------------------- file kinds
def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"Model file '{path}' does not exist.")
    if path.stat().st_size == 0:
        raise UserError(f"Model file '{path.name}' is empty; export the model again.")


def _zip_members(path: Path) -> list[str] | None:
    """Member names of a zip archive (read from its directory, nothing extracted), None if not a zip."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def _member_parts(members: list[str]) -> set[str]:
    """Member names without the archive's top-level folder (torch writes ``<stem>/...``)."""
    return {m.split("/", 1)[1] if "/" in m else m for m in members}


def file_kind(path: str | Path) -> str:
    """What a model file is, judged from its content (zip directory, first bytes) and suffix:
    ``"onnx"``, ``"pt2"`` (torch.export archive) or ``"weights"`` (safetensors or a torch
    state_dict, for :mod:`core.models`). Refuses (UserError) a missing or empty file, a TorchScript
    archive, a pickled whole model and anything else, without unpickling anything."""
    path = Path(path)
    _check_exists(path)
    members = _zip_members(path)
    with open(path, "rb") as fh:
        head = fh.read(16)
    if members is not None:
        parts = _member_parts(members)
        if "archive_format" in parts and any(p.startswith("models/") for p in parts):
            return "pt2"
        if "constants.pkl" in parts or any(p.startswith("code/") for p in parts):
            raise UserError(f"'{path.name}' is a TorchScript archive, which can run code when loaded; {_EXPORT_HINT}.")
        if "data.pkl" in parts:
            return _pickle_kind(path)
        raise UserError(f"'{path.name}' is a zip archive but neither a torch.export .pt2 file nor a state_dict; "
                        f"{_EXPORT_HINT}.")
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: 8-byte header length, then JSON
        return "weights"
    if head[:1] == b"\x80":  # a legacy (non-zip) torch.save pickle
        return _pickle_kind(path)
    if path.suffix.lower() in (".pt2", ".pt", ".pth", ".bin", ".ckpt"):
        raise UserError(f"'{path.name}' is not a readable torch file (damaged or truncated); {_EXPORT_HINT}.")
    return "onnx"


def _pickle_kind(path: Path) -> str:
    """``"weights"`` for a torch.save'd state_dict; a pickled whole model is refused. Uses only
    torch's restricted weights-only unpickler, which builds tensors and containers and refuses
    every other global, so nothing from the file runs."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if "Unsupported global" in str(exc) or "weights_only" in str(exc).lower():
            raise UserError(f"'{path.name}' is a pickled whole model, which can run code when loaded; "
                            f"{_EXPORT_HINT}.") from exc
        raise UserError(f"'{path.name}' is not a readable torch file (damaged or truncated); "
                        f"{_EXPORT_HINT}.") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
        return "weights"
    raise UserError(f"'{path.name}' holds neither a whole model nor a state_dict of tensors; {_EXPORT_HINT}.")


def refuse_unsafe(path: str | Path) -> None:
    """Raise UserError when ``path`` is missing, empty, a TorchScript archive or a pickled whole
    model (formats that can run code when loaded); return quietly otherwise."""
    file_kind(path)


def is_graph_file(path: str | Path) -> bool:
    """True when ``path`` should go to :func:`load_model_file` (``.onnx``, ``.pt2``, and the
    whole-model formats it refuses with advice: TorchScript, pickled models); False for weight
    files (safetensors, state_dict) that :mod:`core.models` loads with a known architecture."""
    path = Path(path)
    if path.suffix.lower() in (".onnx", ".pt2"):
        return True
    if path.suffix.lower() == ".safetensors":
        return False
    try:
        return file_kind(path) != "weights"
    except UserError:
        return True


def load_model_file(path: str | Path) -> fx.GraphModule:
    """Load a whole-model file into the standard form, dispatching on content: ONNX ->
    :func:`load_onnx`, torch.export archive -> :func:`load_exported`. A weights-only file
    (safetensors, state_dict) raises UserError pointing to loading it as a checkpoint with its
    architecture (use :func:`is_graph_file` to route files first)."""
    path = Path(path)
    kind = file_kind(path)
    if kind == "onnx":
        return load_onnx(path)
    if kind == "pt2":
        return load_exported(path)
    raise UserError(f"'{path.name}' holds only weights; load it as a checkpoint with its architecture "
                    "and dataset, or bring a whole model as .onnx or .pt2.")


# ----------------------------------------------------------------------------- building the standard form
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


# ----------------------------------------------------------------------------- ONNX
_ONNX_ALIASES = {  # (opset version without an onnx2torch converter) -> (version whose converter applies)
    # these versions only widen the accepted types (bfloat16, float8, int4) or add attributes
    # whose default keeps the older meaning, which the original converters already check.
    "Identity": [(19, 16), (21, 16), (23, 16)], "Conv": [(22, 11)], "MaxPool": [(22, 12)],
    "GlobalAveragePool": [(22, 1)], "Flatten": [(21, 13), (23, 13)], "HardSwish": [(22, 14)],
    "HardSigmoid": [(22, 6)], "Dropout": [(22, 13)], "Transpose": [(21, 13), (23, 13)],
    "Unsqueeze": [(21, 13), (23, 13)], "Squeeze": [(23, 21)], "Shape": [(19, 15), (21, 15), (23, 15)],
    "Cast": [(19, 13), (21, 13), (23, 13)], "Constant": [(19, 13), (21, 13), (23, 13)],
}
_REGISTERED = False


def _register_onnx_converters() -> None:
    """Teach onnx2torch the opset versions written by torch 2.x exporters (opset 18-23)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter
    from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value, onnx_mapping_from_node

    def known(op: str, version: int) -> bool:
        return OperationDescription("", op, version) in _CONVERTER_REGISTRY

    for op, pairs in _ONNX_ALIASES.items():
        for new, old in pairs:
            if not known(op, new) and known(op, old):
                add_converter(operation_type=op, version=new)(_CONVERTER_REGISTRY[OperationDescription("", op, old)])

    def reshape(node, graph):
        """Reshape-19+: ``allowzero=1`` only differs from 0 when the target has a 0, which we refuse."""
        if node.attributes.get("allowzero", 0) == 1:
            try:
                target = get_const_value(node.input_values[1], graph)
            except KeyError as exc:
                raise NotImplementedError("Reshape with allowzero=1 and a computed shape") from exc
            if bool((torch.as_tensor(target) == 0).any()):
                raise NotImplementedError("Reshape with allowzero=1 and a zero in the shape")
        return OperationConverterResult(torch_module=OnnxReshape(), onnx_mapping=onnx_mapping_from_node(node))

    def reduce_mean(node, graph):
        """ReduceMean-18: the axes moved from an attribute to a (constant) second input."""
        axes = None
        if len(node.input_values) > 1 and node.input_values[1]:
            try:
                axes = [int(a) for a in torch.as_tensor(get_const_value(node.input_values[1], graph)).flatten()]
            except KeyError as exc:
                raise NotImplementedError("ReduceMean with computed axes") from exc
        if not axes and node.attributes.get("noop_with_empty_axes", 0):
            raise NotImplementedError("ReduceMean with noop_with_empty_axes=1")
        module = OnnxReduceStaticAxes("ReduceMean", axes, node.attributes.get("keepdims", 1))
        return OperationConverterResult(torch_module=module,
                                        onnx_mapping=OnnxMapping(inputs=node.input_values[:1], outputs=node.output_values))

    def average_pool(node, graph):
        """AveragePool-19 added ``dilations``; the older converter is exact when they are all 1."""
        if any(d != 1 for d in node.attributes.get("dilations", [])):
            raise NotImplementedError("AveragePool with dilations")
        return _CONVERTER_REGISTRY[OperationDescription("", "AveragePool", 11)](node, graph)

    for version in (19, 22):
        if not known("AveragePool", version):
            add_converter(operation_type="AveragePool", version=version)(average_pool)
    for version in (19, 21, 23):
        if not known("Reshape", version):
            add_converter(operation_type="Reshape", version=version)(reshape)
    if not known("ReduceMean", 18):
        add_converter(operation_type="ReduceMean", version=18)(reduce_mean)
    _REGISTERED = True


def _onnx_io(model, name: str) -> tuple[int, ...]:
    """(C, H, W) of the single image input; UserError unless one 4-D input and one 2-D output."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError(f"'{name}' has {len(inputs)} inputs and {len(outputs)} outputs; the lab needs exactly "
                        "one image input (N, C, H, W) and one output (N, classes).")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise UserError(f"'{name}' takes a {len(dims)}-D input; the lab needs one image input of shape (N, C, H, W).")
    chw = tuple(d.dim_value if d.HasField("dim_value") else 0 for d in dims[1:])
    if 0 in chw:
        raise UserError(f"'{name}' has no fixed image size (C, H, W); export it with a fixed-size example input.")
    out_dims = outputs[0].type.tensor_type.shape.dim
    if len(out_dims) not in (0, 2):
        raise UserError(f"'{name}' gives a {len(out_dims)}-D output; the lab needs one output of shape (N, classes).")
    return chw


def _drop_identities(model):
    """A copy of ``model`` without Identity nodes (the TorchScript exporter writes them for shared
    initializers; onnx2torch needs layer weights to be initializers themselves)."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    outputs = {o.name for o in model.graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def _onnx_batch(model) -> int:
    d = model.graph.input[0].type.tensor_type.shape.dim[0] if model.graph.input else None
    initializers = {init.name for init in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name not in initializers:
            d = inp.type.tensor_type.shape.dim[0]
    return d.dim_value if d is not None and d.HasField("dim_value") and d.dim_value > 0 else 2


def _scope_path(node) -> str | None:
    """Module path from an ONNX node: its weight's name (``fc.weight``), the dynamo exporter's
    ``namespace`` metadata, or the TorchScript exporter's scope (``/layer4/layer4.1/conv2/Conv``)."""
    if node.op_type in ("Conv", "Gemm", "MatMul", "BatchNormalization") and len(node.input) > 1:
        weight = node.input[1]
        if re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*\.weight", weight):
            return weight[: -len(".weight")]
    meta = {p.key: p.value for p in node.metadata_props}
    if "namespace" in meta:
        segments = [s.split(":")[0].strip() for s in meta["namespace"].split("/")]
        modules = [s for s in segments[1:-1] if s]
        if modules:
            return modules[-1]
    parts = [p for p in node.name.split("/") if p]
    if len(parts) >= 2:
        # each scope is the module's name relative to an enclosing module already on the path
        # ("/layer2/layer2.0/downsample/downsample.0/Conv"): join them on their longest overlap.
        path: list[str] = []
        for part in parts[:-1]:
            pieces = part.split(".")
            k = next((k for k in range(min(len(path), len(pieces) - 1), 0, -1) if path[-k:] == pieces[:k]), 0)
            path += pieces[k:]
        return ".".join(path)
    return None


def _fallback_name(node) -> str:
    name = re.sub(r"^node_", "", node.name or node.op_type.lower())
    return re.sub(r"\W+", "_", name).strip("_").lower() or node.op_type.lower()


def _lower_onnx(raw: fx.GraphModule, model, input_shape: tuple[int, ...], batch: int) -> fx.GraphModule:
    """Rewrite onnx2torch's graph (modules named after ONNX nodes) into the standard form."""
    from onnx2torch.node_converters.binary_math_operations import OnnxBinaryMathOperation
    from onnx2torch.node_converters.clip import OnnxClip
    from onnx2torch.node_converters.concat import OnnxConcat
    from onnx2torch.node_converters.constant import OnnxConstant
    from onnx2torch.node_converters.flatten import OnnxFlatten
    from onnx2torch.node_converters.global_average_pool import (OnnxGlobalAveragePool,
                                                                OnnxGlobalAveragePoolWithKnownInputShape)
    from onnx2torch.node_converters.activations import OnnxHardSigmoid
    from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.matmul import OnnxMatMul
    from torch.fx.passes.shape_prop import ShapeProp

    ShapeProp(raw).propagate(torch.zeros(batch, *input_shape))
    calls = [n for n in raw.graph.nodes if n.op == "call_module"]
    onnx_nodes = list(model.graph.node)
    by_target = dict(zip([n.target for n in calls], onnx_nodes)) if len(calls) == len(onnx_nodes) else {}
    binary = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul, "Div": operator.truediv}
    layers = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    standard = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU,
                nn.SiLU, nn.GELU, nn.Softmax, nn.LogSoftmax, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d,
                nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)
    b = _Builder()
    env: dict[fx.Node, Any] = {}

    def shape_of(n: fx.Node):
        meta = n.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def arg(a):
        return fx.node.map_arg(a, lambda n: env[n])

    def as_graph_value(v):
        return b.constant(v) if isinstance(v, torch.Tensor) else v

    for n in raw.graph.nodes:
        if n.op == "placeholder":
            env[n] = b.graph.placeholder("x")
        elif n.op == "get_attr":
            env[n] = raw.get_buffer(n.target) if "." in n.target else getattr(raw, n.target)
        elif n.op == "output":
            out = arg(n.args[0])
            b_out = as_graph_value(out)
            return b.finish(b_out, input_shape)
        elif n.op == "call_function":
            vals = arg(n.args)
            if all(not isinstance(v, fx.Node) for v in vals):
                env[n] = n.target(*vals, **arg(n.kwargs))
            else:
                env[n] = b.function(n.target, tuple(as_graph_value(v) for v in vals), arg(n.kwargs))
        else:  # call_module
            m = raw.get_submodule(n.target)
            onnx_node = by_target.get(n.target)
            path = (_scope_path(onnx_node) if onnx_node is not None else None) or (
                _fallback_name(onnx_node) if onnx_node is not None else _sanitize(n.target))
            vals = arg(n.args)
            kwargs = arg(n.kwargs)
            x = vals[0] if vals else None
            in_shape = shape_of(n.args[0]) if n.args and isinstance(n.args[0], fx.Node) else None
            consts = [not isinstance(v, fx.Node) for v in vals]
            if vals and all(consts) and not kwargs:  # fold constant subgraphs
                with torch.no_grad():
                    env[n] = m(*vals)
            elif isinstance(m, OnnxConstant):
                with torch.no_grad():
                    env[n] = m()
            elif isinstance(m, layers):
                env[n] = b.module(path, m, (x,))
            elif isinstance(m, (nn.Identity, nn.Dropout)) or type(m).__name__ in ("OnnxCopyIdentity",
                                                                                   "OnnxDropoutDynamic"):
                env[n] = x
            elif isinstance(m, standard):
                env[n] = b.module(path, m, (x,))
            elif isinstance(m, OnnxBinaryMathOperation) and not (m.broadcast == 1 and m.axis is not None) \
                    and onnx_node is not None and onnx_node.op_type in binary:
                env[n] = b.function(binary[onnx_node.op_type], tuple(as_graph_value(v) for v in vals))
            elif isinstance(m, (OnnxGlobalAveragePool, OnnxGlobalAveragePoolWithKnownInputShape)) and in_shape \
                    and len(in_shape) == 4:
                env[n] = _mean_hw(b, path, x, (2, 3), True, 4)
            elif isinstance(m, OnnxReduceStaticAxes) and m.operation_type == "ReduceMean" and m.axes and in_shape:
                env[n] = _mean_hw(b, path, x, m.axes, m.keepdims, len(in_shape))
            elif isinstance(m, OnnxHardSigmoid) and abs(m.alpha - 1 / 6) < 1e-6 and abs(m.beta - 0.5) < 1e-6:
                env[n] = b.module(path, nn.Hardsigmoid(), (x,))
            elif isinstance(m, OnnxFlatten):
                env[n] = b.function(torch.flatten, (b.function(torch.flatten, (x, 0, m.axis - 1)), 1))
            elif isinstance(m, OnnxReshape) and shape_of(n) is not None:
                target = _batch_free_shape(shape_of(n), in_shape)
                if target is None:
                    target = [int(d) for d in shape_of(n)]
                env[n] = b.function(torch.reshape, (x, tuple(target)))
            elif isinstance(m, OnnxConcat):
                env[n] = b.function(torch.cat, ([as_graph_value(v) for v in vals],), {"dim": m.axis})
            elif isinstance(m, OnnxClip):
                env[n] = b.function(torch.clamp, (x, m.min_val, m.max_val))
            elif isinstance(m, OnnxMatMul) and len(vals) == 2 and isinstance(vals[1], torch.Tensor) \
                    and vals[1].dim() == 2:
                lin = nn.Linear(vals[1].shape[0], vals[1].shape[1], bias=False)
                lin.weight.data = vals[1].detach().T.contiguous()
                env[n] = b.module(path, lin, (x,))
            else:  # no lowering: keep onnx2torch's module (the engine reports it)
                env[n] = b.module(path, m, tuple(as_graph_value(v) for v in vals),
                                  {k: as_graph_value(v) for k, v in kwargs.items()})
    raise UserError("The ONNX graph has no output.")


def load_onnx(path: str | Path) -> fx.GraphModule:
    """Load an ONNX file (external ``<name>.onnx.data`` beside it is found by ``onnx.load``),
    check it with ``onnx.checker``, convert it with onnx2torch and lower the result to the standard
    form. Files from both ``torch.onnx.export`` exporters (TorchScript, opset <= 20, and dynamo,
    opset 18+) are read: converters are registered for the newer opset versions (Reshape-19 with
    ``allowzero``, ReduceMean-18 with axes as input, type-widening versions), and if a node still has
    no converter, ``onnx.version_converter`` down to opset 17 is tried. The file is only read."""
    import onnx
    import onnx2torch

    path = Path(path)
    _check_exists(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise UserError(f"'{path.name}' is not a valid ONNX model (damaged, truncated or missing its .data file).") from exc
    if not model.graph.node:
        raise UserError(f"'{path.name}' is not a valid ONNX model (it has no graph).")
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise UserError(f"'{path.name}' fails the ONNX checker ({str(exc).splitlines()[0][:120]}).") from exc
    input_shape = _onnx_io(model, path.name)
    _register_onnx_converters()
    model = _drop_identities(model)
    candidates = [model]
    raw, error = None, None
    for attempt in range(2):
        try:
            raw = onnx2torch.convert(candidates[-1])
            break
        except Exception as exc:  # NotImplementedError for a missing converter, others for odd graphs
            error = exc
            if attempt == 0:
                try:
                    candidates.append(onnx.version_converter.convert_version(model, 17))
                except Exception:
                    break
    if raw is None:
        raise UserError(f"'{path.name}' uses an operation the lab cannot convert "
                        f"({str(error).splitlines()[0][:160]}).")
    raw.eval()
    batch = _onnx_batch(candidates[-1])
    gm = _lower_onnx(raw, candidates[-1], input_shape, batch)
    torch.manual_seed(0)
    _verify(raw, gm, torch.randn(batch, *input_shape), path.name)
    return gm


# ----------------------------------------------------------------------------- torch.export (.pt2)
@contextlib.contextmanager
def _weights_only_loads():
    """Force every ``torch.load`` inside to use the restricted weights-only unpickler."""
    saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_pt2_archive(path: Path) -> None:
    """Refuse a .pt2 archive with any part that ``torch.export.load`` would unpickle with a full
    unpickler or run as native code (see :func:`load_exported`)."""
    refuse = UserError(f"'{path.name}' contains pickled objects or compiled code, which could run when loaded; "
                       "save it with torch.export.save from a model without custom objects.")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            parts = _member_parts(names)
            if any(p.startswith(("data/aotinductor/", "data/executorch/", "data/mtia/")) or p.endswith((".so", ".dll", ".dylib"))
                   for p in parts) or "version" in names:
                raise refuse
            for member in names:
                part = member.split("/", 1)[-1]
                if part.startswith(("data/weights/", "data/constants/")) and part.endswith(".pt"):
                    raise refuse  # legacy pickled weights/constants
                if part.startswith(("data/weights/", "data/constants/")) and part.endswith("_config.json"):
                    config = json.loads(zf.read(member)).get("config", {})
                    for entry in config.values():
                        if entry.get("use_pickle") or not str(entry.get("path_name", "")).startswith(
                                ("weight_", "tensor_")):
                            raise refuse
                if part.startswith("data/sample_inputs/"):
                    torch.load(io.BytesIO(zf.read(member)), map_location="cpu", weights_only=True)
    except UserError:
        raise
    except (zipfile.BadZipFile, json.JSONDecodeError, OSError, KeyError) as exc:
        raise UserError(f"'{path.name}' is not a readable .pt2 archive (damaged or truncated).") from exc
    except Exception as exc:  # the weights-only unpickler refused the sample inputs
        raise refuse from exc


def _read_exported(path: Path):
    _check_exists(path)
    if _zip_members(path) is None:
        raise UserError(f"'{path.name}' is not a .pt2 archive from torch.export.save (damaged or another format).")
    _check_pt2_archive(path)
    try:
        with _weights_only_loads():
            return torch.export.load(str(path))
    except Exception as exc:
        raise UserError(f"'{path.name}' could not be read by torch.export.load "
                        f"({type(exc).__name__}); save it again with this torch version.") from exc


_ATEN = torch.ops.aten
_PASS = {_ATEN.dropout.default, _ATEN.dropout_.default, _ATEN.feature_dropout.default, _ATEN.alias.default,
         _ATEN.clone.default, _ATEN.contiguous.default, _ATEN.detach.default, _ATEN.lift_fresh_copy.default}
_ACTIVATIONS = {
    _ATEN.relu.default: nn.ReLU, _ATEN.relu_.default: nn.ReLU, _ATEN.hardswish.default: nn.Hardswish,
    _ATEN.hardswish_.default: nn.Hardswish, _ATEN.hardsigmoid.default: nn.Hardsigmoid,
    _ATEN.hardsigmoid_.default: nn.Hardsigmoid, _ATEN.sigmoid.default: nn.Sigmoid, _ATEN.sigmoid_.default: nn.Sigmoid,
    _ATEN.silu.default: nn.SiLU, _ATEN.silu_.default: nn.SiLU, _ATEN.tanh.default: nn.Tanh, _ATEN.relu6.default: nn.ReLU6,
}
_BINARY = {_ATEN.add.Tensor: operator.add, _ATEN.add_.Tensor: operator.add, _ATEN.mul.Tensor: operator.mul,
           _ATEN.mul_.Tensor: operator.mul, _ATEN.sub.Tensor: operator.sub, _ATEN.sub_.Tensor: operator.sub,
           _ATEN.div.Tensor: operator.truediv, _ATEN.div_.Tensor: operator.truediv}
_RESHAPES = {_ATEN.view.default, _ATEN.reshape.default, _ATEN._unsafe_view.default}


def _module_path(node: fx.Node) -> str | None:
    """Innermost user module path of an aten node (from ``nn_module_stack``)."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [v[0] for v in stack.values() if v and v[0]]
    if not paths:
        return None
    path = paths[-1]
    path = re.sub(r"L__self___|L\['self'\]\.?", "", path)
    path = re.sub(r"\[['\"]?([^\]'\"]+)['\"]?\]", r".\1", path)
    return path.strip(".") or None


def _conv_module(weight: torch.Tensor, bias, stride, padding, dilation, groups) -> nn.Module:
    cls = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[weight.dim()]
    conv = cls(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), stride=stride, padding=padding,
               dilation=dilation, groups=groups, bias=bias is not None)
    conv.weight = nn.Parameter(weight.detach().clone())
    if bias is not None:
        conv.bias = nn.Parameter(bias.detach().clone())
    return conv


def _bn_module(rank: int, weight, bias, mean, var, momentum, eps, tracked) -> nn.Module:
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[rank]
    bn = cls(mean.shape[0], eps=eps, momentum=momentum, affine=weight is not None)
    if weight is not None:
        bn.weight = nn.Parameter(weight.detach().clone())
        bn.bias = nn.Parameter(bias.detach().clone()) if bias is not None else nn.Parameter(torch.zeros_like(weight))
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    if tracked is not None:
        bn.num_batches_tracked.copy_(tracked)
    return bn


def _lower_exported(src: fx.GraphModule, input_shape: tuple[int, ...]) -> fx.GraphModule:
    """Rewrite ``ExportedProgram.module()`` (aten ops, parameters as get_attr) into the standard form."""
    b = _Builder()
    env: dict[fx.Node, Any] = {}
    tensors: dict[fx.Node, tuple[str, torch.Tensor]] = {}

    def fetch(target: str) -> torch.Tensor:
        obj = src
        for part in target.split("."):
            obj = getattr(obj, part)
        return obj

    def tensor(a):
        return None if a is None else tensors[a][1]

    def owner(a, suffix: str) -> str | None:
        if a is None or a not in tensors:
            return None
        name = tensors[a][0]
        return name[: -len(suffix)] if name.endswith(suffix) else name.rsplit(".", 1)[0]

    def value(a):
        def one(n):
            if n in tensors:  # a parameter or buffer used by an op without a lowering: keep it as a buffer
                env[n] = b.constant(tensors[n][1], tensors[n][0])
            return env[n]
        return fx.node.map_arg(a, one)

    def is_param(a) -> bool:
        return isinstance(a, fx.Node) and a in tensors

    def shape(n) -> tuple | None:
        val = n.meta.get("val") if isinstance(n, fx.Node) else None
        return tuple(val.shape) if isinstance(val, torch.Tensor) else None

    def num(s):
        return int(s) if isinstance(s, int) else s

    output = None
    for n in src.graph.nodes:
        t = n.target
        path = _module_path(n) or n.name
        if n.op == "placeholder":
            env[n] = b.graph.placeholder("x")
        elif n.op == "get_attr":
            tensors[n] = (str(t), fetch(str(t)))
        elif n.op == "call_module":  # only _guards_fn in a module() graph
            if str(t) != "_guards_fn":
                raise UserError(f"The exported program calls a module '{t}' the lab cannot convert.")
        elif n.op == "output":
            out = n.args[0]
            out = out[0] if isinstance(out, (tuple, list)) and len(out) == 1 else out
            output = value(out)
        elif t in (_ATEN.conv2d.default, _ATEN.conv1d.default, _ATEN.conv3d.default) and is_param(n.args[1]):
            a = list(n.args) + [None] * (7 - len(n.args))
            rank = tensor(a[1]).dim() - 2
            stride, padding, dilation = a[3] or [1] * rank, a[4] if a[4] is not None else [0] * rank, a[5] or [1] * rank
            conv = _conv_module(tensor(a[1]), tensor(a[2]), stride, padding, dilation, a[6] or 1)
            env[n] = b.module(owner(a[1], ".weight") or path, conv, (env[a[0]],))
        elif t is _ATEN.convolution.default and is_param(n.args[1]) and not n.args[6]:
            x, w, bias, stride, padding, dilation, _, _, groups = n.args
            env[n] = b.module(owner(w, ".weight") or path,
                              _conv_module(tensor(w), tensor(bias), stride, padding, dilation, groups), (env[x],))
        elif t is _ATEN.linear.default and is_param(n.args[1]):
            w = tensor(n.args[1])
            bias = tensor(n.args[2]) if len(n.args) > 2 else None
            lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
            lin.weight = nn.Parameter(w.detach().clone())
            if bias is not None:
                lin.bias = nn.Parameter(bias.detach().clone())
            env[n] = b.module(owner(n.args[1], ".weight") or path, lin, (env[n.args[0]],))
        elif t in (_ATEN.batch_norm.default, _ATEN._native_batch_norm_legit_no_training.default) \
                and is_param(n.args[3]) and is_param(n.args[4]) and not (t is _ATEN.batch_norm.default and n.args[5]):
            x, w, bias, mean, var = n.args[:5]
            momentum, eps = (n.args[6], n.args[7]) if t is _ATEN.batch_norm.default else (n.args[5], n.args[6])
            name = owner(mean, ".running_mean") or path
            tracked = None
            with contextlib.suppress(AttributeError):
                tracked = fetch(name + ".num_batches_tracked")
            bn = _bn_module(len(shape(x)), tensor(w), tensor(bias), tensor(mean), tensor(var), momentum, eps, tracked)
            node = b.module(name, bn, (env[x],))
            env[n] = node if t is _ATEN.batch_norm.default else (node,)
        elif t is operator.getitem and isinstance(env.get(n.args[0]), tuple):
            env[n] = env[n.args[0]][n.args[1]]
        elif t in _PASS:
            env[n] = env[n.args[0]]
        elif t in _ACTIVATIONS:
            env[n] = b.module(path, _ACTIVATIONS[t](), (env[n.args[0]],))
        elif t in (_ATEN.hardtanh.default, _ATEN.hardtanh_.default) and tuple(n.args[1:3]) == (0.0, 6.0):
            env[n] = b.module(path, nn.ReLU6(), (env[n.args[0]],))
        elif t is _ATEN.max_pool2d.default:
            a = list(n.args) + [None] * (6 - len(n.args))
            pool = nn.MaxPool2d(a[1], stride=a[2] or a[1], padding=a[3] or 0, dilation=a[4] or 1, ceil_mode=bool(a[5]))
            env[n] = b.module(path, pool, (env[a[0]],))
        elif t is _ATEN.avg_pool2d.default:
            a = list(n.args) + [None] * (7 - len(n.args))
            pool = nn.AvgPool2d(a[1], stride=a[2] or a[1], padding=a[3] or 0, ceil_mode=bool(a[4]),
                                count_include_pad=True if a[5] is None else bool(a[5]), divisor_override=a[6])
            env[n] = b.module(path, pool, (env[a[0]],))
        elif t in (_ATEN.adaptive_avg_pool2d.default, _ATEN._adaptive_avg_pool2d.default):
            size = tuple(n.args[1])
            env[n] = b.module(path, nn.AdaptiveAvgPool2d(size[0] if len(set(size)) == 1 else size), (env[n.args[0]],))
        elif t is _ATEN.mean.dim and shape(n.args[0]) is not None:
            keep = bool(n.args[2]) if len(n.args) > 2 else bool(n.kwargs.get("keepdim", False))
            env[n] = _mean_hw(b, path, env[n.args[0]], n.args[1], keep, len(shape(n.args[0])))
        elif t in _BINARY and not n.kwargs.get("alpha", 1) != 1:
            env[n] = b.function(_BINARY[t], tuple(value(a) for a in n.args[:2]))
        elif t is _ATEN.flatten.using_ints:
            env[n] = b.function(torch.flatten, (env[n.args[0]],) + tuple(n.args[1:]))
        elif t in _RESHAPES and shape(n) is not None:
            target = _batch_free_shape([num(s) for s in shape(n)], [num(s) for s in shape(n.args[0])])
            env[n] = b.function(torch.reshape, (env[n.args[0]], tuple(target) if target else tuple(n.args[1])))
        elif t is _ATEN.cat.default:
            env[n] = b.function(torch.cat, ([value(a) for a in n.args[0]],) + tuple(n.args[1:]))
        elif t in (_ATEN.softmax.int, _ATEN._softmax.default):
            env[n] = b.function(torch.softmax, (env[n.args[0]], n.args[1]))
        else:  # no lowering: keep the aten op (the engine reports it)
            env[n] = b.function(t, value(n.args), value(n.kwargs))
    return b.finish(output, input_shape)


def _exported_input_shape(ep, name: str) -> tuple[int, ...]:
    args, kwargs = ep.example_inputs if ep.example_inputs is not None else ((), {})
    flat = [a for a in list(args) + list((kwargs or {}).values())]
    if len(flat) != 1 or not isinstance(flat[0], torch.Tensor) or flat[0].dim() != 4:
        raise UserError(f"'{name}' must take exactly one image input of shape (N, C, H, W).")
    return tuple(int(d) for d in flat[0].shape[1:])


def load_exported(path: str | Path) -> fx.GraphModule:
    """Load a ``.pt2`` file written by ``torch.export.save`` and lower ``ep.module()`` to the
    standard form, keeping the user's module names from the parameter paths.

    What ``torch.export.load`` executes (torch 2.14, ``torch/export/pt2_archive/_package.py`` and
    ``torch/_export/serde/serialize.py``): the graph is JSON (``models/<name>.json``) and ordinary
    weights/constants are raw bytes described by ``*_config.json``; but it unpickles
    (1) ``data/sample_inputs/<name>.pt`` with ``torch.load(weights_only=True)`` and *falls back to
    ``weights_only=False``* when that fails, (2) every weight/constant marked ``use_pickle`` (tensor
    subclasses) with ``torch.load(weights_only=False)``, (3) ``custom_obj_*`` constants with
    ``torch._C._pickle_load_obj`` and ``opaque_obj_*`` ones with ``pickle.loads``, (4) the legacy
    ``data/weights/<name>.pt`` / pre-2.7 formats via the same fallback, and (5) an AOTInductor
    package loads compiled shared libraries. So a crafted .pt2 can run code. Guard, before calling
    it: the zip directory is inspected (no aotinductor/executorch/mtia parts, no shared libraries,
    no legacy files), every config entry must be a raw ``weight_*``/``tensor_*`` payload without
    ``use_pickle``, and the sample inputs must load with the weights-only unpickler; the call itself
    runs with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` so any ``torch.load`` inside stays restricted.
    Executing the loaded graph calls only registered torch operators. The file is only read."""
    path = Path(path)
    ep = _read_exported(path)
    input_shape = _exported_input_shape(ep, path.name)
    try:
        src = ep.module()
    except Exception as exc:
        raise UserError(f"'{path.name}' holds an exported program the lab cannot run ({type(exc).__name__}).") from exc
    gm = _lower_exported(src, input_shape)
    example = ep.example_inputs[0][0]
    torch.manual_seed(0)
    _verify(src, gm, torch.randn_like(example.float()), path.name)
    return gm


# ----------------------------------------------------------------------------- saving
def _atomic_write(path: str | Path, write: Callable[[Path], None], suffix: str) -> Path:
    """Write through ``write(tmp)`` into a temporary file in the same folder, then rename; refuse
    to overwrite; on failure nothing half-written remains."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise UserError(f"'{path.name}' must end in {suffix}.")
    if path.exists():
        raise UserError(f"'{path}' already exists; choose another path (existing files are never overwritten).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        write(tmp)
        extra = tmp.with_name(tmp.name + ".data")
        if extra.exists():
            raise UserError(f"'{path.name}' is too large to save as a single ONNX file.")
        if path.exists():
            raise UserError(f"'{path}' already exists; choose another path (existing files are never overwritten).")
        os.replace(tmp, path)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"Saving '{path.name}' failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}).") from exc
    finally:
        for leftover in tmp_dir.iterdir():
            leftover.unlink()
        tmp_dir.rmdir()
    return path


def _example(model: nn.Module, input_shape) -> torch.Tensor:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3:
        raise UserError(f"The input shape must be (C, H, W), got {shape}.")
    return torch.zeros(2, *shape)


def save_onnx(model: nn.Module, path: str | Path, input_shape) -> Path:
    """Write ``model`` (its current parameters) as one ONNX file with a dynamic batch dimension,
    using the TorchScript-based exporter at opset 17 with BatchNorm kept as its own node
    (``TrainingMode.PRESERVE`` on an eval model) and parameter names as initializer names, which
    :func:`load_onnx` reads back to the same module names and outputs."""
    model = model.eval()
    x = _example(model, input_shape)

    def write(tmp: Path) -> None:
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(tmp), dynamo=False, opset_version=17, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                              training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True)

    return _atomic_write(path, write, ".onnx")


def save_exported(model: nn.Module, path: str | Path, input_shape) -> Path:
    """Write ``model`` (its current parameters) as a ``torch.export`` ``.pt2`` with a dynamic
    batch dimension (``torch.export.Dim``), readable by :func:`load_exported`."""
    model = model.eval()
    x = _example(model, input_shape)

    def write(tmp: Path) -> None:
        from core.graph import GATE

        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        with torch.no_grad(), GATE.trace():          # export traces: no other model runs meanwhile
            ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        torch.export.save(ep, str(tmp))

    return _atomic_write(path, write, ".pt2")


# ----------------------------------------------------------------------------- shapes
def input_shape_of(model_or_path) -> tuple[int, ...]:
    """(C, H, W) a loaded standard-form model or a model file expects: ``gm.meta["input_shape"]``,
    an ONNX file's declared input dims, or a ``.pt2`` file's example input (loaded as guarded in
    :func:`load_exported`)."""
    if isinstance(model_or_path, fx.GraphModule) and "input_shape" in model_or_path.meta:
        return tuple(model_or_path.meta["input_shape"])
    if isinstance(model_or_path, nn.Module):
        raise UserError("This model does not record its input shape; name it (C, H, W).")
    path = Path(model_or_path)
    kind = file_kind(path)
    if kind == "onnx":
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise UserError(f"'{path.name}' is not a valid ONNX model (damaged or truncated).") from exc
        return _onnx_io(model, path.name)
    if kind == "pt2":
        return _exported_input_shape(_read_exported(path), path.name)
    raise UserError(f"'{path.name}' holds only weights, which do not record an input shape.")
