"""Perturbation: the source is never changed, BatchNorm channels are really silenced, strength is
monotone, and the activation cache gives exactly the full model's answer."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import UserError
from core.metrics.evaluate import evaluate
from core.models.checkpoints import state_checksum
from core.models.graph import graph_of
from core.models.registry import build_model
from core.attribution.paths import Selection
from core.unlearning.config import UnlearnConfig, default_config
from core.unlearning.explorer import PerturbationExplorer
from core.unlearning.perturb import PerturbationSpec, edit_cut, perturb, plan_edits
from core.unlearning.pipeline import unlearn


def test_perturb_returns_new_model_and_leaves_source(digits_model):
    model, _ = digits_model
    checksum = state_checksum(model)
    for method in ("zero", "gaussian", "laplace"):
        variant = perturb(model, {"relu3": [0, 5, 9]}, 3, PerturbationSpec(method=method), (1, 8, 8))
        assert variant is not model
        assert state_checksum(variant) != checksum
    assert state_checksum(model) == checksum


def test_zero_in_silences_units_and_out_cuts_forget_row_only(digits_model, digits_split):
    model, _ = digits_model
    _, eval_set = digits_split
    units = [1, 4, 7]
    variant = perturb(model, {"relu3": units}, 3, PerturbationSpec(target="in"), (1, 8, 8))
    hidden = variant[:-1](eval_set.images)
    assert torch.count_nonzero(hidden[:, units]) == 0
    out = perturb(model, {"relu3": units}, 3, PerturbationSpec(target="out"), (1, 8, 8))
    w, w0 = out.fc2.weight, model.fc2.weight
    assert torch.count_nonzero(w[3, units]) == 0
    others = [c for c in range(10) if c != 3]
    assert torch.equal(w[others], w0[others])


def test_batchnorm_channels_are_really_silenced():
    model = build_model("allcnn", 10, (1, 28, 28), seed=0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.fill_(0.7)     # a BN shift that a zeroed filter alone would leave behind
    x = torch.randn(4, 1, 28, 28)
    channels = [0, 3]
    variant = perturb(model, {"relu4": channels}, 0, PerturbationSpec(target="in"), (1, 28, 28))
    acts = variant[: [n for n, _ in variant.named_children()].index("relu4") + 1](x)
    assert torch.count_nonzero(acts[:, channels]) == 0
    kept = perturb(model, {"relu4": channels}, 0, PerturbationSpec(target="in", keep_bias=True), (1, 28, 28))
    acts = kept[: [n for n, _ in kept.named_children()].index("relu4") + 1](x)
    assert torch.count_nonzero(acts[:, channels]) > 0   # the authors' recipe leaves the BN shift


def test_strength_scales_the_effect(digits_model, digits_split):
    model, _ = digits_model
    pool, eval_set = digits_split
    result = unlearn(model, pool, 3, UnlearnConfig(selection=Selection(k=40, h=60)))
    explorer = PerturbationExplorer(model, result.path, eval_set, result.config.perturbation)
    forget = [explorer.evaluate(strength=s)[0].forget_acc for s in (0.0, 0.5, 1.0)]
    assert forget[0] == evaluate(model, eval_set, 3).forget_acc
    assert forget[2] <= forget[1] <= forget[0]
    assert forget[2] < forget[0] - 0.3


def test_cache_equals_full_evaluation(mnist_model, mnist_split):
    model, _ = mnist_model
    pool, eval_set = mnist_split
    result = unlearn(model, pool, 3, default_config().override({"calibration.targets": "both"}))
    explorer = PerturbationExplorer(model, result.path, eval_set, result.config.perturbation)
    assert explorer.cache.cut.position > 1 and explorer.reuse["skipped"] > 0
    assert explorer.rows_cache is not None          # fc1's rows change: its output is cached too
    for method, strength in (("zero", 0.3), ("zero", 1.0), ("gaussian", 0.05), ("laplace", 0.02)):
        cached, variant = explorer.evaluate(strength=strength, method=method)
        full = evaluate(variant, eval_set, 3)
        assert cached.per_class == full.per_class, (method, strength)
    cached, variant = explorer.evaluate(strength=0.5, target="out")   # other rows: the plain cache
    assert cached.per_class == evaluate(variant, eval_set, 3).per_class


def test_noise_is_seeded(digits_model):
    model, _ = digits_model
    a = perturb(model, {"relu3": [2, 3]}, 1, PerturbationSpec(method="gaussian", seed=5), (1, 8, 8))
    b = perturb(model, {"relu3": [2, 3]}, 1, PerturbationSpec(method="gaussian", seed=5), (1, 8, 8))
    c = perturb(model, {"relu3": [2, 3]}, 1, PerturbationSpec(method="gaussian", seed=6), (1, 8, 8))
    assert state_checksum(a) == state_checksum(b) != state_checksum(c)


def test_edit_cut_and_bad_specs(digits_model):
    model, _ = digits_model
    edits = plan_edits(model, {"relu3": [0]}, 0, PerturbationSpec(target="out"), (1, 8, 8))
    graph = graph_of(model, (1, 8, 8))
    assert edit_cut(graph, edits) == graph.cut_at_module("fc2") and graph.cut_at_module("fc2").live == ("relu3",)
    with pytest.raises(UserError, match="Strength"):
        PerturbationSpec(strength=1.5)
    with pytest.raises(UserError, match="method"):
        PerturbationSpec(method="melt")
    with pytest.raises(UserError, match="has no layer 'nowhere'"):
        plan_edits(model, {"nowhere": [0]}, 0, PerturbationSpec(), (1, 8, 8))


def test_flatten_units_map_to_their_conv_channel(mnist_model, mnist_split):
    """Units of the cnn's Flatten stage are conv2 positions: 49 units of channel 5 silence channel 5 only."""
    model, _ = mnist_model
    _, eval_set = mnist_split
    variant = perturb(model, {"flatten": list(range(5 * 49, 6 * 49))}, 3, PerturbationSpec(target="in"), (1, 28, 28))
    head = [n for n, _ in model.named_children()].index("relu2") + 1
    x = eval_set.images[:16]
    before, after = model[:head](x), variant[:head](x)
    assert torch.count_nonzero(before[:, 5]) > 0 and torch.count_nonzero(after[:, 5]) == 0
    others = [c for c in range(64) if c != 5]
    assert torch.equal(before[:, others], after[:, others])
