"""Checkpoints: weights plus their card, saved and loaded safely, and checksums that identify them.

Weights are stored as safetensors; ONNX and ``torch.export`` programs are read through
:mod:`core.models.formats`. Nothing here unpickles code.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from core.errors import UserError
from core.models.cards import ModelCard, card_path, read_card
from core.models.registry import build_model


ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"


def file_checksum(path: str | Path) -> str:
    """sha256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def state_checksum(model: nn.Module) -> str:
    """sha256 over the model's parameters and buffers (order and values)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(model: nn.Module, card: ModelCard, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``path`` (safetensors, card also in its metadata) and ``path.json``. Never overwrites
    an existing file unless ``overwrite`` (used only for the project's own assets)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"Checkpoint path '{path}' must end in .safetensors.")
    for target in (path, card_path(path)):
        if target.exists() and not overwrite:
            raise UserError(f"'{target}' already exists; choose another path (existing files are never overwritten).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"model_card": card.to_json()})
    card_path(path).write_text(card.to_json() + "\n")
    return path


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Tensors and the embedded card (if any) from a safetensors or torch state_dict file."""
    if not path.is_file():
        raise UserError(f"Checkpoint '{path}' does not exist.")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if path.suffix == ".safetensors" or head[8:9] == b"{":  # safetensors: 8-byte length, then JSON
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        except Exception as exc:  # safetensors raises several error types for a broken file
            raise UserError(f"'{path.name}' is not a readable safetensors file ({type(exc).__name__}).") from exc
        card = json.loads(meta["model_card"]) if "model_card" in meta else None
        return tensors, card
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"'{path.name}' is neither a safetensors file nor a torch state_dict "
                        f"readable with weights_only=True ({type(exc).__name__}).") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"'{path.name}' does not hold a state_dict of tensors.")
    return state, None


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Copy ``tensors`` into ``model`` after checking names, shapes and finiteness."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise UserError(f"'{source}' does not fit this architecture ({what}, "
                        f"{len(missing)} missing and {len(unexpected)} unexpected tensors).")
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise UserError(f"'{source}' does not fit this architecture: {name} has shape "
                            f"{tuple(value.shape)}, expected {tuple(expected[name].shape)}.")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise UserError(f"'{source}' has non-finite values (NaN or inf) in {name}.")
    model.load_state_dict(tensors)
    return model.eval()


def model_format(path: str | Path) -> str:
    """``"onnx"``, ``"pt2"`` (whole models, :mod:`core.models.formats`) or ``"weights"`` (safetensors or a
    state_dict for a named architecture); refuses TorchScript and pickled models."""
    from core.models.formats.kinds import file_kind

    path = Path(path)
    if path.suffix.lower() == ".safetensors" and path.is_file() and path.stat().st_size:
        return "weights"       # a damaged one is reported by the safetensors reader
    return file_kind(path)


def check_fits(model: nn.Module, card: ModelCard, source: str) -> nn.Module:
    """One sentence, before any work, when ``model`` does not take the card's images or does not
    give one score per class."""
    from core.models.graph import fitting_graph

    declared = getattr(model, "meta", {}).get("input_shape") if isinstance(getattr(model, "meta", None), dict) else None
    if declared is not None and tuple(declared) != tuple(card.input_shape):
        raise UserError(f"'{source}' expects images of {' x '.join(map(str, declared))} but {card.dataset} has "
                        f"{' x '.join(map(str, card.input_shape))}; choose the dataset the model was trained on.")
    fitting_graph(model, tuple(card.input_shape), card.num_classes, f"'{source}'", card.dataset)
    return model


def load_checkpoint(path: str | Path, card: ModelCard | None = None) -> tuple[nn.Module, ModelCard]:
    """Load a model file: a whole model (ONNX, ``.pt2``: :mod:`core.models.formats`) or weights for a
    named architecture (safetensors, torch state_dict). The card comes from the sidecar ``.json``,
    else the safetensors metadata, else ``card`` (what the user named: a dataset, an architecture).
    The model is checked against the card's input shape and classes before it is returned."""
    path = Path(path)
    kind = model_format(path)
    if kind in ("onnx", "pt2"):
        from core.models.formats.loading import load_model_file

        card = read_card(path) or card
        if card is None:
            raise UserError(f"'{path.name}' has no model card; name the dataset it was trained on.")
        return check_fits(load_model_file(path), card, path.name), card
    tensors, embedded = _read_tensors(path)
    found = read_card(path) or (ModelCard.from_dict(embedded) if embedded is not None else None)
    card = found or card
    if card is None:
        raise UserError(f"'{path.name}' has no model card; name its architecture and dataset.")
    model = build_model(card.arch, card.num_classes, tuple(card.input_shape), seed=card.seed)
    return load_weights(model, tensors, path.name), card


def shipped_checkpoint(dataset: str, arch: str) -> Path:
    """Path of a checkpoint shipped in ``assets/<dataset>/<arch>.safetensors``."""
    return ASSETS_DIR / dataset / f"{arch}.safetensors"


MODEL_SUFFIXES = (".safetensors", ".onnx", ".pt2")


def shipped_checkpoints() -> list[tuple[Path, ModelCard]]:
    """Every shipped model (safetensors, ONNX, .pt2) with its card, sorted by path."""
    found = []
    for path in sorted(p for p in ASSETS_DIR.glob("*/*") if p.suffix in MODEL_SUFFIXES):
        if card_path(path).is_file():
            found.append((path, ModelCard.from_dict(json.loads(card_path(path).read_text()))))
    return found


def clone_model(model: nn.Module) -> nn.Module:
    """An independent deep copy in eval mode (the source is never touched); it shares the
    source's traced graphs (:func:`core.models.graph.adopt`), since its structure is the same."""
    from core.models.graph import adopt

    twin = copy.deepcopy(model).eval()
    adopt(twin, model)
    return twin
