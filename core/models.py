"""Architecture registry and checkpoints (safetensors weights + a JSON model card).

The project's own architectures are flat ``nn.Sequential`` models of named stages (readable layer
tables, the shipped checkpoints' keys); the engine itself works on any traceable ``nn.Module``
through :mod:`core.graph`, and on models imported from ONNX or ``.pt2`` (:mod:`core.formats`).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn


from core.errors import UserError

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"


# ----------------------------------------------------------------------------- architectures
def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1, kernel: int = 3, padding: int = 1,
                  batch_norm: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU())
    return layers


def _named(layers: list[tuple[str, nn.Module]]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def _flat_features(stages: list[tuple[str, nn.Module]], input_shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return int(_named(stages)(torch.zeros(1, *input_shape)).numel())


def build_mlp(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Sequential:
    """Two hidden layers (256, 128) with ReLU."""
    d = math.prod(input_shape)
    return _named([("flatten", nn.Flatten()), ("fc1", nn.Linear(d, 256)), ("relu1", nn.ReLU()),
                   ("fc2", nn.Linear(256, 128)), ("relu2", nn.ReLU()),
                   ("fc3", nn.Linear(128, num_classes))])


def build_cnn(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Sequential:
    """Two 3x3 conv blocks (32, 64 channels, each + ReLU + 2x2 max-pool), a 512-unit hidden layer
    (as wide as the authors' MNIST CNN, so their K=50, H=80 apply unchanged)."""
    c = input_shape[0]
    stages = [("conv1", nn.Conv2d(c, 32, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
              ("conv2", nn.Conv2d(32, 64, 3, padding=1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
              ("flatten", nn.Flatten())]
    d = _flat_features(stages, input_shape)
    return _named(stages + [("fc1", nn.Linear(d, 512)), ("relu3", nn.ReLU()),
                            ("fc2", nn.Linear(512, num_classes))])


def build_allcnn(num_classes: int, input_shape: tuple[int, int, int], width: float = 1 / 3) -> nn.Sequential:
    """All-CNN-C (Springenberg et al. 2015): only convolutions, strided convs instead of pooling,
    a 1x1 conv to the classes and global average pooling. ``width`` scales the paper's 96/192
    channels (1/3 by default so it trains on a CPU); BatchNorm after each conv for stable training.
    The classifier is a Linear layer on the pooled class-map input (equivalent to the 1x1 conv
    followed by averaging, both linear), so "the input of the last linear layer" is defined."""
    a, b = max(8, round(96 * width)), max(16, round(192 * width))
    c = input_shape[0]
    specs = [(c, a, 1), (a, a, 1), (a, a, 2), (a, b, 1), (b, b, 1), (b, b, 2)]
    stages: list[tuple[str, nn.Module]] = []
    for i, (ci, co, s) in enumerate(specs, start=1):
        conv, bn, relu = _conv_bn_relu(ci, co, stride=s)
        stages += [(f"conv{i}", conv), (f"bn{i}", bn), (f"relu{i}", relu)]
    conv, bn, relu = _conv_bn_relu(b, b, kernel=1, padding=0)
    stages += [("conv7", conv), ("bn7", bn), ("relu7", relu),
               ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(b, num_classes))]
    return _named(stages)


_VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def build_vgg(config: str, num_classes: int, input_shape: tuple[int, int, int], width: float = 1.0) -> nn.Sequential:
    """CIFAR-size VGG with BatchNorm: conv blocks from the VGG paper, global average pooling,
    one 512-unit hidden layer (scaled by ``width``) and the classifier."""
    stages: list[tuple[str, nn.Module]] = []
    c_in, conv_i, pool_i = input_shape[0], 0, 0
    for item in _VGG_CONFIGS[config]:
        if item == "M":
            pool_i += 1
            if input_shape[1] // (2 ** pool_i) >= 1:
                stages.append((f"pool{pool_i}", nn.MaxPool2d(2)))
            continue
        conv_i += 1
        c_out = max(8, round(item * width))
        conv, bn, relu = _conv_bn_relu(c_in, c_out)
        stages += [(f"conv{conv_i}", conv), (f"bn{conv_i}", bn), (f"relu{conv_i}", relu)]
        c_in = c_out
    hidden = max(16, round(512 * width))
    stages += [("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
               ("fc1", nn.Linear(c_in, hidden)), ("relu_fc1", nn.ReLU()), ("fc2", nn.Linear(hidden, num_classes))]
    return _named(stages)


def build_resnet(depth: int, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Sequential:
    """torchvision ResNet blocks with a CIFAR stem (3x3 conv, stride 1, no max-pool) for small inputs,
    flattened into a Sequential: stem, layer1..4, pooling, classifier."""
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    block, layers = {18: (BasicBlock, [2, 2, 2, 2]), 50: (Bottleneck, [3, 4, 6, 3])}[depth]
    net = ResNet(block, layers, num_classes=num_classes)
    net.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    return _named([("conv1", net.conv1), ("bn1", net.bn1), ("relu", nn.ReLU()),
                   ("layer1", net.layer1), ("layer2", net.layer2), ("layer3", net.layer3), ("layer4", net.layer4),
                   ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", net.fc)])


def build_torchvision(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """Any torchvision classification model by name (ImageNet-size inputs), randomly initialised."""
    import torchvision

    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except (ValueError, KeyError) as exc:
        raise UserError(f"Unknown architecture '{name}'; choose one of {', '.join(ARCHITECTURES)} "
                        "or a torchvision classification model name.") from exc


ARCHITECTURES: dict[str, Callable[[int, tuple[int, int, int]], nn.Module]] = {
    "mlp": build_mlp,
    "cnn": build_cnn,
    "allcnn": build_allcnn,
    "vgg11": lambda n, s: build_vgg("vgg11", n, s),
    "vgg16": lambda n, s: build_vgg("vgg16", n, s),
    "vgg11_slim": lambda n, s: build_vgg("vgg11", n, s, width=0.25),
    "resnet18": lambda n, s: build_resnet(18, n, s),
    "resnet50": lambda n, s: build_resnet(50, n, s),
}


def build_model(arch: str, num_classes: int, input_shape: tuple[int, int, int], seed: int = 0) -> nn.Module:
    """A freshly initialised model (seeded) in eval mode."""
    torch.manual_seed(seed)
    if arch in ARCHITECTURES:
        model = ARCHITECTURES[arch](num_classes, tuple(input_shape))
    elif arch.startswith("torchvision:"):      # torchvision's own class and forward, even where a name is ours too
        model = build_torchvision(arch.split(":", 1)[1], num_classes, tuple(input_shape))
    else:
        import torchvision

        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise UserError(f"Unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)} "
                            "or a torchvision classification model name.")
        model = build_torchvision(arch, num_classes, tuple(input_shape))
    return model.eval()


def layer_table(model: nn.Module, input_shape: tuple[int, int, int]) -> list[dict]:
    """One row per layer: for a Sequential model its top-level stages, for any other model every
    module its forward pass calls, in order: name, type, output shape, parameter count."""
    from core.graph import graph_of

    if isinstance(model, nn.Sequential):
        from core.compute import model_device

        rows, x = [], torch.zeros(1, *input_shape, device=model_device(model))
        with torch.no_grad():
            for name, module in model.named_children():
                x = module(x)
                rows.append({"layer": name, "type": type(module).__name__, "output_shape": tuple(x.shape[1:]),
                             "parameters": sum(p.numel() for p in module.parameters())})
        return rows
    graph = graph_of(model, input_shape)
    return [{"layer": node.target, "type": type(graph.modules[node.target]).__name__,
             "output_shape": graph.shape(node),
             "parameters": sum(p.numel() for p in graph.modules[node.target].parameters(recurse=False))}
            for node in graph.nodes if node.op == "call_module"]


# ----------------------------------------------------------------------------- model card
@dataclass
class ModelCard:
    """What a checkpoint is: enough to rebuild, normalise inputs and reproduce it."""

    arch: str
    dataset: str
    classes: list[str]
    input_shape: list[int]
    mean: list[float]
    std: list[float]
    seed: int = 0
    command: str = ""
    per_class_accuracy: list[float] = field(default_factory=list)
    test_accuracy: float | None = None
    created: str = ""
    notes: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        missing = {"arch", "dataset", "classes", "input_shape", "mean", "std"} - set(known)
        if missing:
            raise UserError(f"The model card is missing {', '.join(sorted(missing))}.")
        return cls(**known)


def card_path(weights_path: str | Path) -> Path:
    return Path(weights_path).with_suffix(".json")


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


# ----------------------------------------------------------------------------- checkpoints
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


def read_card(path: str | Path) -> ModelCard | None:
    """The model card beside a model file (``<stem>.json``), None when there is none."""
    side = card_path(path)
    if not side.is_file():
        return None
    try:
        return ModelCard.from_dict(json.loads(side.read_text()))
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise UserError(f"The model card '{side.name}' is not a valid model card (JSON object with arch, dataset, "
                        "classes, input_shape, mean and std).") from exc


def model_format(path: str | Path) -> str:
    """``"onnx"``, ``"pt2"`` (whole models, :mod:`core.formats`) or ``"weights"`` (safetensors or a
    state_dict for a named architecture); refuses TorchScript and pickled models."""
    from core.formats import file_kind

    path = Path(path)
    if path.suffix.lower() == ".safetensors" and path.is_file() and path.stat().st_size:
        return "weights"       # a damaged one is reported by the safetensors reader
    return file_kind(path)


def check_fits(model: nn.Module, card: ModelCard, source: str) -> nn.Module:
    """One sentence, before any work, when ``model`` does not take the card's images or does not
    give one score per class."""
    from core.graph import fitting_graph

    declared = getattr(model, "meta", {}).get("input_shape") if isinstance(getattr(model, "meta", None), dict) else None
    if declared is not None and tuple(declared) != tuple(card.input_shape):
        raise UserError(f"'{source}' expects images of {' x '.join(map(str, declared))} but {card.dataset} has "
                        f"{' x '.join(map(str, card.input_shape))}; choose the dataset the model was trained on.")
    fitting_graph(model, tuple(card.input_shape), card.num_classes, f"'{source}'", card.dataset)
    return model


def load_checkpoint(path: str | Path, card: ModelCard | None = None) -> tuple[nn.Module, ModelCard]:
    """Load a model file: a whole model (ONNX, ``.pt2``: :mod:`core.formats`) or weights for a
    named architecture (safetensors, torch state_dict). The card comes from the sidecar ``.json``,
    else the safetensors metadata, else ``card`` (what the user named: a dataset, an architecture).
    The model is checked against the card's input shape and classes before it is returned."""
    path = Path(path)
    kind = model_format(path)
    if kind in ("onnx", "pt2"):
        from core.formats import load_model_file

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
    source's traced graphs (:func:`core.graph.adopt`), since its structure is the same."""
    from core.graph import adopt

    twin = copy.deepcopy(model).eval()
    adopt(twin, model)
    return twin
