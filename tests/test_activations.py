"""Activations: one image set's tensors under the original model, reused by every edited copy,
and the batch size the CPU runs them in (real MNIST, the shipped cnn)."""
from __future__ import annotations

import pytest
import torch

from core.models import graph as graph_module
from core.models.checkpoints import clone_model
from core.models.compute import Activations, predict_logits
from core.models.graph import batch_for, graph_of
from core.unlearning.erase import choose_layers
from core.unlearning.explorer import edited_rows, row_edit_cache
from core.unlearning.perturb import PerturbationSpec, apply_edits, edit_cut, plan_edits
from core.unlearning.pipeline import unlearn


def test_cpu_batches_fit_a_cache_and_change_no_answer(mnist_model, mnist_split):
    model, _ = mnist_model
    pool, _ = mnist_split
    graph = graph_of(model, (1, 28, 28))
    assert graph.bytes_per_image() == 4 * 32 * 28 * 28          # conv1's map, the largest tensor
    assert graph.batch_size() == batch_for(4 * 32 * 28 * 28) == 128
    assert batch_for(1) == 2048 and batch_for(10 ** 9) == 16 and batch_for(100_352, "cuda") == 1024
    whole = predict_logits(model, pool.images, batch_size=len(pool))
    assert torch.allclose(predict_logits(model, pool.images), whole, atol=1e-5)


def _counting_probes(monkeypatch) -> list[int]:
    """Images each ModelGraph.run_probe call (a pass from the images) runs, recorded."""
    seen: list[int] = []
    real = graph_module.ModelGraph.run_probe

    def counted(self, model, images, names, batch_size=None):
        seen.append(len(images))
        return real(self, model, images, names, batch_size)

    monkeypatch.setattr(graph_module.ModelGraph, "run_probe", counted)
    return seen


def test_an_edited_copy_runs_only_from_its_first_changed_layer(mnist_model, mnist_split, monkeypatch):
    model, _ = mnist_model
    pool, _ = mnist_split
    graph = graph_of(model, (1, 28, 28))
    late, early = clone_model(model), clone_model(model)
    with torch.no_grad():
        late.get_submodule("fc2").weight[3] = 0.0                 # the classifier only
        early.get_submodule("conv2").weight.mul_(0.5)             # a convolution: everything after it changes
    expected = {name: (predict_logits(m, pool.images), graph.run_probe(m, pool.images, ["flatten"])[0])
                for name, m in (("original", model), ("late", late), ("early", early))}
    acts = Activations(model, pool)
    acts.prepare([graph.cut_at_module("conv2"), acts.classifier_cut()])
    passes = _counting_probes(monkeypatch)
    for name, variant in (("original", model), ("late", late), ("early", early)):
        logits, features, unchanged = acts.forward(variant)
        assert torch.allclose(logits, expected[name][0], atol=1e-4), name
        hidden = acts.features(variant)
        assert unchanged == (name != "early") and hidden.dtype == torch.float64 and hidden.shape == (len(pool), 512)
    assert passes == []                                  # no copy went through conv1 again
    assert torch.allclose(acts.logits(), expected["original"][0], atol=1e-5)


def test_the_default_runs_each_pool_image_through_the_model_once(mnist_model, mnist_split, monkeypatch):
    """Calibration, erasure, relabelling and repair read one pass over each part of the pool: every
    later stage runs only the layers its model changed."""
    model, _ = mnist_model
    pool, _ = mnist_split
    unlearn(model, pool, 4)                              # traced graphs and first imports out of the way
    passes = _counting_probes(monkeypatch)
    result = unlearn(model, pool, 4)
    assert result.erased_layers and result.repairing is not None
    assert sum(passes) == len(pool)                      # the validation part once, the fit part once


def test_the_repair_reads_the_erasure_s_last_trial_on_the_validation_part(mnist_model, mnist_split, monkeypatch):
    """Each part of the pool goes through the erased convolution once under the original model and
    once under the erased one: the validation part in the erasure's last trial, whose classifier
    inputs the repair then reads, and the fit part in the repair."""
    model, _ = mnist_model
    pool, _ = mnist_split
    unlearn(model, pool, 4)
    graph = graph_of(model, (1, 28, 28))
    conv2 = graph.position[graph.first_call("conv2").name]
    through: list[int] = []                                   # images run through conv2 from a cut
    segment, tail = graph_module.ModelGraph.run_segment, graph_module.ModelGraph.run_tail

    def counted_segment(self, model_, live, start, stop, batch_size=None):
        if start != stop and start.position <= conv2 < stop.position:
            through.append(len(live[0]))
        return segment(self, model_, live, start, stop, batch_size)

    def counted_tail(self, model_, live, cut, batch_size=None):
        if cut.position <= conv2:
            through.append(len(live[0]))
        return tail(self, model_, live, cut, batch_size)

    monkeypatch.setattr(graph_module.ModelGraph, "run_segment", counted_segment)
    monkeypatch.setattr(graph_module.ModelGraph, "run_tail", counted_tail)
    result = unlearn(model, pool, 4)
    assert result.erased_layers == ["fc1", "conv2"] and result.repairing is not None
    assert sum(through) == 2 * len(pool)


