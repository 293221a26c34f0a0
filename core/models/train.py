"""Training loop (AdamW + one-cycle learning rate) with a progress callback.

Used to make the shipped checkpoints, by the dashboard's "train" button, and by the ``retrain``
baseline (the same recipe on the retain classes only).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.data.sets import ImageSet
from core.models.compute import model_device
from core.models.tracing import GATE


Progress = Callable[[int, int, float], None]   # (steps done, total steps, running loss)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    augment: bool = False          # random 4-pixel shifts and horizontal flips (natural images)
    label_smoothing: float = 0.0
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


RECIPES = {
    "digits": TrainConfig(epochs=30, batch_size=64, lr=3e-3),
    "mnist": TrainConfig(epochs=3, batch_size=128, lr=3e-3),
    "fashion_mnist": TrainConfig(epochs=8, batch_size=128, lr=3e-3),
    "cifar10": TrainConfig(epochs=12, batch_size=128, lr=4e-3, augment=True, label_smoothing=0.1),
    "cifar100": TrainConfig(epochs=30, batch_size=128, lr=4e-3, augment=True, label_smoothing=0.1),
}


def recipe_for(dataset: str, **overrides) -> TrainConfig:
    """The default recipe for a dataset (image folders use the CIFAR one), with overrides."""
    base = RECIPES.get(dataset, RECIPES["cifar10"])
    return TrainConfig(**{**base.to_dict(), **{k: v for k, v in overrides.items() if v is not None}})


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shift by up to 4 pixels (zero padding) and random horizontal flip, per batch."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy, dx = (int(v) for v in torch.randint(0, 9, (2,), generator=generator))
    x = padded[:, :, dy:dy + h, dx:dx + w]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def train_model(model: nn.Module, train: ImageSet, config: TrainConfig, progress: Progress | None = None) -> nn.Module:
    """Train ``model`` in place on ``train`` and return it in eval mode. Deterministic for a seed
    on the CPU: the shuffling and augmentation use their own seeded generator."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = model_device(model)
    steps_per_epoch = (len(train) + config.batch_size - 1) // config.batch_size
    total = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(total, 1))
    loss_avg, step = 0.0, 0
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), config.batch_size):
            idx = order[start:start + config.batch_size]
            x, y = train.images[idx], train.labels[idx]
            if config.augment:
                x = augment_batch(x, generator)
            with GATE.run():        # no symbolic trace in another thread while this model runs (core.models.graph)
                loss = F.cross_entropy(model(x.to(device)), y.to(device), label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            loss_avg = 0.9 * loss_avg + 0.1 * loss.item() if step > 1 else loss.item()
            if progress is not None:
                progress(step, total, loss_avg)
    return model.eval()


def tqdm_progress(description: str) -> tuple[Progress, Callable[[], None]]:
    """A progress callback drawing a tqdm bar, and a function closing it."""
    from tqdm import tqdm

    bar = tqdm(desc=description, unit="step", mininterval=0.5)

    def update(step: int, total: int, loss: float) -> None:
        bar.total = total
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        bar.update(step - bar.n)
    return update, bar.close
