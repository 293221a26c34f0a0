"""One entry point for a model file: its kind decides the importer; the input shape it declares.
"""
from __future__ import annotations

from pathlib import Path

from torch import fx, nn

from core.errors import UserError
from core.models.formats.export_graph import _exported_input_shape, _read_exported, load_exported
from core.models.formats.kinds import file_kind
from core.models.formats.onnx_graph import _onnx_io, load_onnx


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
