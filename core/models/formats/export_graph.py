"""``torch.export`` ``.pt2`` programs, read safely and lowered from aten operations to the standard form.

``torch.export.load`` unpickles some parts of an archive (sample inputs, weights marked as pickled,
custom objects); the archive's directory is read first and any file with such parts is refused; the
rest is loaded with torch's weights-only unpickler.
"""
from __future__ import annotations

import contextlib
import io
import json
import operator
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from core.errors import UserError
from core.models.formats.kinds import _check_exists, _member_parts, _zip_members
from core.models.formats.standard import _Builder, _batch_free_shape, _mean_hw, _verify


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
