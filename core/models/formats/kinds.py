"""What a model file is, from its bytes, and refusing the kinds that could run code when opened.

TorchScript archives and pickled whole models are never opened; the message says how to export to
ONNX or ``.pt2`` instead.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from core.errors import UserError


_EXPORT_HINT = ("export it with torch.onnx.export(model, (x,), 'model.onnx') or "
                "torch.export.save(torch.export.export(model, (x,)), 'model.pt2') and load that file instead")


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
