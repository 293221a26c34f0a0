"""Tests for core.data: real digits/MNIST/CIFAR-10 plus small generated stand-ins in the real layouts."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import data
from core.data import loaders, locate
from core.data.catalog import dataset_available, dataset_info, load_split
from core.data.sets import AnalysisPool, ImageSet, split_heldout
from core.errors import UserError


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_mnist = pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(),
                                 reason=f"real MNIST not found at {SHARED / 'MNIST' / 'raw'}")
needs_cifar10 = pytest.mark.skipif(not (SHARED / "cifar10-jpeg.tar.gz").is_file(),
                                   reason=f"real CIFAR-10 tarball not found at {SHARED}")


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Tests never download: the download hook records the attempt and reports failure."""
    calls: list[str] = []
    monkeypatch.setattr(loaders, "_download", lambda cls, root: calls.append(cls.__name__) or False)
    monkeypatch.delenv("UNLEARN_DATA_DIR", raising=False)
    return calls


@pytest.fixture
def tmp_cache(monkeypatch, tmp_path) -> Path:
    """A private cache folder for stand-in datasets."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("UNLEARN_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def digits_test() -> ImageSet:
    return load_split("digits", "test")


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Names, sizes and mtimes of everything under folder (to prove a source was not written to)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def unnormalise(s: ImageSet) -> torch.Tensor:
    mean = torch.tensor(s.info.mean).view(1, -1, 1, 1)
    std = torch.tensor(s.info.std).view(1, -1, 1, 1)
    return s.images * std + mean


# --------------------------------------------------------------------------- digits and names


def test_digits_shapes_labels_normalisation():
    train, test = load_split("digits", "train"), load_split("digits", "test")
    assert train.images.shape == (1257, 1, 8, 8) and test.images.shape == (540, 1, 8, 8)
    assert train.images.dtype == torch.float32 and test.labels.dtype == torch.int64
    assert test.labels.bincount().tolist() == [54, 55, 53, 55, 54, 55, 54, 54, 52, 54]
    assert abs(train.images.mean().item()) < 0.01 and abs(train.images.std().item() - 1) < 0.01
    pixels16 = unnormalise(test) * 16
    assert torch.allclose(pixels16, pixels16.round(), atol=1e-3) and pixels16.min() > -1e-3
    assert pixels16.max() < 16 + 1e-3
    assert torch.equal(test.indices, torch.arange(540)) and test.split == "test"
    assert load_split("digits", "test") is test  # in-process cache returns the same object
    info = dataset_info("digits")
    assert info == test.info and info.num_classes == 10 and info.input_shape == (1, 8, 8)
    assert info.classes == tuple("0123456789")


def test_unknown_dataset_and_split_are_user_errors():
    with pytest.raises(UserError, match="Unknown dataset"):
        dataset_info("imagenet-9000")
    with pytest.raises(UserError, match="Unknown split"):
        load_split("digits", "validation")
    assert dataset_available("digits") == (True, "")
    ok, why = dataset_available("nope")
    assert not ok and "Unknown dataset" in why


def test_builtin_info_is_cheap_and_complete():
    assert dataset_info("cifar100").num_classes == 100
    assert dataset_info("cifar10").input_shape == (3, 32, 32)
    assert dataset_info("fashion_mnist").classes[0] == "T-shirt/top"
    assert set(data.DATASETS) == {"digits", "mnist", "fashion_mnist", "cifar10", "cifar100"}


# --------------------------------------------------------------------------- ImageSet helpers


def test_the_layouts_known_without_torchvision_are_torchvision_s():
    """Looking for MNIST and CIFAR files and naming Fashion-MNIST's classes does not import
    torchvision; the file lists and names written out for that are torchvision's own."""
    from torchvision.datasets import CIFAR10, CIFAR100, MNIST, FashionMNIST

    from core.data.info import FASHION_MNIST_CLASSES
    from core.data.torchvision_sets import CIFAR_CLASSES, MNIST_CLASSES

    for key, cls in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        assert locate._CIFAR_FILES[key] == (cls.base_folder, [f for f, _ in cls.train_list + cls.test_list]
                                             + [cls.meta["filename"]])
        assert issubclass(CIFAR_CLASSES[key], cls) and CIFAR_CLASSES[key].key == key
    assert {k: c.__name__ for k, c in MNIST_CLASSES.items()} == locate._MNIST_FOLDERS
    assert issubclass(MNIST_CLASSES["mnist"], MNIST)
    assert FASHION_MNIST_CLASSES == tuple(FashionMNIST.classes)


