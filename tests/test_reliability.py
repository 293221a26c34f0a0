"""Nothing silently wrong, nothing lost: model cards checked where they enter, strict
JSON, caches keyed by their sources' content, output paths checked before any work, atomic
checkpoints with the umask's mode, and analysis pools that must come from held-out test data.

Each case runs in-process on real data (the shipped digits model, MNIST from ../shared/data) or
on small files in the real layouts; none runs an unlearning longer than a digits model takes.
"""
from __future__ import annotations

import copy
import dataclasses
import errno
import gzip
import io
import json
import os
import pickle
import shutil
import struct
import tarfile
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from core import strict_json
from core.data import catalog, loaders
from core.data.catalog import dataset_available, load_split
from core.data.sets import AnalysisPool, require_analysis_pool
from core.errors import UserError
from core.models.cards import ModelCard, parse_card, read_card
from core.models.checkpoints import load_checkpoint, save_checkpoint, shipped_checkpoint


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    monkeypatch.setattr(loaders, "_download", lambda cls, root: False)
    monkeypatch.delenv("UNLEARN_DATA_DIR", raising=False)


@pytest.fixture
def tmp_cache(monkeypatch, tmp_path) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("UNLEARN_CACHE_DIR", str(cache))
    return cache


def good_card() -> dict:
    return json.loads(shipped_checkpoint("digits", "cnn").with_suffix(".json").read_text())


