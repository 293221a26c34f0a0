"""Where a dataset's files are, and whether it can be loaded, from file names alone: no decoding,
no downloading, and no torch, so that the dashboard's first page can list the models and their
datasets before torch is imported (:mod:`core.data.loaders` decodes the files found here).
"""
from __future__ import annotations

import os
from pathlib import Path

from core.data.cache import cache_dir
from core.data.info import DATASETS, IMAGEFOLDER_PREFIX
from core.errors import UserError


_NEEDS = {
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion_mnist": ("Fashion-MNIST", "FashionMNIST/raw"),
    "cifar10": ("CIFAR-10", "cifar10-jpeg.tar.gz or cifar-10-batches-py"),
    "cifar100": ("CIFAR-100", "cifar-100-python"),
}


def _missing_message(key: str, root: Path | None) -> str:
    """One sentence telling the user how to provide a dataset that was not found."""
    label, needed = _NEEDS[key]
    where = (f"under {root} or in the cache {cache_dir()}" if root
             else f"in the cache {cache_dir()} (no data folder given)")
    return (f"{label} was not found {where}; pass --data-dir (or set UNLEARN_DATA_DIR) to a folder "
            f"holding {needed}, or connect to the internet to download it.")


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


_MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}     # torchvision's class names


def _idx_source(raw: Path, name: str) -> Path | None:
    """The plain or .gz copy of one idx file in ``raw``, plain preferred."""
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _locate_mnist(key: str):
    """Availability check for one MNIST-like dataset (no downloading)."""
    def locate(root: Path | None, cache: Path) -> bool:
        folder = _MNIST_FOLDERS[key]
        if root is not None and all(_idx_source(root / folder / "raw", f) for f in _MNIST_FILES):
            return True
        return all((cache / folder / "raw" / f).is_file() for f in _MNIST_FILES)
    return locate


# torchvision's CIFAR layouts (its classes' base_folder, train_list, test_list and meta), so that
# looking for the files does not import torchvision.
_CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]),
    "cifar100": ("cifar-100-python", ["train", "test", "meta"]),
}


def _cifar_files_present(key: str, root: Path | str) -> bool:
    """Whether every batch file and the meta file of CIFAR ``key`` exist under root."""
    folder, names = _CIFAR_FILES[key]
    return all(os.path.isfile(os.path.join(root, folder, f)) for f in names)


def _cifar_batches_root(key: str, root: Path | None, cache: Path) -> Path | None:
    """The first of data folder / cache that holds the pickled batch folder, or None."""
    for candidate in (root, cache):
        if candidate is not None and _cifar_files_present(key, candidate):
            return candidate
    return None


_CIFAR10_TARBALL = "cifar10-jpeg.tar.gz"


def _cifar10_tarball(root: Path | None) -> Path | None:
    return root / _CIFAR10_TARBALL if root is not None and (root / _CIFAR10_TARBALL).is_file() else None


def _locate_cifar10(root: Path | None, cache: Path) -> bool:
    return _cifar10_tarball(root) is not None or _cifar_batches_root("cifar10", root, cache) is not None


def _locate_cifar100(root: Path | None, cache: Path) -> bool:
    return _cifar_batches_root("cifar100", root, cache) is not None


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The data folder: explicit argument, else $UNLEARN_DATA_DIR, else None."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get("UNLEARN_DATA_DIR") or None
    return None if chosen is None else Path(chosen).expanduser().resolve()


def _canonical_name(name: str) -> str:
    """Lower-cased builtin name or 'imagefolder:<absolute path>'; UserError if unknown."""
    if not isinstance(name, str):
        raise UserError(f"The dataset name must be text, got {name!r}.")
    if name.startswith(IMAGEFOLDER_PREFIX):
        raw = name[len(IMAGEFOLDER_PREFIX):].strip()
        if not raw:
            raise UserError("The dataset 'imagefolder:' needs a folder path after the colon.")
        return IMAGEFOLDER_PREFIX + str(Path(raw).expanduser().resolve())
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise UserError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)} "
                        f"or imagefolder:<path>.")
    return key


def dataset_available(name: str, data_dir: str | None = None) -> tuple[bool, str]:
    """(True, "") if the dataset can be loaded from local files, else (False, what is needed).

    Looks only at file names (no downloading, no decoding), so it is cheap enough for a UI.
    """
    try:
        key = _canonical_name(name)
        if key == "digits":
            return True, ""
        if key.startswith(IMAGEFOLDER_PREFIX):
            from core.data.loaders import _imagefolder_scan     # reads folder names; imports torch

            _imagefolder_scan(Path(key[len(IMAGEFOLDER_PREFIX):]), open_first=False)
            return True, ""
        root = resolve_data_dir(data_dir)
        found = _LOCATORS[key](root, cache_dir())
        return (True, "") if found else (False, _missing_message(key, root))
    except UserError as err:
        return False, str(err)


_LOCATORS = {
    "mnist": _locate_mnist("mnist"),
    "fashion_mnist": _locate_mnist("fashion_mnist"),
    "cifar10": _locate_cifar10,
    "cifar100": _locate_cifar100,
}
