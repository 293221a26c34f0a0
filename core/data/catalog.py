"""The public loading API: a dataset name and split in, a normalised :class:`ImageSet` out.

Names are the builtin datasets or ``imagefolder:<path>``; a split is loaded once per process and
the same object is returned for the same resolved arguments.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

import torch

from core.data.cache import cache_dir
from core.data.info import DatasetInfo, IMAGEFOLDER_PREFIX, SPLITS, _BUILTIN_INFO
from core.errors import UserError
from core.data.loaders import _digits, _imagefolder_scan, _imagefolder_uint8, _load_cifar10, _load_cifar100, _load_mnist_like
from core.data.locate import _canonical_name, dataset_available, resolve_data_dir
from core.data.sets import ImageSet

__all__ = ["dataset_available", "dataset_info", "load_split", "resolve_data_dir"]


_LOAD_LOCK = threading.Lock()  # one load at a time: same object per key, no temp-file races


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UserError(f"Unknown split {split!r}; use 'train' or 'test'.")


def dataset_info(name: str, data_dir: str | None = None) -> DatasetInfo:
    """Class names, input shape and normalisation; no image loading for builtin names."""
    key = _canonical_name(name)
    if key in _BUILTIN_INFO:
        return _BUILTIN_INFO[key]
    return _imagefolder_scan(Path(key[len(IMAGEFOLDER_PREFIX):]))[0]


def load_split(name: str, split: str, data_dir: str | None = None) -> ImageSet:
    """The whole train or test split as a normalised ImageSet.

    Cached in-process: the same object comes back for the same resolved arguments, so callers
    must never mutate it.
    """
    key = _canonical_name(name)
    _check_split(split)
    root = None if key.startswith(IMAGEFOLDER_PREFIX) else resolve_data_dir(data_dir)
    with _LOAD_LOCK:
        return _load_cached(key, split, None if root is None else str(root), str(cache_dir()))


@functools.cache
def _load_cached(key: str, split: str, root: str | None, cache: str) -> ImageSet:
    """Load and normalise one split; memoised on the resolved arguments."""
    info = dataset_info(key)
    if key == "digits":
        images01, labels = _digits(split)
        return _make_set(images01, labels, info, split)
    if key.startswith(IMAGEFOLDER_PREFIX):
        u8, labels = _imagefolder_uint8(Path(key[len(IMAGEFOLDER_PREFIX):]), split, Path(cache))
    else:
        u8, labels = _LOADERS[key](split, None if root is None else Path(root), Path(cache))
    return _make_set(u8, labels, info, split)


def _make_set(images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, split: str) -> ImageSet:
    """Normalise uint8 (0..255) or float (0..1) images and wrap them with provenance indices."""
    labels = labels.to(torch.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise UserError(f"The {split} labels of {info.name} must lie in 0..{info.num_classes - 1}, "
                        f"found {int(labels.min())}..{int(labels.max())}.")
    x = images.to(torch.float32)
    if images.dtype == torch.uint8:
        x = x.div_(255.0)
    mean = torch.tensor(info.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32).view(1, -1, 1, 1)
    x = x.sub_(mean).div_(std).contiguous()
    return ImageSet(images=x, labels=labels, info=info, split=split,
                    indices=torch.arange(len(labels), dtype=torch.int64))


_LOADERS = {
    "mnist": _load_mnist_like("mnist"),
    "fashion_mnist": _load_mnist_like("fashion_mnist"),
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
}