def test_imageset_subset_batches_sample(digits_test):
    mask = digits_test.labels == 7
    by_mask, by_list = digits_test.subset(mask), digits_test.subset(mask.nonzero().flatten().tolist())
    assert torch.equal(by_mask.indices, by_list.indices) and (by_mask.labels == 7).all()
    assert len(digits_test.subset([])) == 0
    assert torch.equal(digits_test.of_class(7).indices, by_mask.indices)
    assert len(digits_test.without_class(7)) == len(digits_test) - len(by_mask)
    got = list(digits_test.batches(100))
    assert [len(y) for _, y in got] == [100] * 5 + [40]
    assert torch.equal(torch.cat([x for x, _ in got]), digits_test.images)
    s1, s2 = digits_test.sample(50, seed=1), digits_test.sample(50, seed=1)
    assert len(s1) == 50 and torch.equal(s1.indices, s2.indices)
    assert not torch.equal(s1.indices, digits_test.sample(50, seed=2).indices)
    assert len(digits_test.sample(10_000, seed=0)) == len(digits_test)
    with pytest.raises(UserError, match="out of range"):
        digits_test.of_class(10)


# --------------------------------------------------------------------------- held-out split


def test_split_heldout_disjoint_covering_and_seeded(digits_test):
    pool, evaluation = split_heldout(digits_test, pool_per_class=20, seed=0)
    assert type(pool) is AnalysisPool and type(evaluation) is ImageSet
    p, e = set(pool.indices.tolist()), set(evaluation.indices.tolist())
    assert not p & e and p | e == set(range(len(digits_test)))
    assert pool.labels.bincount().tolist() == [20] * 10
    assert torch.equal(pool.images, digits_test.images[pool.indices])  # provenance is exact
    assert torch.equal(evaluation.labels, digits_test.labels[evaluation.indices])
    again, _ = split_heldout(digits_test, pool_per_class=20, seed=0)
    other, _ = split_heldout(digits_test, pool_per_class=20, seed=1)
    assert torch.equal(again.indices, pool.indices) and not torch.equal(other.indices, pool.indices)
    big, _ = split_heldout(digits_test, pool_per_class=100, seed=0)  # capped at half a class
    assert big.labels.bincount().tolist() == [n // 2 for n in digits_test.labels.bincount().tolist()]
    with pytest.raises(ValueError):
        split_heldout(load_split("digits", "train"))


def test_analysis_pool_only_from_test_split(digits_test):
    train = load_split("digits", "train")
    with pytest.raises(ValueError):
        AnalysisPool(images=train.images, labels=train.labels, info=train.info, split="train",
                     indices=train.indices)
    with pytest.raises(TypeError, match="only accepts an AnalysisPool"):
        data.require_analysis_pool(digits_test)
    pool, evaluation = split_heldout(digits_test, pool_per_class=10)
    assert data.require_analysis_pool(pool) is pool
    with pytest.raises(TypeError):
        data.require_analysis_pool(evaluation)
    assert type(pool.subset([0, 1])) is AnalysisPool and type(pool.sample(3, 0)) is AnalysisPool


def test_forget_images(digits_test):
    pool, _ = split_heldout(digits_test, pool_per_class=20, seed=0)
    forget = pool.forget_images(3)
    assert type(forget) is AnalysisPool and len(forget) == 20 and (forget.labels == 3).all()
    few = pool.forget_images(3, n=5, seed=4)
    assert len(few) == 5 and torch.equal(few.indices, pool.forget_images(3, n=5, seed=4).indices)
    for bad in (10, -1, 2.5):
        with pytest.raises(UserError, match="out of range"):
            pool.forget_images(bad)
    with pytest.raises(UserError, match="no images of class 3"):
        pool.without_class(3).forget_images(3)


def test_validation_split_disjoint_and_stratified(digits_test):
    pool, _ = split_heldout(digits_test, pool_per_class=20, seed=0)
    analysis, validation = pool.validation_split(0.3, seed=0)
    assert type(analysis) is AnalysisPool and type(validation) is AnalysisPool
    a, v = set(analysis.indices.tolist()), set(validation.indices.tolist())
    assert not a & v and a | v == set(pool.indices.tolist())
    assert validation.labels.bincount().tolist() == [6] * 10
    assert analysis.labels.bincount().tolist() == [14] * 10
    _, again = pool.validation_split(0.3, seed=0)
    _, other = pool.validation_split(0.3, seed=1)
    assert torch.equal(again.indices, validation.indices)
    assert not torch.equal(other.indices, validation.indices)
    with pytest.raises(UserError):
        pool.validation_split(1.0)


# --------------------------------------------------------------------------- MNIST (real) and Fashion-MNIST


@needs_mnist
def test_real_mnist_from_gz_leaves_source_untouched():
    raw = SHARED / "MNIST" / "raw"
    before = snapshot(SHARED)
    train, test = load_split("mnist", "train", str(SHARED)), load_split("mnist", "test", str(SHARED))
    assert snapshot(SHARED) == before  # decompressed into the cache, not next to the data
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert test.labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert train.labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                                5851, 5949]
    assert abs(train.images.mean().item()) < 0.01 and abs(train.images.std().item() - 1) < 0.01
    keyed = list((data.cache_dir() / "by-source").glob("MNIST-*/MNIST/raw"))   # keyed by folder and content
    assert any(all((k / f).is_file() for f in locate._MNIST_FILES) for k in keyed)
    assert any(p.suffix == ".gz" for p in raw.iterdir())
    assert dataset_available("mnist", str(SHARED)) == (True, "")


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    """Write a uint8 idx file (the format of MNIST's raw files)."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def make_fashion(root: Path, compress: bool = True) -> Path:
    """A tiny FashionMNIST/raw: image i is filled with value 8*i, label i % 10."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 30), ("t10k", 20)):
        images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None] * 8, 28 * 28).reshape(n, 28, 28)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, compress)
    return raw


