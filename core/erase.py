"""Class-direction erasure: remove what is linearly left of the forget class inside the model.

Silencing a neuronal path stops the class at the output, but the layers before the classifier
still separate it (the benchmark's representation probe). Erasure removes that, layer by layer,
from the analysis pool alone, with the binary LEACE eraser (Belrose et al. 2023) folded into the
weights of a Linear or Conv2d layer.

For the inputs x of a layer (a Conv2d's inputs are its k x k patches), with z = 1 on forget-class
images, mean mu, covariance S (shrunk towards the identity) and cross-covariance
sigma = Cov(x, z), the eraser is

    r(x) = x - sigma a^T (x - mu),   a = S^-1 sigma / (sigma^T S^-1 sigma),

after which Cov(r(x), z) = 0: no linear function of the layer's input separates the class means.
The layer computes W r(x) + b, that is weights W - (W sigma) a^T and bias b + (W sigma) a^T mu,
so the model keeps its architecture. Layers are erased from the classifier backwards, down to
(not including) the first layer, whose inputs are raw pixels; each eraser is fitted on the inputs
the already erased model produces.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.compute import ActivationCache, run_stages, stage_names
from core.data import AnalysisPool
from core.errors import UserError
from core.evaluate import summarize
from core.models import classifier_name, clone_model


@dataclass
class Eraser:
    """x -> x - sigma a^T (x - mu) on a layer's (flattened) inputs."""

    sigma: torch.Tensor
    a: torch.Tensor
    mu: torch.Tensor


def candidate_layers(model: nn.Module) -> list[str]:
    """Top-level Linear / plain Conv2d stages between the first weighted layer and the classifier,
    deepest first. The classifier is left out (erasing its input would not change any feature), and
    so is the first layer: its inputs are raw pixel patches, where the class direction is a stroke or
    colour pattern every class draws on (on the MNIST cnn, erasing it cost 0.46 points of retain
    accuracy for 0.6 points of probe recall; BENCHMARKS.md section 8)."""
    if not isinstance(model, nn.Sequential):
        return []
    names = stage_names(model)
    clf = classifier_name(model)
    stop = names.index(clf) if clf in names else len(names)
    weighted = [i for i, n in enumerate(names) if any(True for _ in model.get_submodule(n).parameters())]
    begin = weighted[0] + 1 if weighted else 0
    return [n for n in reversed(names[begin:stop]) if _erasable(model.get_submodule(n))]


def _erasable(module: nn.Module) -> bool:
    """Linear, or a plain Conv2d (one group, zero padding): the layers an eraser folds into exactly."""
    if isinstance(module, nn.Conv2d):
        odd = all(k % 2 for k in module.kernel_size)       # PyTorch pads an even "same" kernel unevenly
        return module.groups == 1 and module.padding_mode == "zeros" and (module.padding != "same" or odd)
    return isinstance(module, nn.Linear)


