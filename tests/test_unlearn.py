"""The pipeline on real data: selection as the authors do it, zero-shot by construction, and real forgetting."""
from __future__ import annotations

import pytest
import torch

from core.attribution.paths import find_path, select_by_frequency, topk_counts
from core.attribution.relevance import RelevanceAnalyzer
from core.data.catalog import load_split
from core.errors import UserError
from core.metrics.evaluate import evaluate
from core.models.checkpoints import state_checksum
from core.unlearning.config import PAPER_CONFIG, default_config
from core.unlearning.pipeline import unlearn


def test_frequency_selection_counts_topk_per_image():
    relevance = torch.tensor([[5.0, 4.0, 0.0, -1.0],
                              [0.0, 4.0, 3.0, -1.0],
                              [1.0, 9.0, 0.5, 2.0]])
    assert topk_counts(relevance, 2).tolist() == [1.0, 3.0, 1.0, 1.0]
    sel = select_by_frequency("x", relevance, k=2, h=3)
    assert sel.units[0] == 1 and set(sel.units) <= {0, 1, 2, 3} and len(sel.units) == 3
    assert sel.frequency[0] == 1.0
    with pytest.raises(UserError, match="out of range"):
        select_by_frequency("x", relevance, k=5, h=2)


def test_unlearning_only_accepts_the_analysis_pool(digits_model):
    model, _ = digits_model
    train = load_split("digits", "train")
    with pytest.raises(TypeError, match="AnalysisPool"):
        unlearn(model, train, 3)
    test = load_split("digits", "test")
    with pytest.raises(TypeError, match="AnalysisPool"):
        unlearn(model, test, 3)


def test_pool_and_evaluation_set_are_disjoint_heldout(digits_split):
    pool, eval_set = digits_split
    assert pool.split == "test" and eval_set.split == "test"
    assert not set(pool.indices.tolist()) & set(eval_set.indices.tolist())


@pytest.mark.parametrize("config, forget_max", [(PAPER_CONFIG, 0.75), (default_config(), 0.10)], ids=["paper", "default"])
def test_mnist_forget_class_drops_retain_holds(mnist_model, mnist_split, config, forget_max):
    """The authors' recipe lowers the forget class; the project's default removes it."""
    model, _ = mnist_model
    pool, eval_set = mnist_split
    checksum = state_checksum(model)
    before = evaluate(model, eval_set, 3)
    result = unlearn(model, pool, 3, config)
    after = evaluate(result.model, eval_set, 3)
    assert state_checksum(model) == checksum
    assert before.forget_acc > 0.98
    assert after.forget_acc < forget_max
    assert after.retain_acc > before.retain_acc - 0.01


def test_multi_layer_path_with_edges(mnist_model, mnist_split):
    model, _ = mnist_model
    pool, _ = mnist_split
    analyzer = RelevanceAnalyzer(model)
    path = find_path(analyzer, pool, 3, layers=["relu3", "relu2"], k=0.2, h=0.2, edge_units=4)
    assert list(path.selections) == ["relu2", "relu3"]          # input side first
    assert path.selections["relu2"].width == 64 and path.selections["relu3"].width == 512
    assert len(path.edges) == 16
    assert any(abs(e["flow"]) > 0 for e in path.edges)


def test_class_out_of_range_and_empty_pool(digits_model, digits_split):
    model, _ = digits_model
    pool, _ = digits_split
    with pytest.raises(UserError, match="out of range"):
        unlearn(model, pool, 10)
    no_threes = pool.subset(pool.labels != 3)
    with pytest.raises(UserError, match="no images of class 3"):
        unlearn(model, no_threes, 3)


def test_remembered_activations_give_the_same_unlearning_and_are_reused(mnist_model, mnist_split, monkeypatch):
    """The dashboard passes its remembered validation activations (and LRP): the result is the same
    model, and a second setting (another K) builds no validation activations again."""
    from core.models.compute import ActivationCache
    from core.ui.speed import MemoActivations, MemoAnalyzer

    model, _ = mnist_model
    pool, _ = mnist_split
    config = default_config().override({"erasure": None, "relabel": None})
    plain = unlearn(model, pool, 4, config)
    memo, analyzer = MemoActivations(model), MemoAnalyzer(model, config.lrp.rule)
    remembered = unlearn(model, pool, 4, config, analyzer=analyzer, activations=memo)
    assert state_checksum(remembered.model) == state_checksum(plain.model)
    assert remembered.path.units == plain.path.units
    builds = []
    real = ActivationCache.build.__func__
    monkeypatch.setattr(ActivationCache, "build", classmethod(lambda cls, *a, **k: builds.append(1) or real(cls, *a, **k)))
    other_k = config.override({"selection.k": config.selection.k * 2})
    again = unlearn(model, pool, 4, other_k, analyzer=analyzer, activations=memo)
    assert builds == []                          # the validation part's activations came from the memo
    assert state_checksum(again.model) == state_checksum(unlearn(model, pool, 4, other_k).model)
    assert builds                                # and without the memo they are built


def test_a_stubborn_validation_image_does_not_stop_the_calibration_short(mnist_model, shared_data):
    """Choice seed 2, class 0 (section 2 of BENCHMARKS.md): one of the 50 validation forget images
    stays recognised at every share. Counting alone took the smallest share at that count (0.2) and
    let 4.5 % of 200 held-back forget images through; the forget class's mean probability on the
    validation images tells the shares apart, and the calibration goes on to a share that forgets them."""
    from core.data.sets import split_heldout

    model, _ = mnist_model
    pool, _ = split_heldout(load_split("mnist", "test", str(shared_data)), 300, 2)
    seen, held = pool.validation_split(200 / 300, 1002)           # as benchmarks.choose_settings --held-back 200
    result = unlearn(model, seen, 0, default_config().override({"seed": 2}))
    settings = result.path.settings
    assert settings["validation_forget_acc"] > 0 and settings["h_share"] > 0.2
    assert 0 < settings["validation_forget_probability"] < 0.5
    assert evaluate(result.model, held, 0).forget_acc < 0.03        # the bound for any run
