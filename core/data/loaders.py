"""Readers for the file layouts each dataset comes in: sklearn's digits, MNIST's IDX files (plain or
gzipped), CIFAR's pickled batches or the JPEG tarball, and a folder of images per class.

Each returns ``(uint8 or 0..1 float images (N,C,H,W), int labels)``; :mod:`core.data.catalog`
normalises them.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from core.data.cache import (_materialise, _safe_extract, cached_tensors, source_key,
                             write_marker)
from core.errors import UserError
from core.data.locate import (_CIFAR10_TARBALL, _MNIST_FILES, _MNIST_FOLDERS, _cifar10_tarball, _cifar_batches_root,
                               _idx_source, _missing_message)
from core.data.info import (DatasetInfo, IMAGEFOLDER_PREFIX, SPLITS, _CIFAR10_CLASSES, _IMAGENET_MEAN,
                            _IMAGENET_STD)


def _tv():
    """:mod:`core.data.torchvision_sets`, imported on first use (torchvision is slow to import)."""
    from core.data import torchvision_sets

    return torchvision_sets


def _download(dataset_cls: type, root: Path) -> bool:
    """Try torchvision's download into ``root``; False on any failure (e.g. offline)."""
    try:
        dataset_cls(root=str(root), train=True, download=True)
        return True
    except Exception:  # noqa: BLE001 - any network/IO failure means "not available"
        return False


@functools.cache
def _digits_all() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """sklearn's bundled 8x8 digits and the fixed stratified 70/30 split (random_state=0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    order = np.arange(len(bunch.target))
    train, test = train_test_split(order, test_size=0.3, random_state=0, stratify=bunch.target)
    return bunch.images, bunch.target, {"train": train, "test": test}


def _digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel01 float images (N,1,8,8), labels) of one digits split."""
    images, target, parts = _digits_all()
    rows = parts[split]
    x = torch.from_numpy(images[rows].astype(np.float32) / 16.0).unsqueeze(1)
    return x, torch.from_numpy(target[rows].astype(np.int64))


def _mnist_root(key: str, root: Path | None, cache: Path) -> Path | None:
    """A root torchvision can read (<root>/<Folder>/raw with plain idx files), or None.

    Plain files in the data folder are read in place; .gz files are decompressed once into the
    cache because the data folder may be read-only, into a folder keyed by the data folder and the
    files' content (:func:`core.data.cache.source_key`), whose ``SOURCE`` record is written last.
    """
    folder = _MNIST_FOLDERS[key]
    if root is not None:
        sources = [_idx_source(root / folder / "raw", f) for f in _MNIST_FILES]
        if all(s is not None for s in sources):
            if all(s.suffix != ".gz" for s in sources):
                return root
            digest = source_key(root / folder / "raw", [(s.name, s) for s in sources])
            keyed = cache / "by-source" / f"{folder}-{digest}"
            record = keyed / "SOURCE"
            if not (record.is_file() and record.read_text().startswith(digest)):
                for src, name in zip(sources, _MNIST_FILES):
                    _materialise(src, keyed / folder / "raw" / name)
                write_marker(record, f"{digest}\n{root / folder / 'raw'}\n")
            return keyed
    if all((cache / folder / "raw" / f).is_file() for f in _MNIST_FILES):
        return cache
    return None


