"""Datasets as normalised tensors, and the held-out split that unlearning is allowed to see.

Every loader returns an :class:`ImageSet` (float32 images already normalised with the dataset's
mean/std). Unlearning code must only receive an :class:`AnalysisPool`, a slice of the *test* split
made by :func:`split_heldout`; the rest of the test split is kept back for evaluation.

Zero-shot is a checked guarantee, not a naming convention: every pool carries its
:class:`HeldOut` record (the split it was cut from, the positions in that split that went to the
pool, and those images as they were cut), which only :func:`split_heldout` issues, and
:func:`require_analysis_pool` refuses a pool without one, or whose images or positions are not the
ones the record holds (an AnalysisPool built by hand, from training images, or altered afterwards).
"""
from __future__ import annotations

import dataclasses
import operator
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from core.data.info import DatasetInfo, SPLITS
from core.errors import UserError


def _as_positions(positions, length: int) -> torch.Tensor:
    """Turn an index tensor / list / numpy array / bool mask into an int64 index tensor."""
    if isinstance(positions, torch.Tensor):
        pos = positions
    elif isinstance(positions, np.ndarray):
        pos = torch.from_numpy(positions)
    else:
        pos = torch.as_tensor(list(positions))
    if pos.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    if pos.dtype == torch.bool:
        if pos.shape != (length,):
            raise ValueError(f"a boolean mask must have shape ({length},), got {tuple(pos.shape)}")
        return pos.nonzero(as_tuple=True)[0]
    return pos.reshape(-1).long()


