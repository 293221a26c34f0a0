"""Models written back as ONNX or ``.pt2``, atomically (a temporary file, then a rename) and never
over an existing file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from core.errors import UserError


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
        from core.models.tracing import GATE

        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        with torch.no_grad(), GATE.trace():          # export traces: no other model runs meanwhile
            ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        torch.export.save(ep, str(tmp))

    return _atomic_write(path, write, ".pt2")
