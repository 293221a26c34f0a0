"""The dashboard's models: the shipped zoo, uploads, training from the page, downloads.

Plain functions (no Streamlit here). The pages wrap them in ``st.cache_resource`` /
``st.cache_data``; everything is safe to call from several sessions (threads) at once because
nothing mutates its inputs: models are only read, and every perturbation works on a copy.
"""
from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from core.data.catalog import dataset_available, dataset_info, load_split
from core.data.info import DATASETS
from core.errors import UserError
from core.models.cards import ModelCard, card_path, read_card
from core.models.checkpoints import load_checkpoint, save_checkpoint, state_checksum
from core.models.compute import pick_device
from core.models.registry import ARCHITECTURES, build_model, layer_table


ROOT = Path(__file__).resolve().parents[2]
MAX_UPLOAD_MB = 200
UPLOAD_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".onnx", ".pt2")
UPLOAD_EXTRAS = (".json", ".data")               # a model card, an ONNX file's external weights
TRAINABLE_ARCHS = ("cnn", "mlp", "allcnn")      # small enough to train on a CPU from the page


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for the pages. Shared between sessions when shipped: treat as read-only."""

    key: str
    name: str
    model: nn.Module
    card: ModelCard
    source: str
    checksum: str
    extra: dict = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return self.card.dataset

    @property
    def origin(self) -> str:
        """Where the model came from, in a few words (for the sidebar)."""
        return {"shipped": "shipped with the app", "trained": "trained in this session (not saved)",
                "uploaded": "uploaded in this session"}.get(self.key.split(":")[0], self.source)

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    def class_label(self, c: int) -> str:
        name = self.card.classes[c]
        return name if name == str(c) else f"{c}: {name}"


def load_shipped(path: str | Path, device: str = "auto") -> LoadedModel:
    """A shipped checkpoint on the chosen device."""
    path = Path(path)
    model, card = load_checkpoint(path)
    model = model.to(pick_device(device)).eval()
    return LoadedModel(f"shipped:{path.parent.name}/{path.stem}", f"{card.dataset} / {card.arch}", model, card,
                       f"shipped ({path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})",
                       state_checksum(model))


def _card_for(arch: str, dataset: str, data_dir: str | None = None, **extra) -> ModelCard:
    info = dataset_info(dataset, data_dir)
    return ModelCard(arch=arch, dataset=dataset, classes=list(info.classes), input_shape=list(info.input_shape),
                     mean=list(info.mean), std=list(info.std), **extra)


def read_uploaded_checkpoint(data: bytes, filename: str, arch: str, dataset: str, data_dir: str | None = None,
                             max_mb: int = MAX_UPLOAD_MB, device: str = "auto",
                             extra_files: dict[str, bytes] | None = None) -> LoadedModel:
    """A model file the user uploads: a whole model (ONNX, ``.pt2``) or weights (safetensors, torch
    state_dict) for the named architecture. ``extra_files``: what was uploaded with it, by name:
    its model card (``*.json``) and an ONNX file's external weights (``*.onnx.data``).

    The model's own card comes first (embedded in a safetensors file, or the uploaded JSON):
    it names the dataset, classes and input shape; ``arch`` and ``dataset`` are used only for a
    file without one. Raises UserError with one sentence for a file that is too large, empty, of
    the wrong kind, unsafe (TorchScript, pickled model), or that does not fit; nothing is kept."""
    size_mb = (len(data) + sum(len(v) for v in (extra_files or {}).values())) / 2 ** 20
    if len(data) == 0:
        raise UserError(f"'{filename}' is empty.")
    if size_mb > max_mb:
        raise UserError(f"'{filename}' is {size_mb:.0f} MB; the upload limit is {max_mb} MB.")
    suffix = Path(filename).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise UserError(f"'{filename}' is not a model file; upload a {', '.join(UPLOAD_SUFFIXES)} file.")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / _safe_name(filename)
        path.write_bytes(data)
        for name, content in (extra_files or {}).items():
            target = card_path(path) if name.lower().endswith(".json") else Path(tmp) / _safe_name(name)
            target.write_bytes(content)
        kind = _upload_kind(path, filename)
        own_card = read_card(path)
        if kind == "weights" and arch not in ARCHITECTURES and own_card is None:
            raise UserError(f"Unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}.")
        fallback = _card_for(arch if kind == "weights" else path.stem, dataset, data_dir, command=f"uploaded {filename}",
                             created=dt.date.today().isoformat(), notes={"format": kind})
        try:
            model, card = load_checkpoint(path, fallback)
        except UserError as exc:
            message = str(exc).replace(f"'{path.name}'", f"'{filename}'")
            if kind == "weights" and "does not fit" in message and own_card is None:
                message = message.rstrip(".") + f"; is it a {arch} trained on {dataset}? Choose the ones it was made with."
            raise UserError(message) from exc
    ok, reason = dataset_available(card.dataset, data_dir)
    if not ok:
        raise UserError(f"'{filename}' was trained on {card.dataset} (its model card says so), whose data is not on "
                        f"this machine: {reason}")
    model = model.to(pick_device(device)).eval()
    checksum = state_checksum(model)
    what = card.arch if kind == "weights" else f"{kind.upper() if kind == 'onnx' else '.pt2'} model"
    return LoadedModel(f"uploaded:{checksum[:12]}", f"{card.dataset} / {what} (uploaded {filename})", model, card,
                       f"uploaded file {filename}", checksum, extra={"format": kind})


def _safe_name(name: str) -> str:
    """A file name without folders or odd characters (uploaded names are not trusted)."""
    import re

    base = Path(name).name
    return re.sub(r"[^A-Za-z0-9._-]", "_", base) or "upload"


def _upload_kind(path: Path, filename: str) -> str:
    from core.models.checkpoints import model_format

    try:
        return model_format(path)
    except UserError as exc:
        raise UserError(str(exc).replace(f"'{path.name}'", f"'{filename}'")) from exc


def train_new_model(dataset: str, arch: str, epochs: int, seed: int = 0, data_dir: str | None = None,
                    progress=None, device: str = "auto") -> LoadedModel:
    """Train a fresh model with the dataset's recipe (``epochs`` overridden); kept in memory only."""
    from core.models.train import recipe_for, train_model

    if epochs < 1:
        raise UserError(f"Train for at least one epoch, got {epochs}.")
    train = load_split(dataset, "train", data_dir)
    info = train.info
    config = recipe_for(dataset, epochs=epochs, seed=seed)
    dev = pick_device(device)
    model = build_model(arch, info.num_classes, info.input_shape, seed=seed).to(dev)
    start = dt.datetime.now()
    train_model(model, train, config, progress)
    model.eval()
    from core.ui.analysis import test_evaluation     # LRP and its imports only when used
    result = test_evaluation(model, dataset, data_dir)
    card = _card_for(arch, dataset, data_dir, seed=seed, per_class_accuracy=[round(a, 4) for a in result.per_class],
                     test_accuracy=round(result.overall, 4), created=start.strftime("%Y-%m-%d"),
                     command=f"trained in the dashboard ({epochs} epochs)",
                     notes={"train_config": config.to_dict(), "device": str(dev),
                            "train_seconds": round((dt.datetime.now() - start).total_seconds(), 1)})
    checksum = state_checksum(model)
    return LoadedModel(f"trained:{checksum[:12]}", f"{dataset} / {arch} (trained, {epochs} ep.)", model, card,
                       "trained in this session (not saved)", checksum)