def _rows(module: nn.Module, x: torch.Tensor, labels: torch.Tensor, patches_per_image: int,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's inputs ``x`` as rows: one per image (Linear) or seeded k x k patches (Conv2d)."""
    x = x.cpu()
    if isinstance(module, nn.Linear):
        return x.flatten(1).double(), labels
    (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
    if module.padding == "same":
        ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    else:
        ph, pw = module.padding if isinstance(module.padding, tuple) else (0, 0)
    padded = F.pad(x, (pw, pw, ph, ph))
    out_h = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
    n, places = len(x), out_h * out_w
    pick = torch.randint(places, (n, min(patches_per_image, places)), generator=generator)
    top, left, image = (pick // out_w) * sh, (pick % out_w) * sw, torch.arange(n)[:, None]
    # (n, picks, C) per kernel offset, stacked as (C, kh, kw) like the flattened weight
    taps = [padded[image, :, top + i * dh, left + j * dw] for i in range(kh) for j in range(kw)]
    rows = torch.stack(taps, -1).reshape(n * pick.shape[1], -1)
    return rows.double(), labels.repeat_interleave(pick.shape[1])


def fit_eraser(x: torch.Tensor, is_forget: torch.Tensor, shrinkage: float = 0.1) -> Eraser:
    """The binary LEACE eraser of the rows ``x`` for the indicator ``is_forget``, with
    S = (1 - shrinkage) Cov(x) + shrinkage * mean(diag Cov(x)) I. When there are fewer rows than
    dimensions, S^-1 sigma is solved in the rows' space (Woodbury)."""
    z = is_forget.double()
    if z.min() == z.max():
        raise UserError("Erasure needs images of the forget class and of other classes in the analysis pool.")
    mu = x.mean(0)
    xc = x - mu
    n, dim = xc.shape
    sigma = xc.T @ (z - z.mean()) / n
    alpha = (1 - shrinkage) / n
    beta = shrinkage * float((xc * xc).sum() / (n * dim)) + 1e-12
    low = xc.float()   # the Gram matrix in float32 (the cost); solves in float64
    if dim <= n:
        s = alpha * (low.T @ low).double() + beta * torch.eye(dim, dtype=xc.dtype)
        s_inv_sigma = torch.linalg.solve(s, sigma)
    else:   # S^-1 = (I - Xc^T (beta/alpha I + Xc Xc^T)^-1 Xc) / beta
        small = (low @ low.T).double() + (beta / alpha) * torch.eye(n, dtype=xc.dtype)
        s_inv_sigma = (sigma - xc.T @ torch.linalg.solve(small, xc @ sigma)) / beta
    a = s_inv_sigma / (sigma @ s_inv_sigma).clamp_min(1e-30)
    return Eraser(sigma, a, mu)


@torch.no_grad()
def fold_eraser(model: nn.Module, layer: str, eraser: Eraser) -> None:
    """Make ``layer`` (Linear or Conv2d) compute W r(x) + b: W -= (W sigma) a^T, b += (W sigma) a^T mu.
    A layer without bias passes the shift to the BatchNorm right after it (running mean -= shift),
    so the state dict keeps its keys; otherwise it gets a bias."""
    module = model.get_submodule(layer)
    weight = module.weight.data.double().flatten(1)
    w_sigma = weight @ eraser.sigma.to(weight.device)
    new_weight = weight - torch.outer(w_sigma, eraser.a.to(weight.device))
    module.weight.data.copy_(new_weight.view_as(module.weight).to(module.weight.dtype))
    shift = (w_sigma * (eraser.a @ eraser.mu).to(weight.device)).to(module.weight.dtype)
    if module.bias is not None:
        module.bias.data.add_(shift)
        return
    names = stage_names(model)
    after = model.get_submodule(names[names.index(layer) + 1]) if layer in names[:-1] else None
    if isinstance(after, (nn.BatchNorm1d, nn.BatchNorm2d)) and after.running_mean is not None:
        after.running_mean.sub_(shift)
    else:
        module.bias = nn.Parameter(shift.clone(), requires_grad=False)


def _val_pass(model: nn.Sequential, val: AnalysisPool, keep: set[int],
              cache: ActivationCache | None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """(logits, inputs of the stages in ``keep``) on ``val``, starting from ``cache`` where it helps."""
    start = cache.start if cache is not None and len(cache.activations) == len(val) else 0
    logits, inputs = run_stages(model, cache.activations if start else val.images, start, keep={i for i in keep if i >= start})
    missing = set()
    for index in sorted(i for i in keep if i < start):     # candidates before the cache: kept, or one head pass
        if cache is not None and index in cache.inputs and len(cache.inputs[index]) == len(val):
            inputs[index] = cache.inputs[index]
        else:
            missing.add(index)
    if missing:
        _, early = run_stages(model, val.images, 0, max(missing), keep=missing)
        inputs.update(early)
    return logits, inputs


def choose_layers(model: nn.Module, fit: AnalysisPool, val: AnalysisPool, forget_class: int, max_layers: int = 6,
                  budget: float = 0.005, shrinkage: float = 0.1, patches_per_image: int = 8,
                  seed: int = 0, val_cache: ActivationCache | None = None,
                  error_share: float = 0.0) -> tuple[list[str], nn.Module]:
    """(layers, erased model): the deepest candidate layers (at most ``max_layers``, from the
    classifier backwards) whose erasure, fitted on ``fit``, lowers the retain accuracy on ``val``
    by at most max(``budget``, ``error_share`` x the retain error of ``model`` on ``val``); stops at
    the first layer that would exceed it.

    Erasing deepest first leaves the stages before each candidate unchanged, so one forward pass
    records every candidate's inputs and each trial runs only the stages from its layer on.
    ``val_cache`` (``val``'s activations at the input of a stage that ``model`` shares with the
    model they were computed on, everything before it unchanged) saves the val pass up to there."""
    names = stage_names(model)
    candidates = candidate_layers(model)[:max_layers]
    erased = clone_model(model)
    if not candidates:
        return [], erased
    where = [names.index(n) for n in candidates]
    _, fit_inputs = run_stages(erased, fit.images, 0, max(where), keep=set(where))
    logits, val_inputs = _val_pass(erased, val, set(where), val_cache)
    base = summarize(logits.float().cpu(), val.labels, forget_class).retain_acc
    budget = max(budget, error_share * (1 - base))
    generator, chosen = torch.Generator().manual_seed(seed), []
    for layer, index in zip(candidates, where):
        rows, labels = _rows(erased.get_submodule(layer), fit_inputs[index], fit.labels, patches_per_image, generator)
        trial = clone_model(erased)
        fold_eraser(trial, layer, fit_eraser(rows, labels == forget_class, shrinkage))
        val_logits, _ = run_stages(trial, val_inputs[index], index)
        if base - summarize(val_logits.float().cpu(), val.labels, forget_class).retain_acc > budget:
            break
        chosen.append(layer)
        erased = trial
    return chosen, erased
