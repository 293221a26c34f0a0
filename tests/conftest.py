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
    from core.models import load_checkpoint, shipped_checkpoint

    return load_checkpoint(shipped_checkpoint("digits", "cnn"))


@pytest.fixture(scope="session")
def digits_split():
    from core.data import load_split, split_heldout

    return split_heldout(load_split("digits", "test"), 100, seed=0)


@pytest.fixture(scope="session")
def mnist_model():
    from core.models import load_checkpoint, shipped_checkpoint

    return load_checkpoint(shipped_checkpoint("mnist", "cnn"))


@pytest.fixture(scope="session")
def mnist_split(shared_data):
    from core.data import load_split, split_heldout

    return split_heldout(load_split("mnist", "test", str(shared_data)), 100, seed=0)


@pytest.fixture(scope="module")
def bench_threads():
    """The benchmark's thread choice (1 on a busy machine: two threads fighting over shared cores
    run many times slower), restored afterwards for the other test modules."""
    from core.bench import choose_threads

    before = torch.get_num_threads()
    torch.set_num_threads(choose_threads())
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def cifar_model():
    from core.models import load_checkpoint, shipped_checkpoint

    return load_checkpoint(shipped_checkpoint("cifar10", "vgg11_slim"))


@pytest.fixture(scope="session")
def cifar_split(shared_data):
    """The seed-0 split of the real CIFAR-10 test split (the first load decodes its JPEGs, ~10 s)."""
    from core.data import load_split, split_heldout

    if not (shared_data / "cifar10-jpeg.tar.gz").is_file():
        pytest.skip(f"real CIFAR-10 tarball not found at {shared_data}")
    return split_heldout(load_split("cifar10", "test", str(shared_data)), 100, seed=0)