class _ViewNet(torch.nn.Module):
    """A convolution whose output is reshaped with ``view``, which a channels-last tensor refuses."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 28 * 28, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


def test_convolutions_run_channels_last_where_the_model_allows_it(mnist_model, mnist_split):
    """The shipped cnn's compiled parts keep convolution outputs channels-last and give the model's
    own answers; a model that ``view``s a convolution's output keeps the usual layout and runs too."""
    model, _ = mnist_model
    pool, _ = mnist_split
    graph = graph_of(model, (1, 28, 28))
    assert graph.channels_last
    (pooled,) = graph.run_probe(model, pool.images, ["pool1"])
    assert pooled.is_contiguous(memory_format=torch.channels_last) and not pooled.is_contiguous()
    with torch.no_grad():
        plain = model(pool.images)
    assert torch.allclose(Activations(model, pool).logits(), plain, atol=1e-4)
    assert (Activations(model, pool).logits().argmax(1) == plain.argmax(1)).all()

    viewer = _ViewNet().eval()
    with pytest.raises(RuntimeError, match="view"):          # what the layout check guards against
        torch.relu(viewer.conv(pool.images[:2])).contiguous(memory_format=torch.channels_last).view(2, -1)
    other = graph_of(viewer, (1, 28, 28))
    assert not other.channels_last
    with torch.no_grad():
        expected = viewer(pool.images)
    assert torch.allclose(Activations(viewer, pool).logits(), expected, atol=1e-5)


def test_a_row_cache_read_from_activations_answers_the_same_and_leaves_them_unchanged(mnist_model, mnist_split):
    """A row cache over fc1 takes fc1's output from the image set's Activations (run once, kept
    there for the next path) instead of running fc1 itself: the same logits, and its in-place row
    updates never reach the tensors the Activations hold for everyone else."""
    model, _ = mnist_model
    pool, _ = mnist_split
    spec = PerturbationSpec(target="in")
    edits = plan_edits(model, {"relu3": [3, 7, 11, 40]}, 2, spec, (1, 28, 28))
    acts = Activations(model, pool)
    cache = acts.at(edit_cut(acts.graph, edits))
    shared, alone = row_edit_cache(model, cache, edits, acts), row_edit_cache(model, cache, edits)
    assert shared is not None and alone is not None
    held = acts.at(shared.cut).activations[shared.slot]
    before = held.clone()
    variant = apply_edits(model, edits, spec)
    rows = edited_rows(edits, shared.layer)
    assert torch.allclose(shared.recomputed_logits(variant, rows), alone.recomputed_logits(variant, rows), atol=1e-5)
    assert torch.allclose(shared.recomputed_logits(variant, rows), predict_logits(variant, pool.images), atol=1e-4)
    assert torch.equal(held, before) and acts.at(shared.cut).activations[shared.slot] is held


def test_the_erased_model_shares_no_tensor_with_the_model_it_was_erased_from(mnist_model, mnist_split):
    """Erasure tries each layer on a copy of that layer alone, but the model it returns is a copy of
    its own: editing it leaves the input (and the original) as they were."""
    model, _ = mnist_model
    pool, _ = mnist_split
    fit, val = pool.validation_split(0.5, 0)
    variant = clone_model(model)
    layers, erased = choose_layers(variant, fit, val, 3, 2, fit_acts=Activations(model, fit),
                                   val_acts=Activations(model, val))
    assert layers[0] == "fc1"
    mine = {t.data_ptr() for t in erased.state_dict().values()}
    assert not mine & {t.data_ptr() for m in (variant, model) for t in m.state_dict().values()}
    assert not torch.equal(erased.fc1.weight, variant.fc1.weight) and torch.equal(erased.conv1.weight, variant.conv1.weight)


