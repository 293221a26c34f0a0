"""Shared fixtures: real data (scikit-learn digits, ../shared/data) and the shipped checkpoints."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch


ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
torch.set_num_threads(max(1, os.cpu_count() or 1))


def require_shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared_data()


@pytest.fixture(scope="session")
def digits_model():
    from core.models.checkpoints import load_checkpoint, shipped_checkpoint

    return load_checkpoint(shipped_checkpoint("digits", "cnn"))


@pytest.fixture(scope="session")
def digits_split():
    from core.data.catalog import load_split
    from core.data.sets import split_heldout

    return split_heldout(load_split("digits", "test"), 100, seed=0)


@pytest.fixture(scope="session")
def mnist_model():
    from core.models.checkpoints import load_checkpoint, shipped_checkpoint

    return load_checkpoint(shipped_checkpoint("mnist", "cnn"))


@pytest.fixture(scope="session")
def mnist_split(shared_data):
    from core.data.catalog import load_split
    from core.data.sets import split_heldout

    return split_heldout(load_split("mnist", "test", str(shared_data)), 100, seed=0)


@pytest.fixture(scope="module")
def bench_threads():
    """The benchmark's thread choice (1 on a busy machine: two threads fighting over shared cores
    run many times slower), restored afterwards for the other test modules."""
    from core.bench.machine import choose_threads

    before = torch.get_num_threads()
    torch.set_num_threads(choose_threads())
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def cifar_model():
    from core.models.checkpoints import load_checkpoint, shipped_checkpoint

    return load_checkpoint(shipped_checkpoint("cifar10", "vgg11_slim"))


@pytest.fixture(scope="session")
def cifar_split(shared_data):
    """The seed-0 split of the real CIFAR-10 test split (the first load decodes its JPEGs, ~10 s)."""
    from core.data.catalog import load_split
    from core.data.sets import split_heldout

    if not (shared_data / "cifar10-jpeg.tar.gz").is_file():
        pytest.skip(f"real CIFAR-10 tarball not found at {shared_data}")
    return split_heldout(load_split("cifar10", "test", str(shared_data)), 100, seed=0)


@pytest.fixture(scope="session")
def lenet_mnist(shared_data):
    """A nested LeNet with BatchNorm and a functional forward (tests/elsewhere.py, not core.models),
    trained for 2 epochs on a seeded 12,000-image subset of MNIST's training split (seconds):
    (model in eval mode, its test accuracy)."""
    from core.data.catalog import load_split
    from tests.elsewhere import NestedLeNet, train_briefly

    train = load_split("mnist", "train", str(shared_data))
    train = train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:12000])
    model = train_briefly(NestedLeNet(1, 28), train, epochs=2)
    test = load_split("mnist", "test", str(shared_data))
    with torch.no_grad():
        accuracy = float((model(test.images).argmax(1) == test.labels).float().mean())
    return model, accuracy


@pytest.fixture(scope="session")
def lenet_files(lenet_mnist, tmp_path_factory):
    """The trained LeNet as a user brings it: ONNX from both exporters, a .pt2, and the refused
    kinds (TorchScript, a pickled whole model). No model card: the CLI is told --dataset mnist."""
    import warnings

    model, _ = lenet_mnist
    folder = tmp_path_factory.mktemp("lenet")
    x = torch.zeros(2, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(folder / "legacy.onnx"), dynamo=False, input_names=["image"],
                          dynamic_axes={"image": {0: "batch"}})
        torch.onnx.export(model, (x,), str(folder / "dynamo.onnx"), dynamo=True, dynamic_shapes=({0: batch},))
        torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: batch},)), str(folder / "exported.pt2"))
        torch.jit.trace(model, x).save(str(folder / "scripted.pt"))
    torch.save(model, folder / "pickled.pt")
    return {"legacy": folder / "legacy.onnx", "dynamo": folder / "dynamo.onnx", "pt2": folder / "exported.pt2",
            "torchscript": folder / "scripted.pt", "pickled": folder / "pickled.pt"}
