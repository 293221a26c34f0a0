"""What the benchmark scripts share: the shipped MNIST cnn with its seed-0 analysis pool (engine,
slider, speed-up), and the arguments and test split of the per-model sweeps (targets, settings)."""
from __future__ import annotations

import argparse

from core.data.catalog import load_split
from core.data.sets import ImageSet, split_heldout
from core.models.checkpoints import load_checkpoint, shipped_checkpoint
from core.models.compute import set_threads


def mnist_cnn(data_dir: str):
    """(model, card, pool, evaluation set): the shipped MNIST cnn and the seed-0 split of the test
    split (100 pool images per class), with torch on every core unless OMP_NUM_THREADS says otherwise."""
    set_threads()
    model, card = load_checkpoint(shipped_checkpoint("mnist", "cnn"))
    pool, eval_set = split_heldout(load_split("mnist", "test", data_dir), 100, seed=0)
    return model, card, pool, eval_set


def sweep_parser(seeds: int) -> argparse.ArgumentParser:
    """--data-dir, --dataset, --archs, --seeds (default ``seeds``) and --classes of a per-model sweep."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--archs", nargs="+", default=["cnn", "allcnn"])
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--classes", type=int, nargs="+", default=None)
    return parser


def sweep_data(args) -> tuple[ImageSet, list[int]]:
    """(test split, forget classes: --classes or every class), with torch threads set."""
    set_threads()
    test = load_split(args.dataset, "test", args.data_dir)
    return test, args.classes or list(range(test.info.num_classes))
