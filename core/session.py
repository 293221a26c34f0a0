"""What the dashboard needs from the engine, as plain functions (no Streamlit here).

The dashboard's pages wrap these in ``st.cache_resource`` / ``st.cache_data``; everything here is
safe to call from several sessions (threads) at once because nothing mutates its inputs: models
are only read, every perturbation works on a copy, and every LRP run uses its own analyzer (an
analyzer registers hooks on its private twin, so one analyzer must never serve two threads).
"""
from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.compute import pick_device, predict_logits
from core.data import DATASETS, AnalysisPool, ImageSet, dataset_available, dataset_info, load_split, split_heldout
from core.errors import UserError
from core.evaluate import Evaluation, membership_inference, summarize
from core.models import (ARCHITECTURES, ASSETS_DIR, ModelCard, build_model, card_path, layer_table,
                         load_checkpoint, read_card, save_checkpoint, shipped_checkpoints, state_checksum)
from core.paths import NeuronPath
from core.relevance import RelevanceAnalyzer

ROOT = Path(__file__).resolve().parents[1]
MAX_UPLOAD_MB = 200
UPLOAD_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".onnx", ".pt2")
UPLOAD_EXTRAS = (".json", ".data")               # a model card, an ONNX file's external weights
TRAINABLE_ARCHS = ("cnn", "mlp", "allcnn")      # small enough to train on a CPU from the page
DEFAULT_MODEL = "shipped:digits/cnn"             # works offline, no files beyond the repository
POOL_PER_CLASS, SPLIT_SEED = 100, 0
BENCH_COLUMNS = ("profile", "dataset", "arch", "method", "forget_class", "seed", "forget_acc", "retain_acc",
                 "mia_entropy", "mia_loss_gap", "seconds", "peak_mem_mb", "relearn_steps", "probe_recall",
                 "probe_auc", "uses_training_data")


# ----------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ZooEntry:
    """A shipped checkpoint and whether its dataset is present on this machine."""

    key: str
    path: Path
    card: ModelCard
    available: bool
    reason: str

    @property
    def name(self) -> str:
        return f"{self.card.dataset} / {self.card.arch}"


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


def model_zoo(data_dir: str | None = None) -> list[ZooEntry]:
    """Every shipped checkpoint, marked available when its dataset can be loaded from local files."""
    entries = []
    for path, card in shipped_checkpoints():
        ok, reason = dataset_available(card.dataset, data_dir)
        entries.append(ZooEntry(f"shipped:{path.parent.name}/{path.stem}", path, card, ok, reason))
    return entries


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
    from core.models import model_format

    try:
        return model_format(path)
    except UserError as exc:
        raise UserError(str(exc).replace(f"'{path.name}'", f"'{filename}'")) from exc


def train_new_model(dataset: str, arch: str, epochs: int, seed: int = 0, data_dir: str | None = None,
                    progress=None, device: str = "auto") -> LoadedModel:
    """Train a fresh model with the dataset's recipe (``epochs`` overridden); kept in memory only."""
    from core.train import recipe_for, train_model

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
    from core.models import clone_model

    param = next(model.parameters(), None)
    return model if param is None or param.device.type == "cpu" else clone_model(model).cpu()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def analysable_layers(model: nn.Module, card: ModelCard) -> list[str]:
    """Tensors whose units can be analysed and perturbed (:meth:`core.graph.ModelGraph.analysable_layers`)."""
    from core.graph import graph_of

    return graph_of(model, tuple(card.input_shape)).analysable_layers()


def unit_word(model: nn.Module, card: ModelCard, layer: str) -> str:
    """'channel' for a layer with a spatial map (relevance summed over positions), else 'unit'."""
    from core.graph import graph_of

    graph = graph_of(model, tuple(card.input_shape))
    return "channel" if len(graph.shape(graph.tensor(layer))) == 3 else "unit"