def default_epochs(dataset: str) -> int:
    """Few epochs, so that training from the page takes seconds to a minute on a CPU."""
    return 10 if dataset == "digits" else 1


def trainable_datasets(data_dir: str | None = None) -> list[str]:
    """Builtin datasets present on this machine (digits always)."""
    return [name for name in DATASETS if dataset_available(name, data_dir)[0]]


def layer_rows(model: nn.Module, card: ModelCard) -> list[dict]:
    """The layer table with readable shapes."""
    return [{"layer": r["layer"], "type": r["type"], "output shape": " x ".join(map(str, r["output_shape"])),
             "parameters": r["parameters"]} for r in layer_table(_on_cpu(model), tuple(card.input_shape))]


def _on_cpu(model: nn.Module) -> nn.Module:
    """``model`` itself when on the CPU, else a CPU copy (``.cpu()`` would move a shared model in place)."""
    from core.models.checkpoints import clone_model

    param = next(model.parameters(), None)
    return model if param is None or param.device.type == "cpu" else clone_model(model).cpu()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def analysable_layers(model: nn.Module, card: ModelCard) -> list[str]:
    """Tensors whose units can be analysed and perturbed (:meth:`core.models.graph.ModelGraph.analysable_layers`)."""
    from core.models.graph import graph_of

    return graph_of(model, tuple(card.input_shape)).analysable_layers()


def model_graph(model: nn.Module, card: ModelCard):
    """The model's traced graph (:class:`core.models.graph.ModelGraph`) for its card's input."""
    from core.models.graph import graph_of

    return graph_of(model, tuple(card.input_shape))


def unit_word(model: nn.Module, card: ModelCard, layer: str) -> str:
    """'channel' for a layer with a spatial map (relevance summed over positions), else 'unit'."""
    from core.models.graph import graph_of

    graph = graph_of(model, tuple(card.input_shape))
    return "channel" if len(graph.shape(graph.tensor(layer))) == 3 else "unit"


def model_file_format(lm: LoadedModel) -> str:
    """The format a model came in and its unlearned copy is written in: ``onnx``, ``pt2`` or
    ``safetensors`` (weights for a named architecture)."""
    fmt = lm.extra.get("format") or lm.card.notes.get("format", "weights")
    return fmt if fmt in ("onnx", "pt2") else "safetensors"


def export_unlearned(model: nn.Module, card: ModelCard, forget_class: int, config: dict, report: dict,
                     source: str, fmt: str = "safetensors") -> tuple[bytes, str, str]:
    """(model file bytes, model card JSON, report JSON) of an unlearned model in ``fmt``
    (``safetensors`` with the card in its metadata, ``onnx`` or ``pt2``), written into a temporary
    folder (no project file is touched)."""
    from core.models.formats.writing import save_exported, save_onnx

    notes = {"unlearned_from": source, "forget_class": forget_class, "parameters": config, "format": fmt,
             "source_format": card.notes.get("format", "weights"),
             "metrics": {k: v for k, v in report.items() if k.startswith(("forget_acc", "retain_acc"))},
             "accuracy_on": "evaluation set (held-out, disjoint from the analysis pool)"}
    new_card = ModelCard(**{**card.__dict__, "per_class_accuracy": [round(a, 4) for a in report.get("per_class_after", [])],
                            "test_accuracy": None, "command": "unlearned in the dashboard",
                            "created": dt.date.today().isoformat(), "notes": notes})
    with tempfile.TemporaryDirectory() as tmp:
        if fmt == "safetensors":
            path = save_checkpoint(model, new_card, Path(tmp) / "unlearned.safetensors")
        else:
            writer = save_onnx if fmt == "onnx" else save_exported
            path = writer(_on_cpu(model), Path(tmp) / f"unlearned.{fmt}", tuple(card.input_shape))
        weights = path.read_bytes()
    return weights, new_card.to_json() + "\n", json.dumps(report, indent=2)


def device_label() -> str:
    device = pick_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
