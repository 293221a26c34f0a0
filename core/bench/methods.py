"""Unlearning methods compared by the benchmark, in one registry.

Every method is ``method(model, context) -> UnlearnOutcome`` and never changes ``model``:

========================  =========================================================  ==============================
name                      what it does                                               data it uses
========================  =========================================================  ==============================
``retrain``               fresh model (every layer re-initialised), the original     retain-class training images
                          recipe on the retain classes only. The reference row.
``finetune``              the model fine-tuned on retain-class training images        retain-class training images
                          for a fixed number of steps (catastrophic forgetting).
``gradient_ascent``       NegGrad: ascend the cross-entropy on forget-class          forget-class training images
                          training images until a batch is no longer recognised
                          (or a step cap).
``random_labels``         fine-tune on forget-class images relabelled at random      retain + forget training images
                          (to another class) mixed with retain images.
``ssd``                   Selective Synaptic Dampening (Foster et al. 2024).         retain + forget training images
``lra_npp``               the authors' LRP path perturbation (``PAPER_CONFIG``).     analysis pool only
``noise_gaussian``        as ``lra_npp`` with N(0, 1) noise instead of zeroing.      analysis pool only
``noise_laplace``         as ``lra_npp`` with Laplace(0, 1) noise.                   analysis pool only
``output_mask``           forget-class classifier row zeroed, its bias set below     analysis pool only
                          every pool logit (a real model, fine-tunable).
``ours``                  this project's defaults (``default_config()`` at run time) analysis pool only
========================  =========================================================  ==============================

Training randomness (initialisation, batch order, relabelling, noise, analysis sample) follows
``context.seed``. ``seconds`` covers the unlearning only (no evaluation), measured around the work
with the device synchronised.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.data.sets import AnalysisPool, ImageSet
from core.models.checkpoints import clone_model
from core.models.compute import model_device, predict_logits
from core.models.graph import graph_of
from core.models.registry import build_model
from core.models.train import TrainConfig, train_model


NONE = "none"
POOL_ONLY = "none (analysis pool only)"
RETAIN_TRAIN = "retain train"
FORGET_TRAIN = "forget train"
RETAIN_FORGET_TRAIN = "retain+forget train"


@dataclass(frozen=True)
class BaselineBudget:
    """Step budgets and settings of the training-based baselines (documented in every summary).

    ``retrain_epochs=None`` keeps the original recipe's epochs; a number replaces it (the quick
    profile's reduced MNIST budget); ``retrain_samples`` retrains on a seeded sample of that many
    retain-class images instead of all of them. ``lr=None``: fine-tuning and random labels use the recipe's
    learning rate (AdamW with the recipe's weight decay, constant rate)."""

    retrain_epochs: int | None = None
    retrain_samples: int | None = None
    finetune_steps: int = 100
    random_label_steps: int = 100
    lr: float | None = None
    ascent_steps: int = 100
    ascent_lr: float = 1e-3
    batch_size: int = 128
    ssd_samples: int = 4096
    ssd_alpha: float = 10.0
    ssd_lambda: float = 1.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class UnlearnContext:
    """Everything a method may use. Only methods whose ``uses_training_data`` says so read ``train``."""

    forget_class: int
    pool: AnalysisPool
    train: ImageSet
    arch: str
    train_config: TrainConfig
    seed: int = 0
    budget: BaselineBudget = field(default_factory=BaselineBudget)

    @property
    def num_classes(self) -> int:
        return self.pool.info.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.pool.info.input_shape)


@dataclass
class UnlearnOutcome:
    """The unlearned model, seconds of unlearning (no evaluation), and which training data it read."""

    model: nn.Module
    seconds: float
    uses_training_data: str
    details: dict = field(default_factory=dict)


Method = Callable[[nn.Module, UnlearnContext], UnlearnOutcome]
METHODS: dict[str, Method] = {}
DATA_USED: dict[str, str] = {}
DESCRIPTIONS: dict[str, str] = {}


def register(name: str, data: str, description: str):
    """Add a method to the registry under ``name`` with the training data it reads."""
    def wrap(fn: Method) -> Method:
        METHODS[name], DATA_USED[name], DESCRIPTIONS[name] = fn, data, description
        return fn
    return wrap


class _Clock:
    """perf_counter seconds with the model's device synchronised at start and stop."""

    def __init__(self, device: torch.device):
        self.device = device

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> "_Clock":
        self._sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self.start