# ----------------------------------------------------------------------------- data
def heldout_data(dataset: str, data_dir: str | None = None) -> tuple[AnalysisPool, ImageSet]:
    """(analysis pool, evaluation set) with the project's fixed split (100 per class, seed 0)."""
    return split_heldout(load_split(dataset, "test", data_dir), POOL_PER_CLASS, SPLIT_SEED)


def display_images(images: torch.Tensor, card: ModelCard) -> np.ndarray:
    """Normalised (N,C,H,W) images back to pixels in [0, 1], as (N,H,W,C)."""
    mean = torch.tensor(card.mean).view(1, -1, 1, 1)
    std = torch.tensor(card.std).view(1, -1, 1, 1)
    return (images.cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()


# ----------------------------------------------------------------------------- evaluation
def test_evaluation(model: nn.Module, dataset: str, data_dir: str | None = None) -> Evaluation:
    """Per-class accuracy on the whole test split (what a model card reports)."""
    test = load_split(dataset, "test", data_dir)
    return summarize(predict_logits(model, test.images), test.labels, None)


def evaluation_from_logits(logits: np.ndarray, eval_set: ImageSet, forget_class: int) -> Evaluation:
    """Per-class, forget and retain accuracy from stored logits (a NumPy array, cache-friendly)."""
    return summarize(torch.from_numpy(logits), eval_set.labels, forget_class)


def eval_logits(model: nn.Module, eval_set: ImageSet) -> torch.Tensor:
    return predict_logits(model, eval_set.images)


def membership_scores(original: nn.Module, unlearned: nn.Module, dataset: str, forget_class: int,
                      eval_set: ImageSet, data_dir: str | None = None) -> dict:
    """SSD's entropy attack on the forget class's training images, before and after unlearning.
    Training images are used only to evaluate here, never to unlearn."""
    train = load_split(dataset, "train", data_dir)
    retain_train, forget_train = train.without_class(forget_class), train.of_class(forget_class)
    return {"before": membership_inference(original, retain_train, eval_set, forget_train),
            "after": membership_inference(unlearned, retain_train, eval_set, forget_train)}


def erasure_summary(original: nn.Module, perturbed: nn.Module, pool: AnalysisPool, eval_set: ImageSet,
                    forget_class: int, seed: int = 0) -> dict:
    """The library default's last two steps on top of the page's perturbed model: the class
    direction erased from the layers before the classifier (:func:`core.erase.choose_layers`), then
    second-choice relabelling (:func:`core.relabel.relabel`), both chosen on the pool's validation
    part. For the original, perturbed, erased and relabelled model: forget / retain accuracy, the
    representation probe's recall and the mean softmax entropy of the forget images (nats), on the
    evaluation set."""
    from core.evaluate import softmax_entropy
    from core.probes import forward_with_features, representation_probe
    from core.unlearn import default_config, erase_class_direction, relabel_forget_images

    config = replace(default_config(), seed=seed)
    fit, val = pool.validation_split(config.validation_fraction, config.seed)
    original_logits = predict_logits(original, val.images)
    layers, erased = erase_class_direction(perturbed, original, fit, val, forget_class, config,
                                           original_val_logits=original_logits)
    relabelling, relabelled = relabel_forget_images(erased, original, fit, val, forget_class, config, original_logits)
    rows = {}
    forget = (eval_set.labels == forget_class).numpy()
    models = (("original", original), ("perturbed", perturbed), ("erased", erased), ("relabelled", relabelled))
    for name, model in models:
        fwd = forward_with_features(model, eval_set.images)
        ev = summarize(fwd.logits, eval_set.labels, forget_class)
        probe = representation_probe(fwd.features.numpy(), eval_set.labels.numpy(), forget_class, seed)
        rows[name] = {"forget_acc": ev.forget_acc, "retain_acc": ev.retain_acc, "probe_recall": probe.recall,
                      "forget_entropy": float(softmax_entropy(fwd.logits)[forget].mean())}
    return {"layers": layers, "relabelling": relabelling.to_dict(), **rows}


# ----------------------------------------------------------------------------- relevance
@dataclass
class ClassRelevance:
    """LRP of a class's pool images (from the predicted class), as numpy arrays."""

    positions: list[int]          # indices into the pool's images of the class
    test_indices: list[int]       # the images' indices in the test split
    images: np.ndarray            # (N,H,W,C) pixels in [0, 1]
    heatmaps: np.ndarray          # (N,H,W) input relevance summed over channels
    predicted: list[int]
    layers: dict[str, np.ndarray]  # layer -> (N, units)


def class_relevance(model: nn.Module, card: ModelCard, pool: AnalysisPool, cls: int, rule: str,
                    layers: list[str], max_images: int = 100) -> ClassRelevance:
    """LRP of up to ``max_images`` pool images of ``cls`` with a private analyzer."""
    images = pool.of_class(cls)
    images = images.subset(range(min(max_images, len(images))))
    if len(images) == 0:
        raise UserError(f"The analysis pool has no images of class {cls}.")
    analyzer = RelevanceAnalyzer(model, rule)
    result = analyzer.relevance(images.images, target="pred", layers=list(layers) or None)
    return ClassRelevance(list(range(len(images))), images.indices.tolist(), display_images(images.images, card),
                          result.heatmaps.numpy(), result.targets.tolist(),
                          {k: v.numpy() for k, v in result.layers.items() if k in layers})


def image_relevance(model: nn.Module, image: torch.Tensor, target: int, rule: str = "epsilon") -> np.ndarray:
    """(H,W) input relevance of one normalised image (C,H,W) for class ``target``."""
    analyzer = RelevanceAnalyzer(model, rule)
    return analyzer.relevance(image[None], target=int(target)).heatmaps[0].numpy()


# ----------------------------------------------------------------------------- paths
def jaccard(a, b) -> float:
    """|A n B| / |A u B| (1.0 for two empty sets)."""
    a, b = set(a), set(b)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def path_overlap(paths: dict[int, NeuronPath], forget_class: int) -> tuple[list[str], list[int], np.ndarray]:
    """Jaccard overlap of the forget class's selected units with each class's, per layer:
    (layers, classes, matrix[layer, class])."""
    base = paths[forget_class]
    layers = list(base.selections)
    classes = sorted(paths)
    matrix = np.array([[jaccard(base.selections[layer].units, paths[c].selections[layer].units) for c in classes]
                       for layer in layers])
    return layers, classes, matrix


# ----------------------------------------------------------------------------- export
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
    from core.formats import save_exported, save_onnx

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


# ----------------------------------------------------------------------------- benchmark files
def bench_run_files(roots: tuple[Path, ...] | None = None) -> list[Path]:
    """runs.csv files, user runs (bench-results/) first, then the committed copies (assets/bench/),
    newest first within each. ``$UNLEARN_BENCH_DIRS`` (folders separated by ``os.pathsep``) replaces
    the two default folders."""
    import os

    env = os.environ.get("UNLEARN_BENCH_DIRS")
    if roots is None and env:
        roots = tuple(Path(p) for p in env.split(os.pathsep) if p)
    roots = roots or (ROOT / "bench-results", ASSETS_DIR / "bench")
    found = []
    for root in roots:
        files = [p for p in Path(root).glob("*/runs.csv") if p.is_file()]
        found += sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)
    return found


def load_runs(path: str | Path):
    """The benchmark's runs.csv as a DataFrame; UserError if columns are missing."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is one sentence for the user
        raise UserError(f"'{path}' is not a readable CSV file ({type(exc).__name__}).") from exc
    missing = [c for c in ("method", "forget_acc", "retain_acc", "seconds") if c not in df.columns]
    if missing:
        raise UserError(f"'{path}' lacks the columns {', '.join(missing)}; rerun the benchmark.")
    return df


def device_label() -> str:
    device = pick_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
