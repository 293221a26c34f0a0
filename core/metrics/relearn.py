"""Relearning: how fast a forgotten class comes back when the model is fine-tuned, the same way for
every method.

The recipe is fixed: Adam (learning rate ``lr``), cross-entropy, batches of ``batch_size`` drawn in a
seeded order from one fixed *relearn set* (forget-class training images and as many retain-class
training images, the same set for every method of a case). Every parameter of a copy of the model
is trained; the model given is never changed. After each checked step (:func:`check_schedule`: every
step up to 8, then about 20 % apart, so a count is exact to within 20 %) the accuracy on held-out
forget-class images is measured; the result is, per level (50 % and 90 %), the first checked step at
which it reaches that level, or ``None`` when it does not within ``cap`` steps. A model that still
holds the class internally relearns it in a few steps; one that never learned it needs many.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.checkpoints import clone_model
from core.models.compute import model_device

LEVELS = (0.5, 0.9)


@torch.no_grad()
def _class_accuracy(model: nn.Module, images: torch.Tensor, forget_class: int, batch_size: int = 256) -> float:
    device = model_device(model)
    correct = 0
    for start in range(0, len(images), batch_size):
        correct += int((model(images[start:start + batch_size].to(device)).argmax(1) == forget_class).sum())
    return correct / max(len(images), 1)


def check_schedule(cap: int, every: int | None = None) -> list[int]:
    """Steps after which relearning is checked: every ``every`` steps, or (None) every step up to 8
    and then about 20 % apart (1..8, 10, 12, 14, 17, 20, 24, ...), always ending at ``cap``."""
    if every is not None:
        steps = list(range(every, cap + 1, every))
    else:
        steps, s = [], 1
        while s < cap:
            steps.append(s)
            s = s + 1 if s < 8 else max(s + 1, round(s * 1.2))
    return sorted(set(steps + [cap]))


def relearn(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, forget_images: torch.Tensor,
            forget_class: int, cap: int = 200, every: int | None = None, lr: float = 3e-4, batch_size: int = 32,
            seed: int = 0, levels: tuple[float, ...] = LEVELS) -> dict[float, int | None]:
    """{level: steps}: fine-tune a copy of ``model`` on the relearn set (``images``, ``labels``) with
    the fixed recipe (module docstring) until the accuracy on ``forget_images`` (held-out images of
    the forget class) reaches each level; ``None`` for a level not reached within ``cap`` steps."""
    tuned = clone_model(model)
    found: dict[float, int | None] = {level: None for level in levels}

    def record(step: int) -> bool:
        accuracy = _class_accuracy(tuned, forget_images, forget_class)
        for level in levels:
            if found[level] is None and accuracy >= level:
                found[level] = step
        return all(v is not None for v in found.values())

    tuned.eval()
    if record(0):
        return found
    device = model_device(tuned)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for p in tuned.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(tuned.parameters(), lr=lr)
    order = torch.randperm(len(labels), generator=generator)
    position, checks = 0, set(check_schedule(cap, every))
    for step in range(1, cap + 1):
        if position + batch_size > len(order):
            order, position = torch.randperm(len(labels), generator=generator), 0
        idx = order[position:position + batch_size]
        position += batch_size
        tuned.train()
        loss = F.cross_entropy(tuned(images[idx].to(device)), labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step in checks:
            tuned.eval()
            if record(step):
                break
    return found