def test_fashion_standin_gz_from_read_only_dir(tmp_path, tmp_cache):
    raw = make_fashion(tmp_path / "data")
    for folder in (raw, raw.parent, raw.parent.parent):
        folder.chmod(0o555)
    before = snapshot(tmp_path / "data")
    try:
        train = load_split("fashion_mnist", "train", str(tmp_path / "data"))
        test = load_split("fashion_mnist", "test", str(tmp_path / "data"))
    finally:
        for folder in (raw, raw.parent, raw.parent.parent):
            folder.chmod(0o755)
    assert snapshot(tmp_path / "data") == before
    assert train.images.shape == (30, 1, 28, 28) and len(test) == 20
    assert test.labels.tolist() == [i % 10 for i in range(20)]
    pixels = (unnormalise(test) * 255).round()
    assert pixels[:, 0, 0, 0].tolist() == [8.0 * i for i in range(20)]
    assert test.info.classes == dataset_info("fashion_mnist").classes
    assert len(list((tmp_cache / "by-source").glob("FashionMNIST-*/FashionMNIST/raw/t10k-images-idx3-ubyte"))) == 1


def test_fashion_standin_plain_files_read_in_place(tmp_path, tmp_cache):
    make_fashion(tmp_path / "data", compress=False)
    test = load_split("fashion_mnist", "test", str(tmp_path / "data"))
    assert len(test) == 20 and not (tmp_cache / "FashionMNIST").exists()