def one_line_error(main_args: list[str], capsys) -> str:
    from core.cli import main

    assert main(main_args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


# --------------------------------------------------------------------------- model cards


@pytest.mark.parametrize("content, message", [
    (b"{not json", "is not valid JSON (line 1"),
    (b"[1, 2, 3]", "must be a JSON object with arch, dataset, classes, input_shape, mean, std; it is a list"),
    (b"\xff\xfe{\x00}\x00", "is not UTF-8 text"),
    ({"classes": 5}, "'classes' must be a list of 2 to 100000 class names"),
    ({"classes": ["only"]}, "'classes' must be a list of 2 to 100000 class names"),
    ({"input_shape": "1x8x8"}, "'input_shape' must be three whole numbers [C, H, W]"),
    ({"input_shape": [1, -8, 8]}, "'input_shape' must be three whole numbers"),
    ({"input_shape": [3, 100000, 100000]}, "C x H x W <= 16777216"),
    ({"input_shape": [1, 8.0, 8]}, "'input_shape' must be three whole numbers"),
    ({"mean": [0.1, 0.2]}, "'mean' must be a list of 1 finite numbers, one per input channel"),
    ({"std": [0.0]}, "'std' must be a list of 1 positive finite numbers"),
    (json.dumps({**good_card(), "std": "X"}).replace('"X"', "[1e400]").encode(),   # JSON's 1e400 reads as inf
     "'std' must be a list of 1 positive finite numbers"),
    (b'{"arch": "cnn", "dataset": "digits", "classes": ["0", "1"], "input_shape": [1, 8, 8], '
     b'"mean": [NaN], "std": [1]}', "NaN is not a JSON number"),
    ({"seed": 2 ** 70}, "'seed' must be a whole number from 0 to"),
    ({"per_class_accuracy": [0.5]}, "'per_class_accuracy' must be empty or 10 accuracies"),
    ({"arch": ""}, "'arch' must be a non-empty name"),
])
def test_bad_sidecar_card_is_one_sentence_naming_the_field(content, message, tmp_path, capsys, digits_model):
    """The same card reaches the library, the CLI (--model) and the dashboard's upload."""
    from core.ui.model_store import read_uploaded_checkpoint

    model, card = digits_model
    weights = save_checkpoint(model, card, tmp_path / "m.safetensors")
    if isinstance(content, dict):
        content = json.dumps({**good_card(), **content}).encode()
    weights.with_suffix(".json").write_bytes(content)
    with pytest.raises(UserError) as caught:
        read_card(weights)
    assert message in str(caught.value) and str(caught.value).startswith("The model card 'm.json'")
    err = one_line_error(["unlearn", "--dataset", "digits", "--model", str(weights), "--forget", "3"], capsys)
    assert message in err
    with pytest.raises(UserError, match="The model card"):
        read_uploaded_checkpoint(weights.read_bytes(), "m.safetensors", "cnn", "digits",
                                 extra_files={"m.json": content})


def test_embedded_card_is_checked_too(tmp_path, digits_model):
    from safetensors.torch import save_file

    model, _ = digits_model
    path = tmp_path / "bare.safetensors"
    save_file(dict(model.state_dict()), str(path), metadata={"model_card": '{"arch": "cnn", "classes": 5}'})
    with pytest.raises(UserError, match="The model card inside 'bare.safetensors' is missing dataset"):
        load_checkpoint(path)


def test_cards_are_strict_json_with_null_for_unmeasured(digits_model):
    _, card = digits_model
    nan = float("nan")
    odd = ModelCard(**{**card.__dict__, "per_class_accuracy": [nan] + card.per_class_accuracy[1:],
                       "test_accuracy": nan, "notes": {"forget_acc_after": nan, "list": [float("inf")]}})
    text = odd.to_json()
    data = strict_json.loads(text)                   # no NaN / Infinity literals
    assert data["per_class_accuracy"][0] is None and data["test_accuracy"] is None
    assert data["notes"] == {"forget_acc_after": None, "list": [None]}
    assert parse_card(text) == odd
    with pytest.raises(ValueError):
        strict_json.loads('{"a": NaN}')


def test_class_without_test_images_gives_null_not_nan(tmp_path, tmp_cache, capsys):
    """An image folder whose third class has training images but no test images: the trained
    model's card and the unlearn --json report are strict JSON, that class's accuracy null."""
    from core.cli import main

    root = tmp_path / "shapes"
    colours = {"a_red": (220, 30, 30), "b_green": (30, 220, 30), "c_blue": (30, 30, 220)}   # classes 0, 1, 2
    for i, (name, rgb) in enumerate(colours.items()):
        for j in range(12):
            shade = tuple(max(0, c - 6 * j) for c in rgb)
            save_png(root / "train" / name / f"{j}.png", (8, 8), shade)
            if name != "c_blue":
                save_png(root / "test" / name / f"{j}.png", (8, 8), shade)
    (root / "test" / "c_blue").mkdir(parents=True)
    out = tmp_path / "mlp.safetensors"
    dataset = f"imagefolder:{root}"
    assert main(["train", "--dataset", dataset, "--arch", "mlp", "--epochs", "3", "--out", str(out)]) == 0
    card = strict_json.loads(out.with_suffix(".json").read_text())
    assert card["per_class_accuracy"][2] is None and card["per_class_accuracy"][0] is not None
    capsys.readouterr()
    assert main(["unlearn", "--dataset", dataset, "--model", str(out), "--forget", "0", "--pool-per-class", "4",
                 "--json", "--relabel", "none", "--erase", "none"]) == 0
    report = strict_json.loads(capsys.readouterr().out)
    assert report["per_class_before"][2] is None and report["per_class_after"][2] is None
    assert report["per_class_before"][0] is not None


# --------------------------------------------------------------------------- data at the door


def save_png(path: Path, size: tuple[int, int], color) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (nothing to decode: PIL checks the size first)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("bomb_name", ["a/0_first.png", "b/9_later.png"])
def test_decompression_bomb_names_the_file(bomb_name, tmp_path, tmp_cache):
    root = tmp_path / "bomb"
    save_png(root / "a" / "1.png", (8, 8), (1, 2, 3))
    save_png(root / "b" / "1.png", (8, 8), (3, 2, 1))
    (root / bomb_name).write_bytes(png_header_only(14000, 14000))     # 196 megapixels
    with pytest.raises(UserError, match=rf"{Path(bomb_name).name} is too large to decode safely"):
        load_split(f"imagefolder:{root}", "test")


def test_one_class_image_folder_is_refused(tmp_path, tmp_cache):
    root = tmp_path / "one"
    save_png(root / "only" / "0.png", (8, 8), (1, 2, 3))
    with pytest.raises(UserError, match="needs at least 2 classes"):
        load_split(f"imagefolder:{root}", "test")
    ok, why = dataset_available(f"imagefolder:{root}")
    assert not ok and "at least 2 classes" in why


def test_cache_dir_that_is_a_file(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("UNLEARN_CACHE_DIR", str(blocker))
    with pytest.raises(UserError, match="set by UNLEARN_CACHE_DIR\\) is a file, not a folder"):
        load_split("mnist", "test", str(tmp_path))
    ok, why = dataset_available("mnist", str(tmp_path))
    assert not ok and "UNLEARN_CACHE_DIR" in why
    err = one_line_error(["unlearn", "--dataset", "digits", "--forget", "3"], capsys)
    assert "is a file, not a folder" in err


def write_idx(path: Path, array, compress: bool = True) -> None:
    import numpy as np

    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.asarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)


def copy_mnist(shared: Path, dest: Path) -> Path:
    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (shared / "MNIST" / "raw").iterdir():
        shutil.copyfile(f, raw / f.name)
    return raw


def test_same_size_relabelled_mnist_is_not_served_from_the_good_cache(shared_data, tmp_path, tmp_cache):
    """Real MNIST, then a copy of the same sizes whose test labels are all 0: the copy's labels."""
    import numpy as np

    good = load_split("mnist", "test", str(shared_data))
    raw = copy_mnist(shared_data, tmp_path / "relabelled")
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.zeros(10000, dtype=np.uint8))
    relabelled = load_split("mnist", "test", str(tmp_path / "relabelled"))
    assert good.labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert (relabelled.labels == 0).all() and torch.equal(relabelled.images, good.images)
    # the same folder changed between two runs (a new process: the in-process memo is cleared)
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.ones(10000, dtype=np.uint8))
    os.utime(raw / "t10k-labels-idx1-ubyte.gz", ns=(1, 1))
    catalog._load_cached.cache_clear()
    assert (load_split("mnist", "test", str(tmp_path / "relabelled")).labels == 1).all()


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_empty_or_truncated_mnist_file_on_a_later_run(damage, shared_data, tmp_path, tmp_cache):
    raw = copy_mnist(shared_data, tmp_path / "data")
    assert len(load_split("mnist", "train", str(tmp_path / "data"))) == 60000      # the cache is filled
    victim = raw / "t10k-images-idx3-ubyte.gz"
    victim.write_bytes(b"" if damage == "empty" else victim.read_bytes()[:5000])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte"):
        load_split("mnist", "test", str(tmp_path / "data"))


