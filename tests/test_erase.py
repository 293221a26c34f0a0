"""Class-direction erasure: the LEACE identity, exact folding into weights, and what it does inside MNIST and CIFAR-10 models."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from core.errors import UserError
from core.metrics.evaluate import evaluate, wrong_retain_answers
from core.metrics.probes import forward_with_features, representation_probe
from core.models.checkpoints import state_checksum
from core.models.compute import predict_logits
from core.models.graph import graph_of
from core.unlearning.config import default_config
from core.unlearning.erase import _rows, candidate_layers, fit_eraser, fold_eraser
from core.unlearning.pipeline import unlearn


@pytest.mark.parametrize("rows", [400, 40])    # primal solve, and fewer rows than dimensions (Woodbury)
def test_erased_rows_no_longer_covary_with_the_class(rows):
    g = torch.Generator().manual_seed(0)
    z = torch.arange(rows) % 5 == 0
    x = torch.randn(rows, 60, generator=g, dtype=torch.float64) + 2.0 * z[:, None] * torch.linspace(-1, 1, 60)
    eraser = fit_eraser(x, z, shrinkage=0.1)
    erased = x - torch.outer((x - eraser.mu) @ eraser.a, eraser.sigma)
    cov = (erased - erased.mean(0)).T @ (z.double() - z.double().mean()) / rows
    before = (x - x.mean(0)).T @ (z.double() - z.double().mean()) / rows
    assert cov.abs().max() < 1e-9 * before.abs().max() + 1e-12
    with pytest.raises(UserError, match="forget class and of other classes"):
        fit_eraser(x, torch.zeros(rows, dtype=torch.bool))


@pytest.mark.parametrize("stages", [
    [nn.Linear(12, 7)],
    [nn.Conv2d(3, 5, 3, padding=1)],
    [nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(5)],
    [nn.Conv2d(3, 5, 3, padding="same", dilation=2)],
])
def test_folded_layer_computes_the_layer_on_erased_inputs(stages):
    torch.manual_seed(0)
    model = nn.Sequential(*stages).eval()
    if len(stages) > 1:
        stages[1].running_mean.uniform_(-1, 1)
    layer = "0"
    x = torch.randn(6, 12) if isinstance(stages[0], nn.Linear) else torch.randn(6, 3, 8, 8)
    rows, labels = _rows(stages[0], x, torch.arange(6), 4, torch.Generator().manual_seed(1))
    eraser = fit_eraser(rows, labels % 2 == 0)
    keys = set(model.state_dict())
    reference = [p.detach().clone() for p in stages[0].parameters()]
    folded = copy.deepcopy(model)
    fold_eraser(folded, layer, eraser, "1" if len(stages) > 1 else None)
    assert set(folded.state_dict()) == keys            # a bias-free conv passes its shift to the BatchNorm
    weight, bias = reference[0].double().flatten(1), (reference[1].double() if len(reference) > 1 else 0)
    erased_rows = rows - torch.outer((rows - eraser.mu) @ eraser.a, eraser.sigma)
    expected = erased_rows @ weight.T + bias            # W r(x) + b for every sampled row
    if len(stages) > 1:                                 # through the BatchNorm: compare after it
        bn = stages[1]
        scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
        expected = (expected - bn.running_mean.double()) * scale + bn.bias.double()
    assert torch.allclose(_apply_rows(folded, rows), expected, atol=1e-4)


def _apply_rows(model: nn.Sequential, rows: torch.Tensor) -> torch.Tensor:
    """The folded first layer (and a following BatchNorm) applied to flattened rows."""
    layer = model[0]
    out = rows @ layer.weight.double().flatten(1).T + (layer.bias.double() if layer.bias is not None else 0)
    if len(model) > 1:
        bn = model[1]
        scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
        out = (out - bn.running_mean.double()) * scale + bn.bias.double()
    return out


def test_candidates_run_from_the_classifier_backwards(mnist_model):
    model, _ = mnist_model
    assert candidate_layers(graph_of(model, (1, 28, 28))) == ["fc1", "conv2"]   # conv1 reads the pixels: never one
    grouped = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, groups=4, padding=1),
                            nn.Conv2d(4, 4, 3, padding_mode="reflect", padding=1),
                            nn.Conv2d(4, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
    assert candidate_layers(graph_of(grouped, (4, 4, 4))) == ["3"]   # depthwise and reflect-padded convs cannot be folded
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2))
    assert candidate_layers(graph_of(mlp, (1, 8, 8))) == ["3"]   # the first Linear reads the pixels, the last is the classifier


def _probe_recalls(results, eval_set, forget_class: int) -> list[float]:
    """The representation probe's recall of ``forget_class`` on each unlearned model's features."""
    recalls = []
    for result in results:
        fwd = forward_with_features(result.model, eval_set.images)
        recalls.append(representation_probe(fwd.features.numpy(), eval_set.labels.numpy(), forget_class, 0).recall)
    return recalls


def test_erasure_goes_deep_only_where_the_validation_part_has_errors_to_price_it(mnist_model, mnist_split):
    """The MNIST cnn gets only a few validation retain images wrong, so erasure keeps to 2 layers;
    asking for no wrong answers opens the full depth."""
    model, _ = mnist_model
    pool, _ = mnist_split
    fit, val = pool.validation_split(0.5, 0)
    logits = predict_logits(model, val.images)
    wrong = wrong_retain_answers(logits, val.labels, 3)
    assert wrong == int(((logits.argmax(1) != val.labels) & (val.labels != 3)).sum()) < 20
    assert default_config().erasure.depth(logits, val, 3) == 2
    assert default_config().override({"erasure.min_wrong": wrong}).erasure.depth(logits, val, 3) == 6


def test_erasure_hides_the_class_inside_the_model(mnist_model, mnist_split):
    """On MNIST, the default with erasure leaves the penultimate features less able to single out the
    forgotten class than path silencing alone, forgets as well, and keeps the retain accuracy."""
    model, _ = mnist_model
    pool, eval_set = mnist_split
    before = state_checksum(model)
    silenced = unlearn(model, pool, 3, default_config().override({"erasure": None}))
    erased = unlearn(model, pool, 3, default_config())
    assert state_checksum(model) == before
    assert erased.erased_layers and erased.erased_layers[0] == "fc1"
    recalls = _probe_recalls((silenced, erased), eval_set, 3)
    assert recalls[1] < recalls[0] - 0.01
    base, after = evaluate(model, eval_set, 3), evaluate(erased.model, eval_set, 3)
    assert after.forget_acc <= 0.01
    assert base.retain_acc - after.retain_acc < 0.01
    assert erased.config.perturbation.target in ("out", "both")          # "auto" resolved on the validation part
    with pytest.raises(UserError, match="Unknown setting 'erase'"):
        default_config().override({"erase": "everything"})
    with pytest.raises(UserError, match="Calibration chooses H"):
        default_config().override({"selection.h": 0.1})


def test_cifar_erases_deeper_within_a_share_of_its_error(cifar_model, cifar_split):
    """On CIFAR-10 (airplane, seed 0), where the model is wrong on about a sixth of the retain images,
    the error-share budget lets erasure reach past fc1 and conv8 and hide the class from the probe
    better than the two deepest layers alone, with every airplane image still forgotten. (The units
    silenced completely, as the default does where no per-class budget holds calibration back.)"""
    model, _ = cifar_model
    pool, eval_set = cifar_split
    silenced = default_config().override({"calibration.class_budget": None})
    two = unlearn(model, pool, 0, silenced.override({"erasure.max_layers": 2, "erasure.error_share": 0.0}))
    deep = unlearn(model, pool, 0, silenced)
    assert len(deep.erased_layers) >= 4 and "conv1" not in deep.erased_layers
    assert deep.erased_layers[:2] == ["fc1", "conv8"]
    recalls = _probe_recalls((two, deep), eval_set, 0)
    assert recalls[1] < recalls[0] - 0.02
    base, after = evaluate(model, eval_set, 0), evaluate(deep.model, eval_set, 0)
    assert after.forget_acc == 0.0
    assert base.retain_acc - after.retain_acc < 0.03
