"""Models a user brings from Python, made independently of core.models: the engine on any graph.

A nested LeNet with BatchNorm and a functional forward (trained briefly on an MNIST subset), and
torchvision's own ResNet-18 (its own ``forward``: pooling, ``torch.flatten``, ``fc``, residual sums,
trained briefly on digits).
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn
from tests.elsewhere import NestedLeNet, tv_resnet18, train_briefly

from core.errors import UserError
from core.metrics.evaluate import evaluate
from core.models.checkpoints import state_checksum
from core.models.graph import graph_of
from core.unlearning.config import UnlearnConfig
from core.unlearning.explorer import PerturbationExplorer
from core.unlearning.perturb import PerturbationSpec, perturb
from core.unlearning.pipeline import unlearn


@pytest.fixture(scope="module")
def resnet_digits():
    from core.data.catalog import load_split

    torch.manual_seed(0)
    return train_briefly(tv_resnet18(1), load_split("digits", "train"), epochs=4)


def _no_hooks(model: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())


def _forgets(model: nn.Module, pool, eval_set, forget_class: int):
    """Unlearn with the default: the class below 5 %, the others within 1 point, the source untouched."""
    checksum = state_checksum(model)
    before = evaluate(model, eval_set, forget_class)
    result = unlearn(model, pool, forget_class)
    after = evaluate(result.model, eval_set, forget_class)
    assert before.forget_acc > 0.8 and after.forget_acc < 0.05
    assert after.retain_acc >= before.retain_acc - 0.01
    assert state_checksum(model) == checksum and _no_hooks(model)
    return result


def test_nested_lenet_forgets_with_the_default(lenet_mnist, mnist_split):
    model, accuracy = lenet_mnist
    pool, eval_set = mnist_split
    assert accuracy > 0.95
    result = _forgets(model, pool, eval_set, 4)
    assert list(result.path.units) == ["out:input"]        # the classifier's input, found from the graph
    assert set(result.erased_layers) <= {"head.fc", "block.conv"}


def test_torchvision_resnet_forgets_and_its_residual_paths_are_silenced(resnet_digits, digits_split):
    model = resnet_digits
    pool, eval_set = digits_split
    result = _forgets(model, pool, eval_set, 4)
    assert all(layer.startswith("layer") for layer in result.erased_layers)   # erased inside the residual blocks

    units = [3, 17, 200]           # silencing fc's input units edits every branch of the last residual sums
    variant = perturb(model, {"fc:input": units}, 4, PerturbationSpec(target="in"), (1, 8, 8))
    graph = graph_of(model, (1, 8, 8))
    (features,) = graph.run_probe(variant, eval_set.images[:32], ["flatten"])
    (original,) = graph.run_probe(model, eval_set.images[:32], ["flatten"])
    assert torch.count_nonzero(features[:, units]) == 0 and torch.count_nonzero(original[:, units]) > 0

    explorer = PerturbationExplorer(model, result.path, eval_set, replace(result.config.perturbation, target="in"))
    assert len(explorer.cache.cut.live) == 2          # a cut inside the residual stage: the skip is cached too
    for strength in (0.4, 1.0):
        cached, variant = explorer.evaluate(strength=strength)
        assert cached.per_class == evaluate(variant, eval_set, 4).per_class


def test_a_model_that_does_not_fit_is_one_sentence(digits_split):
    pool, _ = digits_split
    with pytest.raises(UserError, match="gives 5 class scores but the dataset has 10 classes"):
        unlearn(NestedLeNet(1, 8, classes=5).eval(), pool, 1)
    with pytest.raises(UserError, match="does not accept inputs of shape 1 x 8 x 8"):
        unlearn(NestedLeNet(1, 28).eval(), pool, 1)

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            if x.sum() > 0:            # data-dependent control flow: not traceable
                return self.fc(x.flatten(1))
            return -self.fc(x.flatten(1))

    with pytest.raises(UserError, match="could not be traced.*torch.export.save"):
        unlearn(Branchy().eval(), pool, 1, UnlearnConfig())


def test_feature_capture_on_one_shared_model_from_many_threads(digits_model, digits_split):
    """The representation probe reads the classifier's input off the traced graph, not through a
    hook on the model: threads sharing one cached model each get their own images' features."""
    import threading

    from core.metrics.probes import forward_with_features

    model, _ = digits_model
    _, eval_set = digits_split
    parts = [eval_set.images[i * 40:(i + 1) * 40] for i in range(6)]
    alone = [forward_with_features(model, part) for part in parts]
    results, barrier = {}, threading.Barrier(len(parts))

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(5):
            results.setdefault(i, []).append(forward_with_features(model, parts[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, runs in results.items():
        assert all(torch.equal(r.features, alone[i].features) and torch.equal(r.logits, alone[i].logits) for r in runs)
    assert _no_hooks(model)