def cifar_jpeg_tarball(folder: Path, shade: int) -> None:
    """A cifar10-jpeg.tar.gz stand-in: test/<class>/0.jpg, one flat 32 x 32 image per class."""
    folder.mkdir(parents=True)
    with tarfile.open(folder / "cifar10-jpeg.tar.gz", "w:gz") as tf:
        for c, name in enumerate(catalog.dataset_info("cifar10").classes):
            buffer = io.BytesIO()
            Image.new("RGB", (32, 32), (shade, 10 * c, 0)).save(buffer, "JPEG", quality=100)
            entry = tarfile.TarInfo(f"test/{name}/0.jpg")
            entry.size = len(buffer.getvalue())
            tf.addfile(entry, io.BytesIO(buffer.getvalue()))


def test_cifar_jpeg_cache_is_keyed_by_the_tarball(tmp_path, tmp_cache):
    cifar_jpeg_tarball(tmp_path / "dark", 20)
    cifar_jpeg_tarball(tmp_path / "light", 230)
    dark = load_split("cifar10", "test", str(tmp_path / "dark"))
    light = load_split("cifar10", "test", str(tmp_path / "light"))
    red = lambda s: s.images[:, 0] * s.info.std[0] + s.info.mean[0]
    assert red(dark).max() < 0.2 and red(light).min() > 0.8


def test_image_folder_cache_follows_the_images_content(tmp_path, tmp_cache):
    root = tmp_path / "colours"
    save_png(root / "a" / "0.png", (8, 8), (255, 0, 0))
    save_png(root / "b" / "0.png", (8, 8), (0, 0, 255))
    first = load_split(f"imagefolder:{root}", "test")
    save_png(root / "a" / "0.png", (8, 8), (0, 255, 0))          # same name, other image
    os.utime(root / "a" / "0.png", ns=(1, 1))
    catalog._load_cached.cache_clear()
    second = load_split(f"imagefolder:{root}", "test")
    assert first.images[0, 0].mean() > second.images[0, 0].mean()  # red, then green
    assert second.images[0, 1].mean() > first.images[0, 1].mean()


