"""Second-choice relabelling: the ridge identity, and what it does to the real CIFAR-10 and MNIST models."""
from __future__ import annotations


import pytest
import torch

from core.errors import UserError
from core.metrics.evaluate import softmax_entropy
from core.models.checkpoints import state_checksum
from core.models.compute import predict_logits
from core.unlearning.config import default_config
from core.unlearning.pipeline import unlearn
from core.unlearning.relabel import choose_strength, fit_logit_shift, second_choices


def test_logit_shift_is_the_ridge_solution_and_leaves_untargeted_classes():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(300, 20, generator=g, dtype=torch.float64)
    targets = torch.zeros(300, 4, dtype=torch.float64)
    targets[:60, 2] = 1.0                       # rows 0..59 learn class 2; class 0 is never a target
    h[:60] += 1.5
    weight, bias = fit_logit_shift(h, targets, shrinkage=0.0)
    design = torch.cat([h, torch.ones(300, 1, dtype=torch.float64)], 1)
    exact = torch.linalg.lstsq(design, targets).solution     # ordinary least squares with intercept
    assert torch.allclose(weight.T, exact[:-1], atol=1e-8) and torch.allclose(bias, exact[-1], atol=1e-8)
    assert weight[0].abs().max() == 0 and bias[0] == 0       # no target, no change
    fitted = h @ weight.T + bias
    assert fitted[:60, 2].mean() > 0.5 > fitted[60:, 2].abs().mean()


def test_logit_shift_with_more_dimensions_than_rows_is_the_same_ridge_solution():
    """The rows'-space solve (a classifier reading a large flattened map) equals the direct one."""
    g = torch.Generator().manual_seed(1)
    h = torch.randn(40, 300, generator=g, dtype=torch.float64)
    targets = torch.randn(40, 5, generator=g, dtype=torch.float64)
    weight, bias = fit_logit_shift(h, targets, shrinkage=0.2)
    hc, t = h - h.mean(0), targets - targets.mean(0)
    cov = hc.T @ hc / 40
    s = 0.8 * cov + 0.2 * cov.diagonal().mean() * torch.eye(300, dtype=torch.float64)
    direct = torch.linalg.solve(s, hc.T @ t / 40).T
    assert torch.allclose(weight, direct, atol=1e-8)
    assert torch.allclose(bias, targets.mean(0) - direct @ h.mean(0), atol=1e-8)


def test_weighted_logit_shift_is_the_fit_with_rows_repeated():
    """A row of weight 3 counts as that row three times (the repair weighs its forget rows so)."""
    g = torch.Generator().manual_seed(2)
    for dims in (8, 60):                                  # the direct solve and the rows'-space one
        h = torch.randn(30, dims, generator=g, dtype=torch.float64)
        targets = torch.randn(30, 4, generator=g, dtype=torch.float64)
        weights = torch.ones(30, dtype=torch.float64)
        weights[:5] = 3.0
        repeated = torch.cat([h, h[:5], h[:5]]), torch.cat([targets, targets[:5], targets[:5]])
        for got, want in zip(fit_logit_shift(h, targets, 0.1, weights), fit_logit_shift(*repeated, 0.1)):
            assert torch.allclose(got, want, atol=1e-8)
        assert not torch.allclose(fit_logit_shift(h, targets, 0.1)[0], fit_logit_shift(h, targets, 0.1, weights)[0])


def test_strength_stops_at_the_retain_budget():
    labels = torch.tensor([0] * 10 + [1] * 30 + [2] * 30)
    base = torch.zeros(70, 3)
    base[10:40, 1], base[40:, 2] = 2.0, 2.0             # retain images right, forget images flat
    base[10:35, 1], base[10:35, 2] = 0.0, 3.0           # 25 retain images wrong, and sure of it
    shift = torch.zeros(70, 3)
    shift[:10, 1] = 1.0                                  # the forget images learn class 1 ...
    shift[35:40, 2] = 1.0                                # ... and 5 right answers would flip
    free = choose_strength(base.double(), shift.double(), labels, 0, budget=1.0, min_wrong=20)
    assert free.reason == "matched" and abs(free.forget_entropy - free.wrong_entropy) < 0.05
    tight = choose_strength(base.double(), shift.double(), labels, 0, budget=0.0, min_wrong=20)
    assert tight.reason == "retain budget" and 1.99 < tight.strength <= 2.0 < free.strength    # flips past 2
    skipped = choose_strength(base.double(), shift.double(), labels, 0, budget=1.0, min_wrong=26)
    assert skipped.strength == 0 and "25 wrong answers" in skipped.reason


def test_relabelling_makes_cifar_forget_images_as_sure_as_wrong_answers(cifar_model, cifar_split):
    model, _ = cifar_model
    pool, eval_set = cifar_split
    checksum = state_checksum(model)
    plain = unlearn(model, pool, 3, default_config().override({"relabel": None}))
    result = unlearn(model, pool, 3)
    assert state_checksum(model) == checksum
    assert result.erased_layers == plain.erased_layers and result.path.units == plain.path.units
    assert result.relabelling.strength > 0 and result.relabelling.reason in ("matched", "retain budget")
    assert set(result.model.state_dict()) == set(model.state_dict())

    cat = eval_set.labels == 3
    with torch.no_grad():
        before, after = predict_logits(plain.model, eval_set.images), predict_logits(result.model, eval_set.images)
    entropy_before, entropy_after = softmax_entropy(before[cat]).mean(), softmax_entropy(after[cat]).mean()
    assert entropy_before > 1.5 and entropy_after < entropy_before - 0.3      # uncertain (max 2.30) -> a confident answer
    second = second_choices(model, eval_set.images[cat], 3)
    # the default cuts the class's weights ("out"), so the forget images already get their second choice;
    # relabelling keeps that answer for most of them and makes it confident
    assert (before[cat].argmax(1) == second).float().mean() > 0.9
    assert (after[cat].argmax(1) == second).float().mean() > 0.8
    right = (after[~cat].argmax(1) == eval_set.labels[~cat]).float().mean()
    assert right >= (before[~cat].argmax(1) == eval_set.labels[~cat]).float().mean() - 0.01
    assert (after[cat].argmax(1) == 3).float().mean() <= (before[cat].argmax(1) == 3).float().mean() + 0.005


def test_relabelling_is_skipped_on_near_perfect_mnist(mnist_model, mnist_split):
    model, _ = mnist_model
    pool, _ = mnist_split
    result = unlearn(model, pool, 3)
    plain = unlearn(model, pool, 3, default_config().override({"relabel": None}))
    assert result.relabelling.strength == 0 and "wrong answers on the validation part" in result.relabelling.reason
    assert state_checksum(result.model) == state_checksum(plain.model)


def test_unknown_relabel_setting_is_one_clear_sentence():
    with pytest.raises(UserError, match="'relabel' takes none, default, or its settings one by one"):
        default_config().override({"relabel": "always"})
    with pytest.raises(UserError, match="relabel.budget must be a share in"):
        default_config().override({"relabel.budget": "1.5"})
