"""ONNX files (from either of torch's exporters, tf2onnx, ...) read by onnx2torch and lowered to the
standard form; converters onnx2torch lacks for recent opsets are registered here.
"""
from __future__ import annotations

import operator
import re
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from core.errors import UserError
from core.models.formats.kinds import _check_exists
from core.models.formats.standard import _Builder, _batch_free_shape, _mean_hw, _sanitize, _verify


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
