"""What is left of a forgotten class inside the model: a linear probe on the penultimate features,
and a loss-based membership attack (relearning is :mod:`core.metrics.relearn`; the membership
attacks side by side are :mod:`core.metrics.attacks`).

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
from torch import nn

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
