"""LRP through zennit: conservation per layer, heatmaps that point at the digit, and a model left untouched."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from tests.elsewhere import NestedLeNet, tv_mobilenet_v3_small, tv_resnet18

from core.attribution.relevance import RULES, RelevanceAnalyzer
from core.errors import UserError
from core.models.graph import graph_of
from core.models.registry import build_model


SHAPES = {"mlp": (1, 8, 8), "cnn": (1, 28, 28), "allcnn": (1, 28, 28), "vgg11": (3, 32, 32), "resnet18": (3, 32, 32)}


def _bias_free_model(arch: str) -> nn.Module:
    """A model with every bias and BatchNorm shift zeroed but non-trivial BatchNorm scales, so
    canonizers have real work to do and relevance must be conserved exactly."""
    return _zero_shifts(build_model(arch, 10, SHAPES[arch], seed=1))


def _analysed_layers(model: nn.Module, shape) -> list[str]:
    """Every analysable tensor and the input of every Conv/Linear after the first that all of the
    relevance passes through (the one live tensor of a cut; inside a residual block the skip
    connection carries the rest)."""
    graph = graph_of(model, shape)
    names = graph.analysable_layers() + [f"{name}:input" for name in graph.weighted()[1:]]
    alone = [n for n in names if graph.cut_after(graph.tensor(n)).live == (graph.tensor(n).name,)]
    return list(dict.fromkeys(alone))


def _zero_shifts(model: nn.Module, scale: float = 0.5) -> nn.Module:
    """Every bias and BatchNorm shift zeroed, BatchNorm scales (``scale`` + U(0, 1)) and variances
    non-trivial."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.zero_()
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(scale + torch.rand(module.weight.shape, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))
                module.running_mean.zero_()
    return model.eval()


def _assert_conserved(model: nn.Module, shape) -> None:
    analyzer = RelevanceAnalyzer(model, rule="epsilon", epsilon=1e-9, zero_bias=True)
    layers = _analysed_layers(model, shape)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0))
    result = analyzer.relevance(x, target="pred", layers=layers)
    logit = result.logits[torch.arange(3), result.targets]
    assert (logit.abs() > 1e-4).all()
    for name in layers:
        total = result.layers[name].sum(1)
        assert torch.allclose(total, logit, rtol=1e-3, atol=1e-6), (name, total, logit)
    assert torch.allclose(result.input.flatten(1).sum(1), logit, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("arch", list(SHAPES))
def test_relevance_is_conserved_at_every_layer(arch):
    _assert_conserved(_bias_free_model(arch), SHAPES[arch])


def _unit_scale_linears(model: nn.Module) -> nn.Module:
    """Linear weights ~ N(0, 1/fan_in) (torchvision's MobileNet starts them at 0.01, which with zero
    biases leaves logits near 1e-10, too small to test conservation on)."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / module.in_features ** 0.5)
    return model


def _onnx_lenet(tmp_path) -> nn.Module:
    """The bias-free LeNet through ONNX (legacy exporter) and back: a GraphModule from onnx2torch."""
    from core.models.formats.onnx_graph import load_onnx

    torch.manual_seed(0)
    model = _zero_shifts(NestedLeNet(1, 28))
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(tmp_path / "lenet.onnx"), dynamo=False)
    return load_onnx(tmp_path / "lenet.onnx")


@pytest.mark.parametrize("make, shape", [
    (lambda tmp: _zero_shifts(NestedLeNet(1, 28)), (1, 28, 28)),
    (lambda tmp: _zero_shifts(tv_resnet18(3)), (3, 32, 32)),
    (lambda tmp: _zero_shifts(_unit_scale_linears(tv_mobilenet_v3_small(3)), scale=3.0), (3, 32, 32)),
    (_onnx_lenet, (1, 28, 28)),
], ids=["nested-lenet", "tv-resnet18", "tv-mobilenet-v3-small", "onnx-graphmodule"])
def test_relevance_is_conserved_on_models_made_elsewhere(make, shape, tmp_path):
    """A functional forward with BatchNorm (merged from the graph), torchvision's own ResNet forward
    (residual sums as zennit's Sum), MobileNetV3 (hardswish and squeeze-excitation gates with the
    Pass rule) and a GraphModule converted from ONNX: every tensor that all of the relevance passes
    through totals the logit."""
    torch.manual_seed(0)
    _assert_conserved(make(tmp_path), shape)


def test_a_layer_without_an_lrp_rule_is_named():
    class WithNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm, self.fc = nn.Conv2d(1, 4, 3), nn.LayerNorm([4, 6, 6]), nn.Linear(144, 3)

        def forward(self, x):
            return self.fc(torch.flatten(self.norm(self.conv(x)), 1))

    with pytest.raises(UserError, match="Layer 'norm' is a LayerNorm"):
        RelevanceAnalyzer(WithNorm().eval()).relevance(torch.randn(2, 1, 8, 8))

    class WithSoftmax(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(64, 8), nn.Linear(8, 3)

        def forward(self, x):
            return self.fc2(torch.softmax(self.fc1(x.flatten(1)), 1))

    with pytest.raises(UserError, match="no rule for the operation 'softmax'"):
        RelevanceAnalyzer(WithSoftmax().eval()).relevance(torch.randn(2, 1, 8, 8))


@pytest.mark.parametrize("arch", ["cnn", "resnet18"])
def test_lrp_never_changes_the_model(arch):
    model = build_model(arch, 10, SHAPES[arch], seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, *SHAPES[arch])
    expected = model(x)
    for rule in RULES:
        RelevanceAnalyzer(model, rule=rule).relevance(x, target=3, layers=_analysed_layers(model, SHAPES[arch])[-1:])
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
