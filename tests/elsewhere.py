"""Models made the way a user makes them, independently of ``core.models``: a nested LeNet whose
``forward`` calls functions, and torchvision's own ResNet-18 and MobileNetV3 (their own ``forward``),
with a one-channel stem for digits and MNIST."""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


class NestedLeNet(nn.Module):
    """LeNet-5 with BatchNorm, nested containers and a functional forward (torch.relu, max_pool2d,
    torch.flatten), the way tutorials write it."""

    def __init__(self, channels: int = 1, size: int = 28, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, 6, 5, padding=2), nn.BatchNorm2d(6))
        self.block = nn.ModuleDict({"conv": nn.Conv2d(6, 16, 3, padding=1), "norm": nn.BatchNorm2d(16)})
        side = size // 4
        self.head = nn.ModuleDict({"fc": nn.Linear(16 * side * side, 84)})
        self.out = nn.Linear(84, classes)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.features(x)), 2)
        x = F.max_pool2d(torch.relu(self.block["norm"](self.block["conv"](x))), 2)
        x = torch.flatten(x, 1)
        return self.out(torch.relu(self.head["fc"](x)))


def tv_resnet18(channels: int = 1, classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 with a one-channel 3x3 stem (its forward unchanged)."""
    model = torchvision.models.resnet18(num_classes=classes)
    model.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def tv_mobilenet_v3_small(channels: int = 1, classes: int = 10) -> nn.Module:
    """torchvision's MobileNetV3-Small with a one-channel stem (its forward unchanged)."""
    model = torchvision.models.mobilenet_v3_small(num_classes=classes)
    stem = model.features[0][0]
    model.features[0][0] = nn.Conv2d(channels, stem.out_channels, 3, stride=1, padding=1, bias=False)
    return model


def train_briefly(model: nn.Module, train, epochs: int, lr: float = 3e-3, seed: int = 0) -> nn.Module:
    """A few seeded epochs of the project's training loop (AdamW, one-cycle); eval mode after."""
    from core.models.train import TrainConfig, train_model

    torch.manual_seed(seed)
    return train_model(model, train, TrainConfig(epochs=epochs, batch_size=64, lr=lr, seed=seed))
