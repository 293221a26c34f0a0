"""Membership inference: can an attacker tell the forget class's training images from unseen ones?

Three attacks, each a score per image where a higher score means "member" (logits z, label y):

* **entropy** (SSD's attack): :math:`s = -H(\\mathrm{softmax}(z))`
* **loss**: :math:`s = -\\mathrm{CE}(z, y) = \\log \\mathrm{softmax}(z)_y`
* **confidence**: :math:`s = \\mathrm{softmax}(z)_y`

Each attack is fitted the way SSD fits its entropy attack: a class-balanced logistic regression on
the score, trained on retain-class *training* images (members) against retain-class held-out images
(non-members). Two numbers per attack describe the forget class:

* ``share``: the share of forget-class training images the fitted attack calls members (the level a
  retrained model shows is the one to match);
* ``auc``: :math:`P(s_{\\text{forget train}} > s_{\\text{forget held-out}}) + \\tfrac12 P(=)`, 0.5 when the
  forget class's training images look exactly like unseen images of the class.

Reporting all three, each with its spread over runs, keeps a method from looking good on one
unstable attack.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.data.sets import ImageSet
from core.metrics.evaluate import softmax_entropy
from core.metrics.probes import per_example_loss, rank_auc
from core.models.compute import predict_logits

ATTACKS = ("entropy", "loss", "confidence")


def attack_score(attack: str, logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per-image membership score of ``attack`` (higher = more likely a member)."""
    if attack == "entropy":
        return -softmax_entropy(logits)
    if attack == "loss":
        return -per_example_loss(logits, labels)
    if attack == "confidence":
        return torch.softmax(logits.double(), 1)[torch.arange(len(labels)), labels].numpy()
    raise ValueError(f"unknown attack {attack!r}")


@dataclass(frozen=True)
class AttackResult:
    attack: str
    share: float     # forget-class training images called members
    auc: float       # forget-class training vs held-out images, by the score


def _fit_share(members: np.ndarray, nonmembers: np.ndarray, forget: np.ndarray, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression

    clip = lambda a: np.clip(np.nan_to_num(a, nan=0.0, posinf=1e6, neginf=-1e6), -1e6, 1e6)[:, None]  # noqa: E731
    x = np.concatenate([clip(members), clip(nonmembers)])
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    attack = LogisticRegression(class_weight="balanced", random_state=seed).fit(x, y)
    return float(attack.predict(clip(forget)).mean())


def membership_attacks(model: torch.nn.Module, retain_train: ImageSet, retain_heldout: ImageSet,
                       forget_train: ImageSet, forget_heldout: ImageSet, n: int = 2000,
                       seed: int = 0) -> dict[str, AttackResult]:
    """Every attack of :data:`ATTACKS` on ``model`` (see the module docstring); each set is
    subsampled to at most ``n`` images, seeded, the same images for every attack."""
    sets = [s.sample(n, seed) for s in (retain_train, retain_heldout, forget_train, forget_heldout)]
    logits = [predict_logits(model, s.images) for s in sets]
    out = {}
    for attack in ATTACKS:
        scores = [attack_score(attack, z, s.labels) for z, s in zip(logits, sets)]
        out[attack] = AttackResult(attack, _fit_share(scores[0], scores[1], scores[2], seed),
                                   rank_auc(scores[2], scores[3]))
    return out
