"""Retain repair: what it does to a damaged real MNIST model, and that it leaves the forget class alone."""
from __future__ import annotations

import pytest
import torch

from core.errors import UserError
from core.metrics.evaluate import evaluate, worst_class_drop
from core.models.checkpoints import state_checksum
from core.models.compute import predict_logits
from core.models.graph import graph_of
from core.unlearning.config import OURS_CONFIG, PAPER_CONFIG, default_config
from core.unlearning.pipeline import unlearn
from core.unlearning.repair import Repair, repair


def test_repair_brings_the_other_classes_back_and_keeps_the_class_forgotten(mnist_model, mnist_split):
    """Half of the classifier-input units silenced for class 6 (no calibration) costs the other
    classes; the repair, fitted on the pool alone, gives most of it back on the evaluation set."""
    model, _ = mnist_model
    pool, eval_set = mnist_split
    before = evaluate(model, eval_set, 6)
    damage = default_config().override({"calibration": None, "selection.h": 0.5, "perturbation.target": "both",
                                        "erasure": None, "relabel": None, "repair": None})
    damaged = unlearn(model, pool, 6, damage).model
    fit, val = pool.validation_split(damage.validation_fraction, damage.seed)
    checksums = state_checksum(model), state_checksum(damaged)
    done, repaired = repair(damaged, model, fit, val, 6)
    assert (state_checksum(model), state_checksum(damaged)) == checksums        # inputs untouched
    hurt, healed = evaluate(damaged, eval_set, 6), evaluate(repaired, eval_set, 6)
    assert before.retain_acc - hurt.retain_acc > 0.003                           # there is damage to repair
    assert done.strength > 0 and done.retain_after >= done.retain_before
    assert before.retain_acc - healed.retain_acc < (before.retain_acc - hurt.retain_acc) / 2
    assert worst_class_drop(before, healed) < worst_class_drop(before, hurt)
    assert healed.forget_acc <= hurt.forget_acc + 0.005                           # still forgotten
    forget = pool.labels == 6                                                   # no pool image of the class let through
    recognised = [int((predict_logits(m, pool.images[forget]).argmax(1) == 6).sum()) for m in (damaged, repaired)]
    assert recognised[1] <= recognised[0]
    classifier = graph_of(model, (1, 28, 28)).classifier()
    old, new = damaged.get_submodule(classifier), repaired.get_submodule(classifier)
    assert torch.equal(old.weight[6], new.weight[6]) and torch.equal(old.bias[6], new.bias[6])


def test_nothing_to_repair_changes_nothing(mnist_model, mnist_split):
    model, _ = mnist_model
    pool, _ = mnist_split
    fit, val = pool.validation_split(0.5, 0)
    done, same = repair(model, model, fit, val, 3)
    assert done.strength == 0 and done.retain_after == done.retain_before and done.worst_class_before == 0
    assert state_checksum(same) == state_checksum(model)


def test_the_default_repairs_and_the_authors_recipe_does_not():
    assert OURS_CONFIG.repair == Repair() and PAPER_CONFIG.repair is None
    assert OURS_CONFIG.override({"repair": None}).repair is None
    assert OURS_CONFIG.override({"repair.shrinkage": "0.3"}).repair.shrinkage == 0.3
    for bad in ("0", "-1", "inf", "many"):
        with pytest.raises(UserError, match="forget_weight"):
            OURS_CONFIG.override({"repair.forget_weight": bad})
