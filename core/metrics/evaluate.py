"""Accuracy per class, forget / retain accuracy, confusion matrix, and membership inference.

* forget accuracy  A_f = acc(class f) on the evaluation set
* retain accuracy  A_r = mean over classes c != f of acc(c)   (the mean of per-class accuracies)
* membership inference (SSD, Foster et al. 2024): a logistic regression on the entropy
  H(p) = -sum_c p_c log p_c of the softmax output learns members (retain-class training images)
  versus non-members (held-out images); the score is the share of forget-class *training* images it
  calls members. Training images are used here to evaluate, never to unlearn.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from core.data.sets import ImageSet
from core.models.compute import predict_logits


@dataclass
class Evaluation:
    per_class: list[float]
    forget_class: int | None
    forget_acc: float | None
    retain_acc: float
    overall: float
    confusion: list[list[int]]

    def to_dict(self) -> dict:
        return asdict(self)


def per_class_accuracy(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """acc_c = |{n : y_n = c and yhat_n = c}| / |{n : y_n = c}| (NaN for a class with no images)."""
    pred, lab = predictions.numpy(), labels.numpy()
    correct = np.bincount(lab[pred == lab], minlength=num_classes).astype(float)
    total = np.bincount(lab, minlength=num_classes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return correct / total


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """M[true, predicted] counts."""
    flat = labels.numpy() * num_classes + predictions.numpy()
    return np.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def summarize(logits: torch.Tensor, labels: torch.Tensor, forget_class: int | None) -> Evaluation:
    """Evaluation from logits; forget/retain split on ``forget_class``."""
    num_classes = logits.shape[1]
    pred = logits.argmax(1)
    acc = per_class_accuracy(pred, labels, num_classes)
    retain = [a for c, a in enumerate(acc) if c != forget_class and not np.isnan(a)]
    forget = None if forget_class is None else float(acc[forget_class])
    return Evaluation(per_class=[float(a) for a in acc], forget_class=forget_class, forget_acc=forget,
                      retain_acc=float(np.mean(retain)) if retain else float("nan"),
                      overall=float((pred == labels).float().mean()),
                      confusion=confusion_matrix(pred, labels, num_classes).tolist())


def worst_class_drop(before: Evaluation, after: Evaluation) -> float:
    """:math:`\\max_{c \\ne f} (\\mathrm{acc}_c^{before} - \\mathrm{acc}_c^{after})` over the retain classes with
    images; 0 when there are none."""
    drops = [b - a for c, (b, a) in enumerate(zip(before.per_class, after.per_class))
             if c != before.forget_class and not (np.isnan(b) or np.isnan(a))]
    return max(drops, default=0.0)


def wrong_retain_mask(logits: torch.Tensor, labels: torch.Tensor, forget_class: int) -> torch.Tensor:
    """Which images of the other classes ``logits`` answer wrongly (bool, on the CPU)."""
    return (logits.argmax(1).cpu() != labels) & (labels != forget_class)


def wrong_retain_answers(logits: torch.Tensor, labels: torch.Tensor, forget_class: int) -> int:
    """How many images of the other classes ``logits`` answer wrongly."""
    return int(wrong_retain_mask(logits, labels, forget_class).sum())


def evaluate(model: nn.Module, data: ImageSet, forget_class: int | None = None, batch_size: int | None = None) -> Evaluation:
    """Per-class, forget and retain accuracy of ``model`` on ``data``."""
    return summarize(predict_logits(model, data.images, batch_size), data.labels, forget_class)


def softmax_entropy(logits: torch.Tensor) -> np.ndarray:
    """H(p) = -sum_c p_c log p_c per row."""
    p = torch.softmax(logits.double(), 1)
    return torch.special.entr(p).sum(1).numpy()     # entr(0) = 0, so -inf logits (masked classes) are fine


def membership_inference(model: nn.Module, retain_train: ImageSet, heldout: ImageSet, forget_train: ImageSet,
                         n: int = 2000, seed: int = 0) -> float:
    """SSD's entropy attack: share of forget-class training images predicted to be members."""
    from sklearn.linear_model import LogisticRegression

    members = retain_train.sample(n, seed)
    nonmembers = heldout.sample(n, seed)
    forget = forget_train.sample(n, seed)
    feats = [softmax_entropy(predict_logits(model, s.images))[:, None] for s in (members, nonmembers, forget)]
    x = np.concatenate(feats[:2])
    y = np.concatenate([np.ones(len(feats[0])), np.zeros(len(feats[1]))])
    attack = LogisticRegression(class_weight="balanced", random_state=seed).fit(x, y)
    return float(attack.predict(feats[2]).mean())
