"""What is left of a forgotten class after unlearning: relearn time, a linear probe on the
penultimate features, and a loss-based membership attack.

* **relearn steps**: fine-tune a copy of the model on the analysis pool (all classes, batch 32,
  Adam with a fixed learning rate, 3e-4) and count the steps until the forget class is back above
  50 % accuracy on the evaluation set (checked before the first step, after every step up to 8, then
  about 20 % apart: the count is exact to within 20 %). A model
  that still holds the class internally relearns it in a few steps; one that never learned it needs
  many. ``cap`` is reported when the class never comes back within ``cap`` steps.
* **representation probe**: a logistic regression on the classifier's input features (read off
  the traced graph, :mod:`core.models.graph`), fitted on one seeded half of the held-out
  evaluation set and scored on the other, telling the forget class from the rest. Reports the
  recall on the forget class and the ROC AUC.
* **loss MIA gap**: with per-example cross-entropy losses l, the AUC of "lower loss = member"
  separating forget-class *training* images (members of the original training set) from held-out
  forget-class images: AUC = P(l_member < l_heldout) + 0.5 P(tie) (Mann-Whitney). A model that never
  trained on the class cannot tell them apart (AUC 0.5); the score is ``|AUC - 0.5|`` (0 = as
  retrained, 0.5 = fully separable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.data.sets import ImageSet
from core.models.checkpoints import clone_model
from core.models.compute import model_device
from core.models.graph import ModelGraph, graph_of


@dataclass
class Forward:
    """Logits and classifier-input features of a batch of images (both on the CPU)."""

    logits: torch.Tensor
    features: torch.Tensor


@torch.no_grad()
def forward_with_features(model: nn.Module, images: torch.Tensor, batch_size: int = 128,
                          graph: ModelGraph | None = None) -> Forward:
    """One pass giving the logits and the input of the model's classifier (last Linear layer),
    read off the traced graph (no hook on ``model``). ``graph``: the structure of ``model`` (or of
    the model it was copied from); traced when not given."""
    if len(images) == 0:
        return Forward(torch.empty(0), torch.empty(0))
    graph = graph or graph_of(model, tuple(images.shape[1:]))
    source = graph.classifier_input()
    features, logits = graph.run_probe(model, images, [source.name, graph.output.name], batch_size)
    return Forward(logits.float().cpu(), features.flatten(1).float().cpu())


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Cross-entropy per example, in float64; +inf where the true class has probability 0."""
    logp = torch.log_softmax(logits.double(), 1)
    loss = -logp[torch.arange(len(labels)), labels]
    return torch.nan_to_num(loss, nan=float("inf")).numpy()


def rank_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score_pos > score_neg) + 0.5 P(tie), via average ranks (handles ties and infinities)."""
    from scipy.stats import rankdata

    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def loss_mia_gap(member_loss: np.ndarray, heldout_loss: np.ndarray) -> float:
    """|AUC - 0.5| of "lower loss = member" (members: forget-class training images; non-members:
    held-out forget-class images)."""
    auc = rank_auc(-np.asarray(member_loss, dtype=float), -np.asarray(heldout_loss, dtype=float))
    return abs(auc - 0.5)


@dataclass
class ProbeResult:
    recall: float
    auc: float


def representation_probe(features: np.ndarray, labels: np.ndarray, forget_class: int, seed: int = 0,
                         max_fit: int = 3000) -> ProbeResult:
    """Linear probe (standardised features, balanced logistic regression) for "forget class or not":
    fitted on a seeded, stratified half of the rows (at most ``max_fit``), scored on the other half."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    features = np.nan_to_num(np.asarray(features, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    target = (np.asarray(labels) == forget_class).astype(int)
    rng = np.random.default_rng(seed)
    fit_rows, test_rows = [], []
    for value in (0, 1):
        rows = rng.permutation(np.flatnonzero(target == value))
        half = len(rows) // 2
        fit_rows.append(rows[:half])
        test_rows.append(rows[half:])
    fit, test = np.concatenate(fit_rows), np.concatenate(test_rows)
    if len(fit) > max_fit:
        fit = rng.choice(fit, max_fit, replace=False)
        if target[fit].sum() == 0:   # keep the positives in the subsample
            fit = np.concatenate([fit, fit_rows[1]])
    if len(np.unique(target[fit])) < 2 or len(np.unique(target[test])) < 2:
        return ProbeResult(float("nan"), float("nan"))
    scaler = StandardScaler().fit(features[fit])
    clf = LogisticRegression(class_weight="balanced", max_iter=500, random_state=seed)
    clf.fit(scaler.transform(features[fit]), target[fit])
    x_test = scaler.transform(features[test])
    predicted = clf.predict(x_test)
    positives = target[test] == 1
    return ProbeResult(recall=float(predicted[positives].mean()),
                       auc=float(roc_auc_score(target[test], clf.decision_function(x_test))))


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


def relearn_steps(model: nn.Module, pool: ImageSet, forget_images: torch.Tensor, forget_class: int,
                  cap: int = 200, every: int | None = None, lr: float = 3e-4, batch_size: int = 32, seed: int = 0,
                  threshold: float = 0.5) -> tuple[int, bool]:
    """(steps, reached): Adam fine-tuning of a copy of ``model`` on ``pool`` (all classes) until
    the accuracy on ``forget_images`` (held-out images of the forget class) exceeds ``threshold``,
    checked at :func:`check_schedule` steps; ``(cap, False)`` when it never does. A model marked
    ``relearnable = False`` (the output mask, whose -inf sits after every weight) returns
    ``(cap, False)`` without training."""
    if not getattr(model, "relearnable", True):
        return cap, False
    tuned = clone_model(model)
    if _class_accuracy(tuned, forget_images, forget_class) > threshold:
        return 0, True
    device = model_device(tuned)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for p in tuned.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(tuned.parameters(), lr=lr)
    order = torch.randperm(len(pool), generator=generator)
    position, checks = 0, set(check_schedule(cap, every))
    for step in range(1, cap + 1):
        if position + batch_size > len(order):
            order, position = torch.randperm(len(pool), generator=generator), 0
        idx = order[position:position + batch_size]
        position += batch_size
        tuned.train()
        logits = tuned(pool.images[idx].to(device))
        loss = F.cross_entropy(logits, pool.labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step in checks:
            tuned.eval()
            if _class_accuracy(tuned, forget_images, forget_class) > threshold:
                return step, True
    return cap, False