def test_an_idx_split_is_decoded_once_then_read_back_without_torchvision(tmp_path, tmp_cache, monkeypatch):
    """torchvision decodes a split's idx files once; later reads take the kept tensors (a fresh
    process then need not import torchvision), and files with other content are decoded afresh."""
    raw = make_fashion(tmp_path / "data", compress=False)
    load = loaders._load_mnist_like("fashion_mnist")          # the reader itself, under load_split's memo
    images, labels = load("test", tmp_path / "data", tmp_cache)
    assert len(list((tmp_cache / "idx-tensors").glob("FashionMNIST-*/test.pt"))) == 1
    real_tv = loaders._tv

    def no_torchvision():
        raise AssertionError("torchvision was asked to decode a split already kept")
    monkeypatch.setattr(loaders, "_tv", no_torchvision)
    kept_images, kept_labels = load("test", tmp_path / "data", tmp_cache)
    assert torch.equal(kept_images, images) and torch.equal(kept_labels, labels)
    relabelled = raw / "t10k-labels-idx1-ubyte"
    write_idx(relabelled, (np.arange(20) + 3) % 10, compress=False)
    os.utime(relabelled, ns=(relabelled.stat().st_atime_ns, relabelled.stat().st_mtime_ns + 10**9))
    with pytest.raises(UserError, match="already kept"):    # other content: not served the kept tensors
        load("test", tmp_path / "data", tmp_cache)
    monkeypatch.setattr(loaders, "_tv", real_tv)
    assert load("test", tmp_path / "data", tmp_cache)[1].tolist() == [(i + 3) % 10 for i in range(20)]


def test_missing_mnist_is_a_user_error(tmp_path, tmp_cache, no_downloads):
    empty = tmp_path / "empty"
    empty.mkdir()
    ok, why = dataset_available("mnist", str(empty))
    assert not ok and "MNIST was not found" in why and no_downloads == []
    with pytest.raises(UserError, match=r"MNIST was not found .*--data-dir"):
        load_split("mnist", "test", str(empty))
    assert no_downloads == ["MNIST"]  # the download was tried (and failed) before giving up


# --------------------------------------------------------------------------- CIFAR-100 stand-in