# --------------------------------------------------------------------------- output paths and atomic writes


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write: 0555 (root ignores modes: then sysfs, read-only for root too)."""
    if os.geteuid() == 0:
        if not Path("/sys").is_dir():
            pytest.skip("running as root without /sys: no folder is read-only")
        return Path("/sys")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("where, message", [
    ("", "--save is empty"),
    ("blocker/x.safetensors", "'{tmp}/blocker' is a file, not a folder"),
    ("blocker/deeper/x.onnx", "'{tmp}/blocker' is a file, not a folder"),
    ("READONLY/x.safetensors", "cannot be written"),
    ("existing.safetensors", "already exists"),
])
def test_save_path_is_checked_before_any_work(where, message, tmp_path, monkeypatch, capsys):
    from core import cli

    (tmp_path / "blocker").write_text("a file")
    (tmp_path / "existing.safetensors").write_text("keep me")
    if where.startswith("READONLY"):
        where = str(read_only_folder(tmp_path) / "x.safetensors")
    elif where:
        where = str(tmp_path / where)
    monkeypatch.setattr(cli, "load_model_for", lambda args: pytest.fail("work started before the path was checked"))
    err = one_line_error(["unlearn", "--dataset", "digits", "--forget", "3", "--save", where], capsys)
    assert message.format(tmp=tmp_path) in err
    assert (tmp_path / "existing.safetensors").read_text() == "keep me"


@pytest.mark.parametrize("where, message", [
    ("", "--out is empty"),
    ("blocker/m.safetensors", "is a file, not a folder"),
    ("READONLY/m.safetensors", "cannot be written"),
])
def test_train_out_is_checked_before_training(where, message, tmp_path, monkeypatch, capsys):
    import core.data.catalog

    (tmp_path / "blocker").write_text("a file")
    if where.startswith("READONLY"):
        where = str(read_only_folder(tmp_path) / "m.safetensors")
    elif where:
        where = str(tmp_path / where)
    monkeypatch.setattr(core.data.catalog, "load_split", lambda *a: pytest.fail("training started"))
    err = one_line_error(["train", "--dataset", "digits", "--arch", "mlp", "--out", where], capsys)
    assert message in err


def test_full_disk_leaves_nothing_half_written(tmp_path, monkeypatch, digits_model):
    """The weights do not fit (a 64 KiB file system where this machine can mount one, else a
    writer that fails half-way with ENOSPC), then the card does not: no file is left either time."""
    import subprocess

    model, card = digits_model
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                                                   capture_output=True).returncode == 0
    try:
        with monkeypatch.context() as patch:
            if not mounted:
                import safetensors.torch

                def half_then_full(tensors, filename, metadata=None):
                    Path(filename).write_bytes(b"\0" * 1000)
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                patch.setattr(safetensors.torch, "save_file", half_then_full)
            with pytest.raises(UserError, match="Could not write .*m.safetensors.*nothing was written"):
                save_checkpoint(model, card, folder / "m.safetensors")
            assert list(folder.iterdir()) == []
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
    real_write_bytes, real_write_text = Path.write_bytes, Path.write_text

    def no_room_for_cards(write):
        def wrapped(self, data, *args, **kwargs):
            if ".json" in self.name:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return write(self, data, *args, **kwargs)
        return wrapped
    monkeypatch.setattr(Path, "write_bytes", no_room_for_cards(real_write_bytes))
    monkeypatch.setattr(Path, "write_text", no_room_for_cards(real_write_text))
    with pytest.raises(UserError, match="No space left on device"):
        save_checkpoint(model, card, tmp_path / "other" / "m.safetensors")
    assert list((tmp_path / "other").iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_checkpoint_mode_follows_the_umask(umask, tmp_path, digits_model):
    model, card = digits_model
    before = os.umask(umask)
    try:
        path = save_checkpoint(model, card, tmp_path / "m.safetensors")
    finally:
        os.umask(before)
    for written in (path, path.with_suffix(".json")):
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]   # no temporary left
    assert load_checkpoint(path)[1] == card


# --------------------------------------------------------------------------- zero-shot: pools from held-out data only


def test_hand_built_pool_of_training_images_is_refused(digits_model, digits_split):
    from core.unlearning.pipeline import unlearn

    model, _ = digits_model
    pool, _ = digits_split
    train = load_split("digits", "train")
    forged = AnalysisPool(images=train.images[:500], labels=train.labels[:500], info=train.info, split="test",
                          indices=train.indices[:500])
    with pytest.raises(TypeError, match="no record of where it came from"):
        require_analysis_pool(forged)
    with pytest.raises(TypeError, match="cut from held-out test data"):
        unlearn(model, forged, 3)
    swapped = dataclasses.replace(pool, images=train.images[:len(pool)])    # a real record, other images
    with pytest.raises(TypeError, match="its images are not the held-out images"):
        require_analysis_pool(swapped)
    moved = dataclasses.replace(pool, indices=pool.indices + 1)            # positions outside the pool's share
    with pytest.raises(TypeError, match="not among the positions"):
        require_analysis_pool(moved)


def test_real_pools_and_their_parts_are_accepted(digits_split):
    pool, _ = digits_split
    fit, val = pool.validation_split(0.5, 0)
    for part in (pool, pool.subset([3, 1]), fit, val, pool.forget_images(3, n=5, seed=1),
                 copy.deepcopy(pool), pickle.loads(pickle.dumps(val)), pool.subset([])):
        assert require_analysis_pool(part) is part
    assert pool.origin.split == "test" and len(pool.origin.positions) == len(pool)
