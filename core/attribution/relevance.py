"""Layer-wise Relevance Propagation through zennit.

LRP starts at the target logit, R_out = f_c(x) on the target class and 0 elsewhere, and moves
relevance backwards layer by layer. The epsilon rule for a layer z_j = sum_i a_i w_ij + b_j is

    R_i = sum_j  a_i w_ij / (z_j + eps * sign(z_j)) * R_j .

In zennit the rules are autograd hooks, so the *gradient* that reaches any intermediate tensor
inside the composite's context already is the relevance of that tensor (no multiplication by the
activation). With biases zeroed and eps -> 0 the total is conserved: sum_i R_i = f_c(x) at every layer.

All LRP runs on a private twin (a deep copy made once, traced and rewritten by
:func:`core.attribution.canonizers.lrp_twin` so that residual sums, gates and functional activations get rules
and BatchNorm is merged wherever it follows a Conv/Linear), so hooks and canonizers never touch the
model that is perturbed or evaluated. Any ``nn.Module`` that ``torch.fx`` can trace works, nested or
not, and any GraphModule from :mod:`core.models.formats`.

zennit is imported where a composite or twin is built, not with this module: importing zennit
imports torchvision (about 2 s), which the settings (:class:`LRP`, :data:`RULES`) do not need.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.attribution.rules import RULES
from core.errors import UserError
from core.models.graph import ModelGraph, graph_of
from core.models.tracing import GATE


def _layer_rule(rule: str, epsilon: float, zero_params):
    """The rule applied to every Linear and Conv layer (all but epsilon-plus-flat)."""
    from zennit.rules import AlphaBeta, Epsilon, Gamma

    kw = {"zero_params": zero_params}
    rules = {
        "epsilon": lambda: Epsilon(epsilon=epsilon, **kw),
        "alpha1-beta0": lambda: AlphaBeta(alpha=1.0, beta=0.0, **kw),
        "alpha2-beta1": lambda: AlphaBeta(alpha=2.0, beta=1.0, **kw),
        "gamma": lambda: Gamma(gamma=0.25, **kw),
    }
    return rules[rule]()


def make_composite(bn_pairs: list[tuple[str, str]], rule: str = "epsilon", epsilon: float = 0.1,
                   zero_bias: bool = False):
    """A zennit composite applying ``rule`` to every Linear/Conv layer, with a canonizer that merges
    each BatchNorm into the Conv/Linear before it (``bn_pairs``, module paths; residual sums are
    explicit ``Sum`` modules in the twin already). ``epsilon-plus-flat`` is zennit's recipe: flat on
    the first layer, z+ on convolutions, epsilon on dense layers."""
    from zennit.composites import EpsilonPlusFlat, LayerMapComposite, layer_map_base
    from zennit.types import Convolution, Linear

    from core.attribution.canonizers import GraphMergeBatchNorm

    zero_params = "bias" if zero_bias else None
    canonizers = [GraphMergeBatchNorm(bn_pairs)]
    if rule == "epsilon-plus-flat":
        return EpsilonPlusFlat(epsilon=epsilon, stabilizer=1e-9, zero_params=zero_params, canonizers=canonizers)
    layer_rule = _layer_rule(rule, epsilon, zero_params)
    return LayerMapComposite(layer_map_base(stabilizer=1e-9) + [(Convolution, layer_rule), (Linear, layer_rule)],
                             canonizers=canonizers)


def unit_relevance(tensor_relevance: torch.Tensor) -> torch.Tensor:
    """Relevance per unit: a Linear unit as is, a Conv channel summed over its spatial positions."""
    return tensor_relevance.flatten(2).sum(-1) if tensor_relevance.dim() > 2 else tensor_relevance


@dataclass
class RelevanceResult:
    """LRP of a batch: input heatmaps (N,C,H,W), per-layer unit relevance (N, units), logits, targets."""

    input: torch.Tensor
    layers: dict[str, torch.Tensor]
    logits: torch.Tensor
    targets: torch.Tensor

    @property
    def heatmaps(self) -> torch.Tensor:
        """Input relevance summed over colour channels: (N, H, W)."""
        return self.input.sum(1)


class RelevanceAnalyzer:
    """LRP for one model on a private twin. ``layers`` are module paths whose *output* units are read;
    a name ending in ``:input`` reads that module's input instead. The twin is made for the images'
    shape (``input_shape``, or the first batch's when not given)."""

    def __init__(self, model: nn.Module, rule: str = "epsilon", epsilon: float = 0.1, zero_bias: bool = False,
                 input_shape: tuple[int, ...] | None = None):
        if rule not in RULES:
            raise UserError(f"Unknown LRP rule '{rule}'; choose one of {', '.join(RULES)}.")
        self.rule, self.epsilon, self.zero_bias = rule, epsilon, zero_bias
        self.model = model
        self.graph: ModelGraph | None = None
        self.twin: nn.Module | None = None
        self.bn_pairs: list[tuple[str, str]] = []
        if input_shape is not None:
            self.prepare(input_shape)

    def prepare(self, input_shape) -> "RelevanceAnalyzer":
        """Trace the model for images of ``input_shape`` and make the twin (once)."""
        if self.graph is None or self.graph.input_shape != tuple(input_shape):
            self.graph = graph_of(self.model, input_shape)
            from core.attribution.canonizers import lrp_twin

            self.twin, self.bn_pairs = lrp_twin(self.model, self.graph)
        return self

    @property
    def default_layer(self) -> str:
        """The classifier's input (:meth:`core.models.graph.ModelGraph.default_layer`)."""
        if self.graph is None:
            raise UserError("The analyzer does not know the input shape yet; call prepare(input_shape) first.")
        return self.graph.default_layer()

    def check_layers(self, layers: list[str]) -> list[str]:
        if self.graph is None:
            raise UserError("The analyzer does not know the input shape yet; call prepare(input_shape) first.")
        for name in layers:
            self.graph.tensor(name)
        return list(layers)

    def relevance(self, images: torch.Tensor, target: str | int | torch.Tensor = "pred",
                  labels: torch.Tensor | None = None, layers: list[str] | None = None,
                  batch_size: int = 256, input_heatmaps: bool = True) -> RelevanceResult:
        """LRP started at ``target``: "pred" (the model's prediction), "true" (``labels``), a class
        index, or a tensor of per-image classes. ``input_heatmaps=False`` stops the backward pass at
        the analysed layers (much faster; ``.input`` is then empty)."""
        self.prepare(tuple(images.shape[1:]))
        layers = self.check_layers(layers if layers is not None else [self.default_layer])
        parts = [self._batch(images[i:i + batch_size], self._targets_for(target, labels, i, batch_size), layers,
                             input_heatmaps) for i in range(0, len(images), batch_size)]
        return RelevanceResult(
            input=torch.cat([p.input for p in parts]),
            layers={name: torch.cat([p.layers[name] for p in parts]) for name in layers},
            logits=torch.cat([p.logits for p in parts]), targets=torch.cat([p.targets for p in parts]))

    def _targets_for(self, target, labels, start: int, size: int):
        if isinstance(target, torch.Tensor):
            return target[start:start + size]
        if target == "true":
            if labels is None:
                raise UserError("Target 'true' needs the images' labels.")
            return labels[start:start + size]
        return target

    def _batch(self, images: torch.Tensor, target, layers: list[str], input_heatmaps: bool) -> RelevanceResult:
        device = next(self.twin.parameters()).device
        x = images.to(device).clone().requires_grad_(True)
        captured: dict[str, torch.Tensor] = {}
        handles = [self._tap(name, captured) for name in layers]
        composite = make_composite(self.bn_pairs, self.rule, self.epsilon, self.zero_bias)
        try:
            with GATE.run(), composite.context(self.twin) as model:
                logits, targets, start = self._forward(model, x, target)
                tensors = [captured[name] for name in layers] + ([x] if input_heatmaps else [])
                grads = torch.autograd.grad(logits, tensors, grad_outputs=start, allow_unused=True)
        finally:
            for handle in handles:
                handle.remove()
        layer_rel = {name: unit_relevance(g if g is not None else torch.zeros_like(captured[name])).detach().cpu()
                     for name, g in zip(layers, grads)}
        heatmap = grads[-1].detach().cpu() if input_heatmaps else torch.empty(0)
        return RelevanceResult(input=heatmap, layers=layer_rel,
                               logits=logits.detach().cpu(), targets=targets.cpu())

    def _forward(self, model: nn.Module, x: torch.Tensor, target):
        """Logits, target classes, and the starting relevance R_out = f_c(x) at the target class c."""
        logits = model(x)
        targets = self._resolve_targets(target, logits)
        rows = torch.arange(len(x))
        start = torch.zeros_like(logits)
        start[rows, targets] = logits[rows, targets].detach()
        return logits, targets, start

    def _resolve_targets(self, target, logits: torch.Tensor) -> torch.Tensor:
        n, classes = logits.shape
        if isinstance(target, str):
            if target != "pred":
                raise UserError(f"Unknown target '{target}'; use 'pred', 'true' or a class index.")
            return logits.argmax(1)
        t = torch.as_tensor(target, device=logits.device).long().expand(n) if not isinstance(target, torch.Tensor) \
            else target.to(logits.device).long()
        if ((t < 0) | (t >= classes)).any():
            raise UserError(f"Class {int(t[(t < 0) | (t >= classes)][0])} is out of range; the model has {classes} classes (0-{classes - 1}).")
        return t

    def _tap(self, name: str, captured: dict):
        """Register a hook storing the tensor whose gradient (= relevance) we read."""
        module_name, _, where = name.partition(":")
        module = self.twin.get_submodule(module_name)
        if where == "input":
            def pre_hook(mod, inputs):
                captured[name] = inputs[0]
            return module.register_forward_pre_hook(pre_hook)

        def hook(mod, inputs, output):
            captured[name] = output
        return module.register_forward_hook(hook)

    # ------------------------------------------------------------------ relevance flowing between layers
    def flow(self, images: torch.Tensor, target, lower: str, upper: str, upper_units: list[int],
             lower_units: list[int]) -> torch.Tensor:
        """Mean relevance flowing from each selected ``upper`` unit j to each selected ``lower`` unit i:
        LRP restarted from R_j alone (all other upper units zeroed) and read at ``lower``.
        Returns a (len(lower_units), len(upper_units)) tensor."""
        self.prepare(tuple(images.shape[1:]))
        self.check_layers([lower, upper])
        device = next(self.twin.parameters()).device
        x = images.to(device).clone().requires_grad_(True)
        captured: dict[str, torch.Tensor] = {}
        handles = [self._tap(lower, captured), self._tap(upper, captured)]
        composite = make_composite(self.bn_pairs, self.rule, self.epsilon, self.zero_bias)
        flows = torch.zeros(len(lower_units), len(upper_units))
        try:
            with GATE.run(), composite.context(self.twin) as model:
                logits, targets, start = self._forward(model, x, target)
                up, low = captured[upper], captured[lower]
                r_upper = torch.autograd.grad(logits, up, grad_outputs=start, retain_graph=True)[0]
                for col, j in enumerate(upper_units):
                    seed = torch.zeros_like(r_upper)
                    seed[:, j] = r_upper[:, j]
                    r_lower = torch.autograd.grad(up, low, grad_outputs=seed, retain_graph=True)[0]
                    flows[:, col] = unit_relevance(r_lower)[:, lower_units].mean(0).cpu()
        finally:
            for handle in handles:
                handle.remove()
        return flows