def _load_mnist_like(key: str):
    """Loader for MNIST or Fashion-MNIST returning uint8 images (N,1,28,28) and labels. torchvision
    decodes a split's idx files once; the tensors are then kept in the cache, keyed by those files'
    content (:func:`core.data.cache.source_key`), so a later process reads them without importing
    torchvision (about 2 s: the dashboard's first visit to Unlearn waits for its data)."""
    def load(split: str, root: Path | None, cache: Path) -> tuple[torch.Tensor, torch.Tensor]:
        tv_root = _mnist_root(key, root, cache)
        if tv_root is None and _download(_tv().MNIST_CLASSES[key], cache):
            tv_root = _mnist_root(key, None, cache)
        if tv_root is None:
            raise UserError(_missing_message(key, root))
        raw = tv_root / _MNIST_FOLDERS[key] / "raw"
        names = _MNIST_FILES[:2] if split == "train" else _MNIST_FILES[2:]
        digest = source_key(raw, [(name, raw / name) for name in names])
        pt = cache / _IDX_TENSORS_DIR / f"{_MNIST_FOLDERS[key]}-{digest}" / f"{split}.pt"

        def decode() -> tuple[torch.Tensor, torch.Tensor]:
            try:
                ds = _tv().MNIST_CLASSES[key](root=str(tv_root), train=split == "train", download=False)
            except Exception as err:  # torchvision asserts/raises on malformed idx files
                raise UserError(f"The {_MNIST_FOLDERS[key]} files under {raw} are unreadable or corrupt "
                                f"({err}).") from err
            return ds.data.unsqueeze(1).contiguous(), ds.targets.to(torch.int64)
        return cached_tensors(pt, digest, decode)
    return load


_IDX_TENSORS_DIR = "idx-tensors"


def _read_cifar_batches(cls: type, split: str, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N,3,32,32) and labels from torchvision's pickled batches under ``root``."""
    try:
        ds = cls(root=str(root), train=split == "train", download=False)
    except Exception as err:  # unpickling / reshape errors on damaged files
        raise UserError(f"The CIFAR files under {root / cls.base_folder} are unreadable or "
                        f"corrupt ({err}).") from err
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return images, torch.as_tensor(ds.targets, dtype=torch.int64)


