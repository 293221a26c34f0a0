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

from core.data.sets import AnalysisPool
from core.errors import UserError, check_share, check_whole
from core.metrics.evaluate import summarize, wrong_retain_answers
from core.models.checkpoints import clone_model
from core.models.compute import Activations
from core.models.graph import ModelGraph, graph_of
from core.unlearning.perturb import shallow_variant


@dataclass
class Eraser:
    """x -> x - sigma a^T (x - mu) on a layer's (flattened) inputs."""

    sigma: torch.Tensor
    a: torch.Tensor
    mu: torch.Tensor


def candidate_layers(graph: ModelGraph) -> list[str]:
    """Linear / plain Conv2d layers (each called once) between the first weighted layer and the
    classifier, deepest first. The classifier is left out (erasing its input would not change any
    feature), and so is the first layer: its inputs are raw pixel patches, where the class direction
    is a stroke or colour pattern every class draws on."""
    stop = graph.position[graph.call_of(graph.classifier()).name]
    return [name for name in reversed(graph.weighted()[1:])      # weighted() is in forward order
            if graph.called_once(name) and graph.position[graph.first_call(name).name] < stop
            and _erasable(graph.modules[name])]


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
def fold_eraser(model: nn.Module, layer: str, eraser: Eraser, reader: str | None = None) -> None:
    """Make ``layer`` (Linear or Conv2d) compute W r(x) + b: W -= (W sigma) a^T, b += (W sigma) a^T mu.
    A layer without bias passes the shift to ``reader``, the module that alone reads its output,
    when that is a BatchNorm (running mean -= shift), so the state dict keeps its keys; otherwise it
    gets a bias."""
    module = model.get_submodule(layer)
    weight = module.weight.data.double().flatten(1)
    w_sigma = weight @ eraser.sigma.to(weight.device)
    new_weight = weight - torch.outer(w_sigma, eraser.a.to(weight.device))
    module.weight.data.copy_(new_weight.view_as(module.weight).to(module.weight.dtype))
    shift = (w_sigma * (eraser.a @ eraser.mu).to(weight.device)).to(module.weight.dtype)
    if module.bias is not None:
        module.bias.data.add_(shift)
        return
    after = model.get_submodule(reader) if reader is not None else None
    if isinstance(after, (nn.BatchNorm1d, nn.BatchNorm2d)) and after.running_mean is not None:
        after.running_mean.sub_(shift)
    else:
        module.bias = nn.Parameter(shift.clone(), requires_grad=False)


@dataclass(frozen=True)
class Erasure:
    """Erasing the class direction from the layers before the classifier (:func:`choose_layers`).

    At most ``max_layers`` layers, from the classifier backwards, where the validation part holds at
    least ``min_wrong`` wrong retain answers to price them, else at most ``max_layers_few_errors``
    (on a near-perfect model one image is already a large part of the budget). A layer is kept while
    the validation retain accuracy drops at most max(``budget``, ``error_share`` x the original
    model's validation retain error); ``shrinkage`` regularises the eraser's covariance."""

    max_layers: int = 6
    min_wrong: int = 20
    max_layers_few_errors: int = 2
    budget: float = 0.005
    error_share: float = 0.1
    shrinkage: float = 0.1

    def __post_init__(self):
        check_whole(self.max_layers, "erasure.max_layers", 1)
        check_whole(self.min_wrong, "erasure.min_wrong")
        check_whole(self.max_layers_few_errors, "erasure.max_layers_few_errors")
        check_share(self.budget, "erasure.budget")
        check_share(self.error_share, "erasure.error_share")
        check_share(self.shrinkage, "erasure.shrinkage")

    def depth(self, original_val_logits: torch.Tensor, val: AnalysisPool, forget_class: int) -> int:
        """How many layers erasure may try, judged by the original model's validation answers."""
        wrong = wrong_retain_answers(original_val_logits, val.labels, forget_class)
        return self.max_layers if wrong >= self.min_wrong else min(self.max_layers, self.max_layers_few_errors)


