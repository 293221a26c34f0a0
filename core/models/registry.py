"""The architectures the project defines, by name: a builder per name, as torchvision's registry.

Every builder takes ``(num_classes, input_shape)`` and returns a model in evaluation mode; the
name ``torchvision:NAME`` builds any torchvision classifier with its own ``forward``.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from core.errors import UserError


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
    from core.models.graph import graph_of

    if isinstance(model, nn.Sequential):
        from core.models.compute import model_device

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
