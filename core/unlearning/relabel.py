"""Second-choice relabelling: make the unlearned model answer forget-class images the way a model
that never learned the class would, confidently naming another class.

Silencing the class leaves its images between the remaining classes: the softmax over them is
nearly flat (entropy close to its maximum, ln of the class count; BENCHMARKS.md has the figures),
whereas a retrained model names one other class for many of them. A membership attack on output
entropy then sees the forget images as *less* familiar than a retrained model's (the "Streisand
effect").

From the analysis pool alone: each forget-class image's label becomes its second choice under the
original model (the class it was confused with; Chen et al. 2023, "Boundary Unlearning", shrink to
the nearest wrong class). A ridge regression on the classifier's inputs h (fit part of the pool)
gives the logit change that teaches those labels and leaves other images alone,

    D = argmin sum_i ||D [h_i; 1] - t_i||^2 + shrinkage,  t_i = e_second(i) for forget images, else 0,

folded into the classifier as W += alpha D_W, b += alpha D_b. The strength alpha is chosen on the
validation part: the smallest alpha at which the forget images' mean softmax entropy falls to the
mean entropy of the retain images the model gets wrong (a model that never learned the class is
wrong on all of its images, so it should be as sure of them as of its other wrong answers), while
the validation retain accuracy drops at most ``budget``. Skipped where the validation part has
fewer than ``min_wrong`` wrong answers to compare with (near-perfect models such as MNIST's).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.data.sets import AnalysisPool
from core.errors import check_share, check_whole
from core.metrics.evaluate import softmax_entropy, summarize, wrong_retain_answers, wrong_retain_mask
from core.models.checkpoints import clone_model
from core.models.compute import Activations, predict_logits
from core.models.graph import graph_of


MAX_STRENGTH = 64.0
BISECTION_STEPS = 20


@dataclass
class Relabelling:
    """What :func:`relabel` did: ``strength`` alpha (0 when skipped) and why."""

    strength: float
    reason: str
    forget_entropy: float | None = None     # validation forget images, after
    wrong_entropy: float | None = None      # validation retain images answered wrongly, after

    def to_dict(self) -> dict:
        return {"strength": round(self.strength, 4), "reason": self.reason,
                "forget_entropy": self.forget_entropy, "wrong_entropy": self.wrong_entropy}


def second_choices(original: nn.Module, images: torch.Tensor, forget_class: int) -> torch.Tensor:
    """argmax_{j != c} of the original model's logits: the class each forget image is confused with."""
    return best_other(predict_logits(original, images), forget_class)


def best_other(logits: torch.Tensor, forget_class: int) -> torch.Tensor:
    """argmax_{j != c} of each row of ``logits``."""
    logits = logits.clone()
    logits[:, forget_class] = -float("inf")
    return logits.argmax(1)


