"""Activations: one image set's tensors under the original model, reused by every edited copy,
and the batch size the CPU runs them in (real MNIST, the shipped cnn)."""
from __future__ import annotations

import torch

from core.models import graph as graph_module
from core.models.checkpoints import clone_model
from core.models.compute import Activations, predict_logits
from core.models.graph import batch_for, graph_of
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
