"""The torchvision dataset classes the readers in :mod:`core.data.loaders` use, imported only when a
dataset is read: importing torchvision costs about 2 s (it loads ``torch._dynamo``), which the
dashboard's first page and the command line's ``--help`` should not pay.

* MNIST / Fashion-MNIST by key;
* CIFAR-10/100 with existence-only file checks (torchvision verifies the md5 sums of the official
  release, which rejects re-packed or stand-in files; a corrupt file still fails when unpickled);
* ImageFolder's file listing with a class list fixed in advance (the same labels in every split).
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path

from torchvision.datasets import CIFAR10, CIFAR100, MNIST, FashionMNIST, ImageFolder

MNIST_CLASSES: dict[str, type[MNIST]] = {"mnist": MNIST, "fashion_mnist": FashionMNIST}


class _LenientCifar:
    key: str                             # the dataset's name in core.data.loaders._CIFAR_FILES

    def _check_integrity(self) -> bool:
        from core.data.locate import _cifar_files_present

        return _cifar_files_present(self.key, self.root)

    def _load_meta(self) -> None:
        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as fh:
            self.classes = pickle.load(fh, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class Cifar10(_LenientCifar, CIFAR10):
    key = "cifar10"


class Cifar100(_LenientCifar, CIFAR100):
    key = "cifar100"


CIFAR_CLASSES: dict[str, type] = {"cifar10": Cifar10, "cifar100": Cifar100}


class FixedClassListing(ImageFolder):
    def __init__(self, root: Path, classes: Sequence[str]) -> None:
        self._fixed_classes = list(classes)
        super().__init__(str(root), allow_empty=True)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self._fixed_classes, {c: i for i, c in enumerate(self._fixed_classes)}