def fit_logit_shift(h: torch.Tensor, targets: torch.Tensor, shrinkage: float = 0.1,
                    weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(D_W, D_b) of the ridge regression targets ~ h D_W^T + D_b with covariance
    S = (1 - shrinkage) Cov(h) + shrinkage * mean(diag Cov(h)) I (centred, so D_b is unpenalised).
    ``weights``: one per row (mean, covariance and cross-covariance weighted by them; all 1 when not
    given). With more dimensions than rows (a classifier reading a large flattened map), S^-1 is
    applied in the rows' space (Woodbury), as in :func:`core.unlearning.erase.fit_eraser`."""
    n, dim = h.shape
    w = torch.ones(n, dtype=h.dtype) if weights is None else weights.to(h.dtype) * (n / weights.sum())
    mu, t_mu = (w[:, None] * h).sum(0) / n, (w[:, None] * targets).sum(0) / n
    root = w.sqrt()[:, None]
    hc = root * (h - mu)                  # weighted rows: Cov(h) = hc^T hc / n
    rhs = hc.T @ (root * (targets - t_mu)) / n
    alpha = 1 - shrinkage
    beta = shrinkage * float((hc * hc).sum() / (n * dim)) + 1e-12          # shrinkage * mean(diag Cov(h))
    if dim <= n or alpha == 0:
        s = alpha * (hc.T @ hc / n) + beta * torch.eye(dim, dtype=h.dtype)
        weight = torch.linalg.solve(s, rhs).T
    else:   # S^-1 = (I - Hc^T (beta n / alpha I + Hc Hc^T)^-1 Hc) / beta
        small = hc @ hc.T + (beta * n / alpha) * torch.eye(n, dtype=h.dtype)
        weight = ((rhs - hc.T @ torch.linalg.solve(small, hc @ rhs)) / beta).T
    return weight, t_mu - weight @ mu


def classifier_weights(clf: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) of the classifier in float64 on the CPU; b = 0 where it has no bias."""
    weight = clf.weight.detach().double().cpu()
    bias = clf.bias.detach().double().cpu() if clf.bias is not None else torch.zeros(len(weight), dtype=torch.float64)
    return weight, bias


@torch.no_grad()
def with_logit_shift(model: nn.Module, classifier: str, d_weight: torch.Tensor, d_bias: torch.Tensor) -> nn.Module:
    """A copy of ``model`` whose ``classifier`` (module path) computes (W + D_W) h + b + D_b (a
    classifier without bias gets one); ``model`` is untouched."""
    out = clone_model(model)
    clf = out.get_submodule(classifier)
    clf.weight.add_(d_weight.to(clf.weight))
    if clf.bias is None:
        clf.bias = nn.Parameter(torch.zeros(len(clf.weight)).to(clf.weight), requires_grad=False)
    clf.bias.add_(d_bias.to(clf.bias))
    return out


def forget_and_wrong_entropies(logits: torch.Tensor, labels: torch.Tensor, forget_class: int) -> tuple[float, float, int]:
    """(mean softmax entropy of the forget images, of the retain images answered wrongly (nan when
    none), how many of those)."""
    entropy = torch.from_numpy(softmax_entropy(logits))
    wrong = wrong_retain_mask(logits, labels, forget_class)
    return (float(entropy[labels == forget_class].mean()), float(entropy[wrong].mean()) if wrong.any() else float("nan"),
            int(wrong.sum()))


def choose_strength(base: torch.Tensor, shift: torch.Tensor, labels: torch.Tensor, forget_class: int,
                    budget: float, min_wrong: int) -> Relabelling:
    """Bisection for the alpha at which the forget images' mean entropy meets the wrong answers'
    (logits ``base + alpha * shift`` on the validation part), within the retain budget."""
    start = summarize(base.float(), labels, forget_class).retain_acc
    forget_h, wrong_h, wrong_n = forget_and_wrong_entropies(base.float(), labels, forget_class)
    if wrong_n < min_wrong:
        return Relabelling(0.0, f"skipped: {wrong_n} wrong answers on the validation part (needs {min_wrong})")
    if forget_h <= wrong_h:
        return Relabelling(0.0, "skipped: forget images already as certain as wrong answers", forget_h, wrong_h)

    def state(alpha: float) -> tuple[bool, float, float]:
        logits = (base + alpha * shift).float()
        f, w, _ = forget_and_wrong_entropies(logits, labels, forget_class)
        over = start - summarize(logits, labels, forget_class).retain_acc > budget
        return over or not f > w, f, w     # True: alpha is at or past the point we want

    low, high = 0.0, MAX_STRENGTH
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        low, high = (low, mid) if state(mid)[0] else (mid, high)
    _, forget_h, wrong_h = state(low)
    return Relabelling(low, "matched" if forget_h - wrong_h < 0.05 else "retain budget", forget_h, wrong_h)


@dataclass(frozen=True)
class Relabel:
    """Teaching the classifier the forget images' second choice (:func:`relabel`).

    The strength is chosen so that the extra validation retain-accuracy drop stays within
    ``budget``; skipped where the original model gets fewer than ``min_wrong`` validation retain
    images wrong (too few to compare with); ``shrinkage`` regularises the ridge fit."""

    budget: float = 0.02
    min_wrong: int = 20
    shrinkage: float = 0.1

    def __post_init__(self):
        check_share(self.budget, "relabel.budget")
        check_share(self.shrinkage, "relabel.shrinkage")
        check_whole(self.min_wrong, "relabel.min_wrong")


def relabel(model: nn.Module, original: nn.Module, fit: AnalysisPool, val: AnalysisPool, forget_class: int,
            budget: float = 0.02, shrinkage: float = 0.1, min_wrong: int = 20,
            original_val_logits: torch.Tensor | None = None, fit_acts: Activations | None = None,
            val_acts: Activations | None = None) -> tuple[Relabelling, nn.Module]:
    """(what was done, relabelled copy of ``model``, or ``model`` itself where the strength is 0): fit
    the second-choice logit shift on ``fit``, choose its strength on ``val`` (module docstring).
    ``model`` and ``original`` are untouched.
    Whether there are ``min_wrong`` wrong answers is judged by the original model's logits on
    ``val`` (``original_val_logits`` when the caller has them), before any work on ``model``.
    ``fit_acts``, ``val_acts``: the parts' :class:`Activations` under ``original`` when the caller
    holds them (only the layers ``model`` changed are then run)."""
    fit_acts, val_acts = fit_acts or Activations(original, fit), val_acts or Activations(original, val)
    if original_val_logits is None:
        original_val_logits = val_acts.logits()
    wrong = wrong_retain_answers(original_val_logits, val.labels, forget_class)
    if wrong < min_wrong:
        return Relabelling(0.0, f"skipped: {wrong} wrong answers on the validation part (needs {min_wrong})"), model
    graph = graph_of(original, fit.info.input_shape)
    w0, b0 = classifier_weights(model.get_submodule(graph.classifier()))
    h_val = val_acts.features(model)
    base = h_val @ w0.T + b0
    forget = fit.labels == forget_class
    targets = torch.zeros(len(fit), fit.info.num_classes, dtype=torch.float64)
    targets[forget.nonzero(as_tuple=True)[0], best_other(fit_acts.logits()[forget], forget_class)] = 1.0
    weight, bias = fit_logit_shift(fit_acts.features(model), targets, shrinkage)
    chosen = choose_strength(base, h_val @ weight.T + bias, val.labels, forget_class, budget, min_wrong)
    if not chosen.strength:
        return chosen, model
    return chosen, with_logit_shift(model, graph.classifier(), chosen.strength * weight, chosen.strength * bias)
