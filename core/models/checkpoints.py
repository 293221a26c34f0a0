"""Checkpoints: weights plus their card, saved and loaded safely, and checksums that identify them.

Weights are stored as safetensors; ONNX and ``torch.export`` programs are read through
:mod:`core.models.formats`. Nothing here unpickles code.

Writing is atomic (:func:`write_atomically`): each file is written to a temporary name in its own
folder, flushed to disk, given the mode the umask asks for, and only then linked into place, so a
kill or a full disk leaves either the whole file or nothing, and an existing file is never replaced.
The weights file carries its card in its metadata, so it is complete even without the sidecar.
"""
from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from core.errors import UserError
from core.models.cards import ASSETS_DIR, ModelCard, card_path, parse_card, read_card
from core.models.registry import build_model




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


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: str | Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Create ``path`` through ``write(tmp)``: a temporary file in the same folder, flushed, given
    mode 0666 minus the umask, then linked into place (renamed when ``overwrite``). On any failure
    the temporary file is removed and nothing appears at ``path``; an OSError (a full disk, a
    folder that cannot be written) becomes one sentence."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise UserError(f"Cannot write '{path}' ({exc.strerror or exc}).") from exc
    tmp = Path(name)
    try:
        try:
            write(tmp)
        except (UserError, OSError):
            raise
        except Exception as exc:      # writers report a full disk in their own error types
            raise UserError(f"Could not write '{path}' ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}); "
                            "nothing was written.") from exc
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)            # atomic, and refuses an existing file
            except FileExistsError:
                raise UserError(f"'{path}' already exists; choose another path (existing files are never "
                                "overwritten).") from None
            except OSError:                   # a file system without hard links
                if path.exists():
                    raise UserError(f"'{path}' already exists; choose another path (existing files are "
                                    "never overwritten).") from None
                os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"Could not write '{path}' ({exc.strerror or exc}); nothing was written.") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_card(card: ModelCard, path: str | Path, overwrite: bool = False) -> Path:
    """The card as strict JSON at ``path``, atomically."""
    text = (card.to_json() + "\n").encode()
    return write_atomically(path, lambda tmp: tmp.write_bytes(text), overwrite)


def save_checkpoint(model: nn.Module, card: ModelCard, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``path`` (safetensors, card also in its metadata) and ``path.json``, each atomically
    (:func:`write_atomically`); the weights go first, and are removed again if the card cannot be
    written. Never overwrites an existing file unless ``overwrite`` (the project's own assets)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"Checkpoint path '{path}' must end in .safetensors.")
    for target in (path, card_path(path)):
        if target.exists() and not overwrite:
            raise UserError(f"'{target}' already exists; choose another path (existing files are never overwritten).")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"model_card": card.to_json()}
    write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata), overwrite)
    try:
        write_card(card, card_path(path), overwrite)
    except BaseException:
        if not overwrite:
            path.unlink(missing_ok=True)
        raise
    return path


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """Tensors and the embedded card's JSON text (if any) from a safetensors or torch state_dict file."""
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
        return tensors, meta.get("model_card")
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
    found = read_card(path) or (parse_card(embedded, f"The model card inside '{path.name}'")
                                if embedded is not None else None)
    card = found or card
    if card is None:
        raise UserError(f"'{path.name}' has no model card; name its architecture and dataset.")
    model = build_model(card.arch, card.num_classes, tuple(card.input_shape), seed=card.seed)
    return load_weights(model, tensors, path.name), card


def shipped_checkpoint(dataset: str, arch: str) -> Path:
    """Path of a checkpoint shipped in ``assets/<dataset>/<arch>.safetensors``."""
    return ASSETS_DIR / dataset / f"{arch}.safetensors"


def clone_model(model: nn.Module) -> nn.Module:
    """An independent deep copy in eval mode (the source is never touched); it shares the
    source's traced graphs (:func:`core.models.graph.adopt`), since its structure is the same."""
    from core.models.graph import adopt

    twin = copy.deepcopy(model).eval()
    adopt(twin, model)
    return twin