def _seeded_choice(count: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """k distinct positions out of range(count), drawn from ``generator``."""
    return torch.randperm(count, generator=generator)[:k]


@dataclass(frozen=True, eq=False, repr=False)
class ImageSet:
    """Images already normalised: float32 tensor (N,C,H,W) = (pixel01 - mean)/std; labels int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    split: str
    indices: torch.Tensor

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {self.split!r}")
        n = len(self.images)
        if len(self.labels) != n or len(self.indices) != n:
            raise ValueError(f"images, labels and indices differ in length: "
                             f"{n}, {len(self.labels)}, {len(self.indices)}")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.info.name!r}, split={self.split!r}, n={len(self)}, "
                f"shape={tuple(self.images.shape[1:])})")

    def subset(self, positions) -> ImageSet:
        """The images at ``positions`` (indices or bool mask), same type, provenance kept."""
        pos = _as_positions(positions, len(self))
        return dataclasses.replace(self, images=self.images[pos], labels=self.labels[pos],
                                   indices=self.indices[pos])

    def _check_class(self, c: int) -> int:
        """``c`` as an int; UserError unless it is a class number of this dataset."""
        n = self.info.num_classes
        try:
            value = None if isinstance(c, bool) else operator.index(c)
        except TypeError:
            value = None
        if value is None or not 0 <= value < n:
            raise UserError(f"Class {c!r} is out of range; {self.info.name} has classes 0 to {n - 1}.")
        return value

    def of_class(self, c: int) -> ImageSet:
        """The images labelled ``c`` (possibly none)."""
        return self.subset(self.labels == self._check_class(c))

    def without_class(self, c: int) -> ImageSet:
        """All images except those labelled ``c``."""
        return self.subset(self.labels != self._check_class(c))

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) chunks of at most ``batch_size``, in order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self.images[start:start + batch_size], self.labels[start:start + batch_size]

    def sample(self, n: int, seed: int) -> ImageSet:
        """A seeded random subset of min(n, len) images, kept in their original order."""
        if n < 0:
            raise UserError(f"Cannot sample a negative number of images ({n}).")
        g = torch.Generator().manual_seed(seed)
        pos = _seeded_choice(len(self), min(n, len(self)), g)
        return self.subset(pos.sort().values)


@dataclass(frozen=True, eq=False, repr=False)
class HeldOut:
    """Where a pool came from: ``split`` (always "test"), the sorted ``positions`` in that split
    (its ``indices``) that went to the pool, and the pool's ``images`` as cut, row for row.

    A record that is copied or sent to another process (pickled) stays issued."""

    dataset: str
    split: str
    positions: torch.Tensor
    images: torch.Tensor

    def __repr__(self) -> str:
        return f"HeldOut({self.dataset!r}, split={self.split!r}, n={len(self.positions)})"

    def __reduce__(self):
        return _reissue, (self.dataset, self.split, self.positions, self.images)


_ISSUED: "weakref.WeakSet[HeldOut]" = weakref.WeakSet()   # the records split_heldout has made


def _reissue(dataset: str, split: str, positions: torch.Tensor, images: torch.Tensor) -> HeldOut:
    """A copy of an issued record (unpickling, deepcopy), issued in turn."""
    record = HeldOut(dataset, split, positions, images)
    _ISSUED.add(record)
    return record


@dataclass(frozen=True, eq=False, repr=False)
class AnalysisPool(ImageSet):
    """Held-out (test-split) images the unlearning may look at. The ONLY data type unlearning code accepts.

    Construct only via :func:`split_heldout`, which sets ``origin``; ``__post_init__`` raises
    ValueError if split != "test", and :func:`require_analysis_pool` refuses a pool whose
    ``origin`` is missing or does not match its images.
    """

    origin: HeldOut | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.split != "test":
            raise ValueError(f"an AnalysisPool holds held-out test-split images only, got split {self.split!r}")

    def forget_images(self, forget_class: int, n: int | None = None, seed: int = 0) -> AnalysisPool:
        """The pool's images of ``forget_class`` (a seeded subset of ``n`` if given)."""
        images = self.of_class(forget_class)
        if len(images) == 0:
            name = self.info.classes[forget_class]
            raise UserError(f"The analysis pool has no images of class {forget_class} ({name}); "
                            f"pick another class or make the pool larger.")
        return images if n is None else images.sample(n, seed)

    def validation_split(self, fraction: float = 0.3, seed: int = 0) -> tuple[AnalysisPool, AnalysisPool]:
        """(analysis part, validation part): stratified per class, disjoint, deterministic.

        Lets settings be chosen on pool images without touching the evaluation set. Each class with
        at least two images keeps at least one image on each side.
        """
        if not 0.0 < fraction < 1.0:
            raise UserError(f"The validation fraction must lie strictly between 0 and 1, got {fraction}.")
        g = torch.Generator().manual_seed(seed)
        chosen = []
        for c in range(self.info.num_classes):
            where = (self.labels == c).nonzero(as_tuple=True)[0]
            if len(where) < 2:
                continue
            k = min(max(round(fraction * len(where)), 1), len(where) - 1)
            chosen.append(where[_seeded_choice(len(where), k, g)])
        mask = torch.zeros(len(self), dtype=torch.bool)
        if chosen:
            mask[torch.cat(chosen)] = True
        return self.subset(~mask), self.subset(mask)


def require_analysis_pool(data) -> AnalysisPool:
    """Return ``data`` if it is an AnalysisPool cut from held-out test data by :func:`split_heldout`
    (or a subset of one); unlearning code calls this on its input.

    Checked: the pool carries a :class:`HeldOut` record that :func:`split_heldout` issued, of the
    test split of the same dataset; each of its indices is one of the record's positions; and its
    images are, bit for bit, the images cut at those positions. Raises TypeError otherwise."""
    if not isinstance(data, AnalysisPool):
        raise TypeError(f"unlearning code only accepts an AnalysisPool (held-out images), "
                        f"got {type(data).__name__}")
    origin = data.origin
    refuse = "unlearning code only accepts an AnalysisPool cut from held-out test data by split_heldout; "
    if not isinstance(origin, HeldOut) or origin not in _ISSUED:
        raise TypeError(refuse + "this one has no record of where it came from (was it built by hand?)")
    if origin.split != "test" or data.split != "test" or origin.dataset != data.info.name:
        raise TypeError(refuse + f"this one comes from the {origin.split} split of {origin.dataset}")
    if len(data) == 0:
        return data
    rows = torch.searchsorted(origin.positions, data.indices).clamp_(max=len(origin.positions) - 1)
    if not torch.equal(origin.positions[rows], data.indices):
        raise TypeError(refuse + "some of its images are not among the positions that went to the pool")
    if data.images.shape[1:] != origin.images.shape[1:] or not torch.equal(data.images.cpu(), origin.images[rows]):
        raise TypeError(refuse + "its images are not the held-out images at its positions")
    return data


def split_heldout(test: ImageSet, pool_per_class: int = 100, seed: int = 0) -> tuple[AnalysisPool, ImageSet]:
    """Seeded split of the TEST split into (analysis pool, evaluation set), disjoint.

    Per class, min(pool_per_class, half of that class's images) go to the pool; the rest is kept
    for evaluation so that results are measured on images the unlearning never saw.
    """
    if test.split != "test":
        raise ValueError(f"split_heldout needs the test split, got split {test.split!r}")
    if pool_per_class < 0:
        raise UserError(f"The pool size per class must be zero or more, got {pool_per_class}.")
    g = torch.Generator().manual_seed(seed)
    in_pool = torch.zeros(len(test), dtype=torch.bool)
    for c in range(test.info.num_classes):
        where = (test.labels == c).nonzero(as_tuple=True)[0]
        k = min(pool_per_class, len(where) // 2)
        in_pool[where[_seeded_choice(len(where), k, g)]] = True
    fields = dict(info=test.info, split="test")
    images, indices = test.images[in_pool], test.indices[in_pool]
    order = indices.argsort()
    origin = HeldOut(test.info.name, "test", indices[order], images[order])   # indexing copies
    _ISSUED.add(origin)
    pool = AnalysisPool(images=images, labels=test.labels[in_pool], indices=indices, origin=origin, **fields)
    rest = ~in_pool
    evaluation = ImageSet(images=test.images[rest], labels=test.labels[rest],
                          indices=test.indices[rest], **fields)
    return pool, evaluation
