"""LRP through zennit: conservation per layer, heatmaps that point at the digit, and a model left untouched."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import UserError
from core.models import build_model
from core.relevance import RULES, RelevanceAnalyzer

SHAPES = {"mlp": (1, 8, 8), "cnn": (1, 28, 28), "allcnn": (1, 28, 28), "vgg11": (3, 32, 32), "resnet18": (3, 32, 32)}


def _bias_free_model(arch: str) -> nn.Module:
    """A model with every bias and BatchNorm shift zeroed but non-trivial BatchNorm scales, so
    canonizers have real work to do and relevance must be conserved exactly."""
    model = build_model(arch, 10, SHAPES[arch], seed=1)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.zero_()
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))
                module.running_mean.zero_()
    return model


def _analysed_layers(model: nn.Module) -> list[str]:
    names = [n for n, _ in model.named_children()]
    return [n for n in names[:-1] if not n.startswith(("pool", "gap"))]


@pytest.mark.parametrize("arch", list(SHAPES))
def test_relevance_is_conserved_at_every_layer(arch):
    model = _bias_free_model(arch)
    analyzer = RelevanceAnalyzer(model, rule="epsilon", epsilon=1e-9, zero_bias=True)
    layers = _analysed_layers(model)
    x = torch.randn(3, *SHAPES[arch], generator=torch.Generator().manual_seed(0))
    result = analyzer.relevance(x, target="pred", layers=layers)
    logit = result.logits[torch.arange(3), result.targets]
    assert (logit.abs() > 1e-4).all()
    for name in layers:
        total = result.layers[name].sum(1)
        assert torch.allclose(total, logit, rtol=1e-3, atol=1e-6), (arch, name, total, logit)
    assert torch.allclose(result.input.flatten(1).sum(1), logit, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("arch", ["cnn", "resnet18"])
def test_lrp_never_changes_the_model(arch):
    model = build_model(arch, 10, SHAPES[arch], seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, *SHAPES[arch])
    expected = model(x)
    for rule in RULES:
        RelevanceAnalyzer(model, rule=rule).relevance(x, target=3, layers=_analysed_layers(model)[-1:])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())
    assert torch.allclose(model(x), expected)


def test_heatmap_relevance_lies_on_the_digit(digits_model, digits_split):
    """On real digits the positive relevance sits where the ink is, not on the empty border."""
    model, _ = digits_model
    pool, _ = digits_split
    images = pool.forget_images(0).images
    result = RelevanceAnalyzer(model).relevance(images, target="true", labels=torch.zeros(len(images), dtype=torch.long))
    ink = images[:, 0] > images.mean()
    positive = result.heatmaps.clamp_min(0)
    share_on_ink = (positive * ink).sum() / positive.sum()
    assert share_on_ink > ink.float().mean() + 0.1


def test_unit_relevance_differs_between_classes(digits_model, digits_split):
    model, _ = digits_model
    pool, _ = digits_split
    analyzer = RelevanceAnalyzer(model)
    r3 = analyzer.relevance(pool.forget_images(3).images, "pred").layers[analyzer.default_layer].mean(0)
    r7 = analyzer.relevance(pool.forget_images(7).images, "pred").layers[analyzer.default_layer].mean(0)
    assert set(r3.topk(10).indices.tolist()) != set(r7.topk(10).indices.tolist())


def test_bad_rule_layer_and_class_are_user_errors(digits_model):
    model, _ = digits_model
    with pytest.raises(UserError, match="rule"):
        RelevanceAnalyzer(model, rule="nope")
    analyzer = RelevanceAnalyzer(model)
    with pytest.raises(UserError, match="no layer"):
        analyzer.relevance(torch.zeros(1, 1, 8, 8), layers=["missing"])
    with pytest.raises(UserError, match="out of range"):
        analyzer.relevance(torch.zeros(1, 1, 8, 8), target=12)