def choose_layers(model: nn.Module, fit: AnalysisPool, val: AnalysisPool, forget_class: int, max_layers: int = 6,
                  budget: float = 0.005, shrinkage: float = 0.1, patches_per_image: int = 8,
                  seed: int = 0, error_share: float = 0.0, graph: ModelGraph | None = None,
                  fit_acts: Activations | None = None, val_acts: Activations | None = None) -> tuple[list[str], nn.Module]:
    """(layers, erased model): the deepest candidate layers (at most ``max_layers``, from the
    classifier backwards) whose erasure, fitted on ``fit``, lowers the retain accuracy on ``val``
    by at most max(``budget``, ``error_share`` x the retain error of ``model`` on ``val``); stops at
    the first layer that would exceed it.

    Erasing deepest first leaves everything before each candidate unchanged, so the live tensors at
    each candidate's cut (skip connections included) are found once and each trial runs only the
    part of the model from its layer on. ``graph``: the structure of ``model`` (of the model it was
    copied from), traced when not given. ``fit_acts``, ``val_acts``: :class:`Activations` of
    ``fit`` and ``val`` under a model that ``model`` was edited from (the original), whose tensors
    before ``model``'s edits are reused; made here for ``model`` itself when not given. Where a layer
    is kept, ``val_acts`` remembers the erased model's classifier inputs on ``val`` from the last
    trial (:meth:`Activations.remember`: the repair reads them), so that model is not to be changed
    in place afterwards."""
    graph = graph or graph_of(model, fit.info.input_shape)
    candidates = candidate_layers(graph)[:max_layers]
    if not candidates:
        return [], clone_model(model)
    erased = model                     # each trial copies only its layer (and reader); one deep copy at the end
    fit_acts, val_acts = fit_acts or Activations(model, fit), val_acts or Activations(model, val)
    cuts = {layer: graph.cut_at_module(layer) for layer in candidates}
    fit_start, val_start = fit_acts.start_of(model), val_acts.start_of(model)
    for acts, start in ((fit_acts, fit_start), (val_acts, val_start)):   # earliest first: one pass each
        acts.prepare([cut if cut.position <= start.position else start for cut in cuts.values()])
    fit_live = {layer: fit_acts.live(model, cut, fit_start) for layer, cut in cuts.items()}
    val_live = {layer: val_acts.live(model, cut, val_start) for layer, cut in cuts.items()}
    fit_inputs = {layer: fit_live[layer][cuts[layer].live.index(graph.call_of(layer).args[0].name)]
                  for layer in candidates}

    classifier = graph.cut_at_module(graph.classifier())

    def val_logits(trial: nn.Module, layer: str) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(logits, live tensors at the classifier's cut) of ``trial`` on ``val``."""
        live = graph.run_segment(trial, val_live[layer], cuts[layer], classifier)
        return graph.run_tail(trial, live, classifier), live

    base = summarize(val_logits(erased, candidates[0])[0], val.labels, forget_class).retain_acc   # the deepest cut: cheapest
    budget = max(budget, error_share * (1 - base))
    generator, chosen, kept = torch.Generator().manual_seed(seed), [], None
    for layer in candidates:
        rows, labels = _rows(erased.get_submodule(layer), fit_inputs[layer], fit.labels, patches_per_image, generator)
        reader = graph.successor(layer)
        trial = shallow_variant(erased, [layer] + ([reader] if reader else []))
        fold_eraser(trial, layer, fit_eraser(rows, labels == forget_class, shrinkage), reader)
        logits, live = val_logits(trial, layer)
        if base - summarize(logits, val.labels, forget_class).retain_acc > budget:
            break
        chosen.append(layer)
        erased, kept = trial, live
    out = clone_model(erased)
    if kept is not None:       # the erased model's classifier inputs on val: the repair reads them
        val_acts.remember(out, classifier, kept)
    return chosen, out