def _load_cifar_batches(key: str, split: str, root: Path | None,
                        cache: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Pickled batches from the data folder, else the cache, else a download into the cache."""
    cls = _tv().CIFAR_CLASSES[key]
    found = _cifar_batches_root(key, root, cache)
    if found is None and _download(cls, cache):
        found = _cifar_batches_root(key, None, cache)
    if found is None:
        raise UserError(_missing_message(key, root))
    return _read_cifar_batches(cls, split, found)


def _load_cifar100(split: str, root: Path | None, cache: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return _load_cifar_batches("cifar100", split, root, cache)


_CIFAR10_JPEG_DIR = "cifar10-jpeg"


def _cifar10_jpeg_pt(root: Path | None, cache: Path, split: str) -> tuple[Path, str] | None:
    """(decoded-tensor cache path, source key) for the JPEG tarball in the data folder, else None.
    The extracted images and the tensors live in a folder keyed by the tarball's content."""
    tarball = _cifar10_tarball(root)
    if tarball is None:
        return None
    digest = source_key(root, [(tarball.name, tarball)])
    return cache / _CIFAR10_JPEG_DIR / digest / f"{split}.pt", digest


def _load_cifar10(split: str, root: Path | None, cache: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 from the JPEG tarball (decoded once, cached as .pt), else pickled batches."""
    found = _cifar10_jpeg_pt(root, cache, split)
    if found is None:
        return _load_cifar_batches("cifar10", split, root, cache)
    pt, digest = found

    def decode() -> tuple[torch.Tensor, torch.Tensor]:
        folder = pt.parent / split
        if not folder.is_dir():
            _safe_extract(root / _CIFAR10_TARBALL, pt.parent)
        missing = [c for c in _CIFAR10_CLASSES if not (folder / c).is_dir()]
        if missing:
            raise UserError(f"The CIFAR-10 JPEG folder {folder} lacks the class folders {', '.join(missing)}.")
        samples = _list_images(folder, _CIFAR10_CLASSES)
        return _decode_images([p for p, _ in samples], (32, 32)), torch.tensor([c for _, c in samples],
                                                                              dtype=torch.int64)
    return cached_tensors(pt, digest, decode)


def _list_images(folder: Path, classes: Sequence[str]) -> list[tuple[str, int]]:
    """(path, label) for every image file under folder/<class>/, sorted by class then name."""
    return _tv().FixedClassListing(folder, classes).samples


def _folder_layout(path: Path) -> dict[str, Path]:
    """Split -> folder: the train/test subfolders if present, else the whole folder is 'test'."""
    if not path.is_dir():
        raise UserError(f"The image folder {path} does not exist.")
    layout = {s: path / s for s in SPLITS if (path / s).is_dir()}
    return layout or {"test": path}


def _imagefolder_scan(path: Path, open_first: bool = True) -> tuple[DatasetInfo, dict[str, Path]]:
    """DatasetInfo (classes = union of class folders, size = first image) and the split layout."""
    layout = _folder_layout(path)
    classes = sorted({e.name for d in layout.values() for e in os.scandir(d)
                      if e.is_dir() and not e.name.startswith(".")})
    if not classes:
        raise UserError(f"The image folder {path} has no class subfolders; expected <class>/<image> files.")
    if len(classes) < 2:
        raise UserError(f"The image folder {path} has one class subfolder ({classes[0]}); a classifier needs at "
                        "least 2 classes, one subfolder each.")
    first_split = "train" if "train" in layout else "test"
    samples = _list_images(layout[first_split], classes)
    if not samples:
        raise UserError(f"The image folder {layout[first_split]} holds no image files.")
    height, width = 0, 0
    if open_first:
        with _open_image(samples[0][0]) as im:
            width, height = im.size
    info = DatasetInfo(IMAGEFOLDER_PREFIX + str(path), tuple(classes), (3, height, width),
                       _IMAGENET_MEAN, _IMAGENET_STD)
    return info, layout


def _imagefolder_uint8(path: Path, split: str, cache: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one split of an image folder (RGB, resized to the first image), via a .pt cache."""
    info, layout = _imagefolder_scan(path)
    if split not in layout:
        raise UserError(f"The image folder {path} has no {split}/ subfolder; "
                        f"a folder without train/ and test/ is used as the test split only.")
    samples = _list_images(layout[split], info.classes)
    if not samples:
        raise UserError(f"The image folder {layout[split]} holds no image files.")
    folder = layout[split]
    digest = source_key(folder, [(f"{Path(p).relative_to(folder)}\t{c}\t{info.input_shape}", Path(p))
                                 for p, c in samples])
    pt = cache / "imagefolder" / f"{digest}-{split}.pt"
    return cached_tensors(pt, digest, lambda: (_decode_images([p for p, _ in samples], info.input_shape[1:]),
                                               torch.tensor([c for _, c in samples], dtype=torch.int64)))


_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485   # PIL's decompression-bomb limit


def _open_image(path: str) -> Image.Image:
    """``Image.open`` with one sentence naming the file when it is corrupt, not an image, or larger
    than PIL's decompression-bomb limit (checked from the header, before any decoding)."""
    try:
        im = Image.open(path)
    except Image.DecompressionBombError:
        raise UserError(f"The image file {path} is too large to decode safely (more than "
                        f"{2 * _MAX_PIXELS / 1e6:.0f} megapixels); resize it or remove it.") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise UserError(f"Could not read the image file {path}: it is corrupt or not an image.") from err
    width, height = im.size
    if width * height > _MAX_PIXELS:
        im.close()
        raise UserError(f"The image file {path} is {width} x {height} pixels ({width * height / 1e6:.0f} "
                        f"megapixels), more than the {_MAX_PIXELS / 1e6:.0f} megapixels that are decoded safely; "
                        "resize it or remove it.")
    return im


def _decode_one(path: str, size_hw: tuple[int, int]) -> np.ndarray:
    """One image as uint8 HxWx3 RGB, resized (bilinear) to ``size_hw``; UserError naming a bad file."""
    with _open_image(path) as im:
        try:
            rgb = im.convert("RGB")
        except (OSError, ValueError, SyntaxError) as err:
            raise UserError(f"Could not read the image file {path}: it is corrupt or not an image.") from err
    height, width = size_hw
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _decode_images(paths: Sequence[str], size_hw: tuple[int, int]) -> torch.Tensor:
    """Decode many image files with a small thread pool into a uint8 (N,3,H,W) tensor."""
    height, width = size_hw
    out = np.empty((len(paths), height, width, 3), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = _decode_one(paths[i], size_hw)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(work, range(len(paths))))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