# ----------------------------------------------------------------------------- helpers
def _generator(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1009 + salt)


def _positions(labels: torch.Tensor, forget_class: int, forget: bool) -> torch.Tensor:
    mask = labels == forget_class if forget else labels != forget_class
    return mask.nonzero(as_tuple=True)[0]


def _draw(pos: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` positions drawn from ``pos`` (without replacement inside one draw)."""
    if len(pos) == 0:
        raise ValueError("no images to draw from")
    if n <= len(pos):
        return pos[torch.randperm(len(pos), generator=generator)[:n]]
    return pos[torch.randint(len(pos), (n,), generator=generator)]


def _recipe_optimizer(model: nn.Module, ctx: "UnlearnContext") -> tuple[torch.optim.Optimizer, float]:
    """AdamW with the original recipe's weight decay, at ``budget.lr`` or the recipe's rate (constant)."""
    lr = ctx.budget.lr if ctx.budget.lr is not None else ctx.train_config.lr
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=ctx.train_config.weight_decay), lr


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
          sign: float = 1.0) -> torch.Tensor:
    """One optimiser step on sign * cross-entropy; returns the logits (detached)."""
    device = model_device(model)
    logits = model(x.to(device))
    loss = sign * F.cross_entropy(logits, y.to(device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits.detach()


# ----------------------------------------------------------------------------- training-data baselines
@register("retrain", RETAIN_TRAIN,
          "fresh model, every layer re-initialised, original recipe on the retain classes only")
def retrain(model: nn.Module, ctx: UnlearnContext) -> UnlearnOutcome:
    """The reference: what a model that never saw the forget class looks like."""
    device = model_device(model)
    config = dataclasses.replace(ctx.train_config, seed=ctx.seed)
    if ctx.budget.retrain_epochs is not None:
        config = dataclasses.replace(config, epochs=ctx.budget.retrain_epochs)
    with _Clock(device) as clock:
        retain = ctx.train.without_class(ctx.forget_class)
        if ctx.budget.retrain_samples is not None:
            retain = retain.sample(ctx.budget.retrain_samples, ctx.seed)
        fresh = build_model(ctx.arch, ctx.num_classes, ctx.input_shape, seed=ctx.seed).to(device)
        train_model(fresh, retain, config)
    return UnlearnOutcome(fresh.eval(), clock.seconds, RETAIN_TRAIN,
                          {"train_config": config.to_dict(), "train_images": len(retain)})


@register("finetune", RETAIN_TRAIN, "fine-tune on retain-class training images for a fixed step budget")
def finetune(model: nn.Module, ctx: UnlearnContext) -> UnlearnOutcome:
    """The recipe's optimiser (AdamW, constant rate) on retain-class training batches for
    ``finetune_steps`` steps."""
    b = ctx.budget
    device = model_device(model)
    torch.manual_seed(ctx.seed)
    g = _generator(ctx.seed, 1)
    with _Clock(device) as clock:
        tuned = clone_model(model).train()
        optimizer, lr = _recipe_optimizer(tuned, ctx)
        retain = _positions(ctx.train.labels, ctx.forget_class, forget=False)
        for _ in range(b.finetune_steps):
            idx = _draw(retain, b.batch_size, g)
            _step(tuned, optimizer, ctx.train.images[idx], ctx.train.labels[idx])
    return UnlearnOutcome(tuned.eval(), clock.seconds, RETAIN_TRAIN,
                          {"steps": b.finetune_steps, "lr": lr, "batch_size": b.batch_size})


@register("gradient_ascent", FORGET_TRAIN,
          "NegGrad: ascend the loss on forget-class training images until a batch is not recognised")
def gradient_ascent(model: nn.Module, ctx: UnlearnContext) -> UnlearnOutcome:
    """Adam (``ascent_lr``) on -CE over forget-class training batches; stops as soon as the current
    batch's accuracy (read from the same forward pass) is at chance level (1 / classes) or below,
    or after ``ascent_steps``. Ascent diverges once the class is gone, so the stop matters more than
    the step count. BatchNorm stays in eval mode so that single-class batches do not overwrite its
    running statistics."""
    b = ctx.budget
    device = model_device(model)
    torch.manual_seed(ctx.seed)
    g = _generator(ctx.seed, 2)
    steps = 0
    with _Clock(device) as clock:
        tuned = clone_model(model).eval()
        optimizer = torch.optim.Adam(tuned.parameters(), lr=b.ascent_lr)
        chance = 1.0 / ctx.num_classes
        forget = _positions(ctx.train.labels, ctx.forget_class, forget=True)
        for _ in range(b.ascent_steps):
            idx = _draw(forget, b.batch_size, g)
            x, y = ctx.train.images[idx].to(device), ctx.train.labels[idx].to(device)
            logits = tuned(x)
            if (logits.argmax(1) == y).float().mean().item() <= chance:
                break
            loss = -F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    return UnlearnOutcome(tuned.eval(), clock.seconds, FORGET_TRAIN,
                          {"steps": steps, "max_steps": b.ascent_steps, "lr": b.ascent_lr})


@register("random_labels", RETAIN_FORGET_TRAIN,
          "fine-tune on forget-class images relabelled at random (other classes) plus retain images")
def random_labels(model: nn.Module, ctx: UnlearnContext) -> UnlearnOutcome:
    """Each batch: half forget-class training images with a random other label, half retain images."""
    b = ctx.budget
    device = model_device(model)
    torch.manual_seed(ctx.seed)
    g = _generator(ctx.seed, 3)
    c, k = ctx.forget_class, ctx.num_classes
    with _Clock(device) as clock:
        tuned = clone_model(model).train()
        optimizer, lr = _recipe_optimizer(tuned, ctx)
        forget = _positions(ctx.train.labels, c, forget=True)
        retain = _positions(ctx.train.labels, c, forget=False)
        half = max(1, b.batch_size // 2)
        for _ in range(b.random_label_steps):
            fi, ri = _draw(forget, half, g), _draw(retain, b.batch_size - half, g)
            wrong = torch.randint(k - 1, (len(fi),), generator=g)
            wrong = wrong + (wrong >= c).long()                     # uniform over the other classes
            x = torch.cat([ctx.train.images[fi], ctx.train.images[ri]])
            y = torch.cat([wrong, ctx.train.labels[ri]])
            _step(tuned, optimizer, x, y)
    return UnlearnOutcome(tuned.eval(), clock.seconds, RETAIN_FORGET_TRAIN,
                          {"steps": b.random_label_steps, "lr": lr, "batch_size": b.batch_size})


def fisher_diagonal(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Diagonal Fisher importance as in SSD's code: I = mean over batches of (dL/dtheta)^2, with L the
    mean cross-entropy of a batch (model in eval mode, parameters not changed)."""
    device = model_device(model)
    model.eval()
    importance = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    batches = 0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        y = labels[start:start + batch_size].to(device)
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                importance[n] += p.grad.detach() ** 2
        batches += 1
    model.zero_grad(set_to_none=True)
    return {n: v / max(batches, 1) for n, v in importance.items()}


@torch.no_grad()
def ssd_dampen(model: nn.Module, forget_importance: dict[str, torch.Tensor],
               full_importance: dict[str, torch.Tensor], alpha: float = 10.0, lam: float = 1.0) -> int:
    """In place: for every parameter with I_f > alpha * I_D, theta *= beta = min(lam * I_D / I_f, 1).
    Returns how many parameter entries were dampened."""
    changed = 0
    for n, p in model.named_parameters():
        f, d = forget_importance[n], full_importance[n]
        selected = f > alpha * d
        beta = (lam * d / f.clamp_min(torch.finfo(f.dtype).tiny)).clamp(max=1.0)
        p[selected] = p[selected] * beta[selected]
        changed += int(selected.sum())
    return changed


@register("ssd", RETAIN_FORGET_TRAIN,
          "Selective Synaptic Dampening: Fisher importances on forget vs full training data")
def ssd(model: nn.Module, ctx: UnlearnContext) -> UnlearnOutcome:
    """SSD (Foster et al. 2024), alpha=10, lambda=1 (the authors' values). Importances from a seeded
    sample of ``ssd_samples`` training images (D, all classes) and as many forget-class training
    images (D_f)."""
    b = ctx.budget
    device = model_device(model)
    g = _generator(ctx.seed, 4)
    with _Clock(device) as clock:
        damped = clone_model(model)
        for p in damped.parameters():
            p.requires_grad_(True)
        full = _draw(torch.arange(len(ctx.train)), min(b.ssd_samples, len(ctx.train)), g)
        forget_pos = _positions(ctx.train.labels, ctx.forget_class, forget=True)
        forget = _draw(forget_pos, min(b.ssd_samples, len(forget_pos)), g)
        imp_full = fisher_diagonal(damped, ctx.train.images[full], ctx.train.labels[full], b.batch_size)
        imp_forget = fisher_diagonal(damped, ctx.train.images[forget], ctx.train.labels[forget], b.batch_size)
        changed = ssd_dampen(damped, imp_forget, imp_full, b.ssd_alpha, b.ssd_lambda)
    return UnlearnOutcome(damped.eval(), clock.seconds, RETAIN_FORGET_TRAIN,
                          {"alpha": b.ssd_alpha, "lambda": b.ssd_lambda, "dampened_entries": changed,
                           "samples_full": len(full), "samples_forget": len(forget)})


# ----------------------------------------------------------------------------- zero-shot methods
def _path_method(model: nn.Module, ctx: UnlearnContext, config) -> UnlearnOutcome:
    from core.unlearning.pipeline import unlearn

    config = config.override({"seed": ctx.seed})
    with _Clock(model_device(model)) as clock:
        result = unlearn(model, ctx.pool, ctx.forget_class, config)
    units = {layer: len(u) for layer, u in result.path.units.items()}
    return UnlearnOutcome(result.model.eval(), clock.seconds, POOL_ONLY,
                          {"config": config.to_dict(), "target_used": result.config.perturbation.target, "units": units,
                           "erased_layers": result.erased_layers,
                           "relabelling": result.relabelling.to_dict() if result.relabelling else None,
                           "repair": result.repairing.to_dict() if result.repairing else None,
                           "engine_seconds": result.seconds})


@register("lra_npp", POOL_ONLY, "the authors' recipe: epsilon LRP at the classifier input, K/H 50/80 of 512, zero")
def lra_npp(model: nn.Module, ctx: UnlearnContext) -> UnlearnOutcome:
    from core.unlearning.config import PAPER_CONFIG

    return _path_method(model, ctx, PAPER_CONFIG)


@register("noise_gaussian", POOL_ONLY, "the authors' GN baseline: N(0,1) noise on the same weights")
def noise_gaussian(model: nn.Module, ctx: UnlearnContext) -> UnlearnOutcome:
    from core.unlearning.config import PAPER_CONFIG

    return _path_method(model, ctx, PAPER_CONFIG.override({"perturbation.method": "gaussian"}))


@register("noise_laplace", POOL_ONLY, "the authors' LN baseline: Laplace(0,1) noise on the same weights")
def noise_laplace(model: nn.Module, ctx: UnlearnContext) -> UnlearnOutcome:
    from core.unlearning.config import PAPER_CONFIG

    return _path_method(model, ctx, PAPER_CONFIG.override({"perturbation.method": "laplace"}))


def mask_output(model: nn.Module, forget_class: int, pool) -> nn.Module:
    """The output mask as real weights, a model anyone could fine-tune: a copy of ``model`` whose
    classifier row for ``forget_class`` is zeroed and whose bias for it is set one below the lowest
    logit the model gives any analysis-pool image, so the class's logit is a constant that never
    wins on images like the pool's."""
    masked = clone_model(model)
    graph = graph_of(masked, pool.info.input_shape)
    head = masked.get_submodule(graph.classifier())
    lowest = float(predict_logits(model, pool.images).min())
    with torch.no_grad():
        head.weight[forget_class].zero_()
        if head.bias is None:
            head.bias = nn.Parameter(torch.zeros(head.out_features, device=head.weight.device))
        head.bias[forget_class] = lowest - 1.0
    return masked.eval()


@register("output_mask", POOL_ONLY, "forget-class classifier row zeroed, its bias set below every logit on the "
          "pool (a real, fine-tunable model)")
def output_mask(model: nn.Module, ctx: UnlearnContext) -> UnlearnOutcome:
    with _Clock(model_device(model)) as clock:
        masked = mask_output(model, ctx.forget_class, ctx.pool)
    return UnlearnOutcome(masked, clock.seconds, POOL_ONLY)


@register("ours", POOL_ONLY, "this project's defaults: core.unlearning.default_config() at run time")
def ours(model: nn.Module, ctx: UnlearnContext) -> UnlearnOutcome:
    from core.unlearning.config import default_config

    return _path_method(model, ctx, default_config())


def check_methods(names: list[str] | None) -> list[str]:
    """Registry names in registry order (all if ``names`` is None); UserError for an unknown name."""
    from core.errors import UserError

    if not names:
        return list(METHODS)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise UserError(f"Unknown method '{unknown[0]}'; choose from {', '.join(METHODS)}.")
    return [n for n in METHODS if n in set(names)]