def test_a_copy_that_changes_only_the_classifier_reads_the_inputs_of_the_one_before(mnist_model, mnist_split,
                                                                                   monkeypatch):
    """``forward_each`` (the erase button's measurement): after an erased model, a relabelled or
    repaired copy of it, whose classifier alone differs, runs no layer before its classifier again."""
    model, _ = mnist_model
    pool, _ = mnist_split
    erased, repaired = clone_model(model), None
    with torch.no_grad():
        erased.get_submodule("conv2").weight.mul_(0.9)
        repaired = clone_model(erased)
        repaired.get_submodule("fc2").bias.add_(0.5)
    acts = Activations(model, pool)
    acts.prepare([acts.graph.cut_at_module("conv2"), acts.classifier_cut()])
    segments: list[int] = []
    real = graph_module.ModelGraph.run_segment

    def counted(self, m, live, start, stop, batch_size=None):
        segments.append(start.position)
        return real(self, m, live, start, stop, batch_size)

    monkeypatch.setattr(graph_module.ModelGraph, "run_segment", counted)
    got = acts.forward_each({"original": model, "erased": erased, "repaired": repaired})
    assert len(segments) == 1                              # the erased model's layers from conv2, once
    for name, m in (("original", model), ("erased", erased), ("repaired", repaired)):
        assert torch.allclose(got[name][0], predict_logits(m, pool.images), atol=1e-4), name
    assert torch.equal(got["erased"][1], got["repaired"][1])
    assert [got[n][2] for n in ("original", "erased", "repaired")] == [True, False, False]


def test_a_row_cache_splits_off_the_classifier_where_only_an_activation_lies_between(mnist_model, mnist_split):
    """fc1 -> relu3 -> fc2: a copy's logits are the kept columns' part plus its edited rows' part,
    equal to running the copy; a copy whose classifier changed elsewhere runs the whole tail."""
    from dataclasses import replace

    from core.models.compute import ActivationCache

    model, _ = mnist_model
    _, eval_set = mnist_split
    images = eval_set.images[:2000]
    spec = PerturbationSpec(target="both")
    edits = plan_edits(model, {"relu3": list(range(0, 512, 3))}, 3, spec, (1, 28, 28))
    graph = graph_of(model, (1, 28, 28))
    rows = row_edit_cache(model, ActivationCache.build(model, graph, images, edit_cut(graph, edits)), edits)
    chain, classifier = rows.classifier_tail
    assert [node.target for node in chain] == ["relu3"] and classifier == "fc2"
    for method, strength in (("zero", 0.7), ("zero", 0.0), ("gaussian", 0.1)):
        variant = apply_edits(model, edits, replace(spec, method=method, strength=strength))
        logits = rows.tail_logits(model, variant, method, strength, spec.seed)
        assert torch.allclose(logits, predict_logits(variant, images), atol=1e-4), (method, strength)
    assert rows._kept is not None                                   # the split was taken
    changed = apply_edits(model, edits, replace(spec, strength=0.7))
    with torch.no_grad():
        changed.get_submodule("fc2").weight[:, 1] += 1.0           # unit 1 is not among the edited rows
    assert torch.allclose(rows.tail_logits(model, changed, "zero", 0.7, spec.seed), predict_logits(changed, images),
                          atol=1e-4)


def test_the_split_follows_a_functional_activation_and_stops_at_a_weighted_layer(lenet_mnist, mnist_model,
                                                                                  mnist_split):
    """LeNet's head.fc -> torch.relu -> out splits like the cnn; with a Linear layer put between fc1 and
    the classifier (identity weights: the same answers), every column the classifier reads can
    change, so there is no split and the whole tail runs."""
    from core.models.compute import ActivationCache

    _, eval_set = mnist_split
    images = eval_set.images[:1000]
    cnn, _ = mnist_model
    parts = dict(cnn.named_children())
    hidden = torch.nn.Linear(512, 512)
    with torch.no_grad():
        hidden.weight.copy_(torch.eye(512))
        hidden.bias.zero_()
    deeper = torch.nn.Sequential(*[parts[n] for n in ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten",
                                                      "fc1", "relu3")], hidden, torch.nn.ReLU(), parts["fc2"]).eval()
    for model, layer, split in ((lenet_mnist[0], "head.fc", ["relu"]), (deeper, "7", None)):
        graph = graph_of(model, (1, 28, 28))
        spec = PerturbationSpec(target="in", strength=0.8)
        edits = plan_edits(model, {layer: [0, 5, 9, 20]}, 3, spec, (1, 28, 28))
        rows = row_edit_cache(model, ActivationCache.build(model, graph, images, edit_cut(graph, edits)), edits)
        assert rows is not None and rows.layer == layer
        tail = rows.classifier_tail
        assert (None if tail is None else [getattr(node.target, "__name__", node.target) for node in tail[0]]) == split
        variant = apply_edits(model, edits, spec)
        assert torch.allclose(rows.tail_logits(model, variant, "zero", 0.8, spec.seed), predict_logits(variant, images),
                              atol=1e-4)