def make_cifar100(root: Path) -> None:
    """A tiny cifar-100-python: image i has R = i, G = 100, B = 200; fine label i % 100."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", 200), ("test", 100)):
        planes = [np.full((n, 1024), 100), np.full((n, 1024), 200)]
        rgb = np.concatenate([np.repeat(np.arange(n)[:, None], 1024, axis=1)] + planes, axis=1)
        batch = {"data": rgb.astype(np.uint8), "fine_labels": [i % 100 for i in range(n)],
                 "coarse_labels": [i % 20 for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"fine_label_names": list(dataset_info("cifar100").classes),
            "coarse_label_names": [f"c{i}" for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))


def test_cifar100_standin(tmp_path, tmp_cache):
    make_cifar100(tmp_path / "data")
    assert dataset_available("cifar100", str(tmp_path / "data")) == (True, "")
    train = load_split("cifar100", "train", str(tmp_path / "data"))
    test = load_split("cifar100", "test", str(tmp_path / "data"))
    assert train.images.shape == (200, 3, 32, 32) and len(test) == 100
    assert test.labels.tolist() == list(range(100)) and test.info.num_classes == 100
    pixels = (unnormalise(test) * 255).round()
    assert pixels[:, 0, 5, 5].tolist() == [float(i) for i in range(100)]
    assert (pixels[:, 1] == 100).all() and (pixels[:, 2] == 200).all()
    ok, why = dataset_available("cifar100", str(tmp_path))
    assert not ok and "cifar-100-python" in why


# --------------------------------------------------------------------------- image folders


def save_png(path: Path, size: tuple[int, int], color, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_imagefolder_standin(tmp_path, tmp_cache):
    root = tmp_path / "shapes"
    save_png(root / "train" / "cat" / "0.png", (12, 10), (255, 0, 0))  # first image: W=12, H=10
    save_png(root / "train" / "cat" / "1.png", (20, 20), (0, 255, 0))  # resized
    save_png(root / "train" / "dog" / "0.png", (12, 10), 128, mode="L")  # grayscale -> RGB
    save_png(root / "test" / "dog" / "0.png", (12, 10), (0, 0, 255))
    save_png(root / "test" / "cat" / "0.png", (12, 10), (0, 0, 0))
    name = f"imagefolder:{root}"
    info = dataset_info(name)
    assert info.classes == ("cat", "dog") and info.input_shape == (3, 10, 12)
    assert info.mean == (0.485, 0.456, 0.406)
    train, test = load_split(name, "train"), load_split(name, "test")
    assert train.images.shape == (3, 3, 10, 12) and train.labels.tolist() == [0, 0, 1]
    assert test.labels.tolist() == [0, 1]
    pixels = unnormalise(train)
    assert torch.allclose(pixels[0].mean((1, 2)), torch.tensor([1.0, 0.0, 0.0]), atol=1e-3)
    assert torch.allclose(pixels[1].mean((1, 2)), torch.tensor([0.0, 1.0, 0.0]), atol=1e-3)
    assert torch.allclose(pixels[2], torch.full((3, 10, 12), 128 / 255), atol=1e-3)
    assert len(list((tmp_cache / "imagefolder").glob("*.pt"))) == 2
    assert load_split(name, "test") is test


def test_imagefolder_without_split_folders_is_test_only(tmp_path, tmp_cache):
    root = tmp_path / "flat"
    save_png(root / "a" / "x.png", (8, 8), (10, 20, 30))
    save_png(root / "b" / "y.png", (8, 8), (30, 20, 10))
    assert len(load_split(f"imagefolder:{root}", "test")) == 2
    with pytest.raises(UserError, match="no train/ subfolder"):
        load_split(f"imagefolder:{root}", "train")
    ok, why = dataset_available(f"imagefolder:{tmp_path / 'missing'}")
    assert not ok and "does not exist" in why


def test_imagefolder_corrupt_image_names_the_file(tmp_path, tmp_cache):
    root = tmp_path / "broken"
    save_png(root / "test" / "a" / "good.png", (8, 8), (1, 2, 3))
    save_png(root / "test" / "b" / "good.png", (8, 8), (3, 2, 1))
    bad = root / "test" / "a" / "zz_broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(UserError, match="zz_broken.png"):
        load_split(f"imagefolder:{root}", "test")


# --------------------------------------------------------------------------- CIFAR-10


def test_cifar10_tarball_with_unsafe_member_is_refused(tmp_path, tmp_cache):
    (tmp_path / "data").mkdir()
    with tarfile.open(tmp_path / "data" / "cifar10-jpeg.tar.gz", "w:gz") as tf:
        entry = tarfile.TarInfo("../evil.txt")
        entry.size = 4
        tf.addfile(entry, io.BytesIO(b"evil"))
    with pytest.raises(UserError, match="unsafe entry"):
        load_split("cifar10", "test", str(tmp_path / "data"))
    assert not (tmp_cache / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


@needs_cifar10
def test_real_cifar10_jpeg_test_split():
    """First run extracts the tarball and decodes 10,000 JPEGs (~10 s); later runs read the .pt cache."""
    test = load_split("cifar10", "test", str(SHARED))
    assert test.images.shape == (10000, 3, 32, 32) and test.info.num_classes == 10
    assert test.labels.bincount().tolist() == [1000] * 10
    assert test.info.classes[0] == "airplane" and test.info.classes[-1] == "truck"
    assert test.images.mean((0, 2, 3)).abs().max() < 0.1  # mean/std match the data
    assert list((data.cache_dir() / "cifar10-jpeg").glob("*/test.pt"))          # keyed by the tarball's content
    assert dataset_available("cifar10", str(SHARED)) == (True, "")
    assert os.access(SHARED / "cifar10-jpeg.tar.gz", os.R_OK)
