"""Every run, every class, both protocols: the authors' recipe and the default, judged at the worst case.

    .venv/bin/python -m benchmarks.worst_case --data-dir ../shared/data --dataset mnist --archs cnn allcnn \
        --first-seed 3 --seeds 5 --out assets/bench/worst-case-mnist

For each (model, recipe, forget class, seed) the analysis pool is cut from the test split
(``split_heldout(test, 100, seed)``), the model unlearns from it, and accuracy is measured twice:

* **held-out** (this project): on the evaluation set, every test image not in the pool;
* **train** (the authors' runner): on the training split; by default a fixed sample of 1,000
  images per class (``--train-per-class``, seeded, the same for every run; 0 = the whole split).

Per run it records forget accuracy, retain accuracy and its drop from the original model, the
largest drop of any single retain class, the target the default resolved to and the seconds of
unlearning. ``worst-case.csv`` (one row per run and protocol; not ``runs.csv``, the benchmark runner's
file, which the Compare page reads) is written to ``--out`` through a temporary
file and a rename; the Markdown summary printed is built from it: mean and worst forget accuracy,
mean and worst retain drop, the share of runs within 0.5 points, the worst single-class drop.
Seeds 3 and up were never used to choose settings.

Each image set's activations under the original model are kept per cut of its graph
(:class:`core.ui.speed.EvalCaches`), so a run re-runs only the layers its unlearned model changed;
the logits are those of the whole model (the same operations on the same inputs).
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from pathlib import Path

import torch

from core.data.catalog import load_split
from core.bench.plan import stratified_sample
from core.data.sets import split_heldout
from core.metrics.evaluate import summarize
from core.models.checkpoints import load_checkpoint, shipped_checkpoint
from core.models.compute import set_threads
from core.ui.speed import EvalCaches
from core.unlearning.config import RECIPES
from core.unlearning.pipeline import unlearn

FIELDS = ["dataset", "arch", "recipe", "forget_class", "seed", "protocol", "forget_acc", "retain_acc",
          "retain_acc_original", "retain_drop", "worst_class", "worst_class_drop", "target", "seconds"]


def measure(logits_before: torch.Tensor, logits_after: torch.Tensor, labels: torch.Tensor, forget: int) -> dict:
    before, after = summarize(logits_before, labels, forget), summarize(logits_after, labels, forget)
    drops = [(b - a, c) for c, (b, a) in enumerate(zip(before.per_class, after.per_class)) if c != forget]
    worst_drop, worst_class = max(drops)
    return {"forget_acc": after.forget_acc, "retain_acc": after.retain_acc, "retain_acc_original": before.retain_acc,
            "retain_drop": before.retain_acc - after.retain_acc, "worst_class": worst_class,
            "worst_class_drop": worst_drop}


def summary(rows: list[dict]) -> str:
    lines = ["| model | recipe | protocol | forget mean | forget worst | retain drop mean (points) | retain drop worst "
             "| runs within 0.5 points | worst single class drop (points) | seconds (worst) | runs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["dataset"], r["arch"], r["recipe"], r["protocol"]) for r in rows})
    for dataset, arch, recipe, protocol in keys:
        part = [r for r in rows if (r["dataset"], r["arch"], r["recipe"], r["protocol"]) == (dataset, arch, recipe,
                                                                                             protocol)]
        forget = [float(r["forget_acc"]) for r in part]
        drop = [100 * float(r["retain_drop"]) for r in part]
        worst = max(part, key=lambda r: float(r["worst_class_drop"]))
        lines.append(f"| {dataset} {arch} | {recipe} | {protocol} | {100 * statistics.mean(forget):.2f} % | "
                     f"{100 * max(forget):.2f} % | {statistics.mean(drop):.2f} | {max(drop):.2f} | "
                     f"{sum(d <= 0.5 for d in drop)}/{len(drop)} | {100 * float(worst['worst_class_drop']):.1f} "
                     f"(class {worst['worst_class']}, forgetting {worst['forget_class']}, seed {worst['seed']}) | "
                     f"{max(float(r['seconds']) for r in part):.2f} | {len(part)} |")
    return "\n".join(lines)


# The authors' published figures (forget / retain accuracy on the training split, their own models,
# mean of 5 seeds), for the side-by-side table.
PUBLISHED = {"mnist": (0.0155, 0.9840), "cifar10": (0.0526, 0.9762)}


def side_by_side(rows: list[dict]) -> str:
    """Forget and retain accuracy, mean and worst run, of each recipe under both protocols, beside
    the authors' published figures for the dataset."""
    lines = ["| model | recipe | protocol | forget mean | forget worst | retain mean | retain worst | runs |",
             "|---|---|---|---|---|---|---|---|"]
    for dataset in sorted({r["dataset"] for r in rows}):
        if dataset in PUBLISHED:
            forget, retain = PUBLISHED[dataset]
            lines.append(f"| {dataset}, the authors' models | LRA-NPP as published | train | {100 * forget:.2f} % | "
                         f"- | {100 * retain:.2f} % | - | 5 seeds |")
        keys = sorted({(r["arch"], r["recipe"], r["protocol"]) for r in rows if r["dataset"] == dataset})
        for arch, recipe, protocol in keys:
            part = [r for r in rows if (r["dataset"], r["arch"], r["recipe"], r["protocol"]) ==
                    (dataset, arch, recipe, protocol)]
            forget = [float(r["forget_acc"]) for r in part]
            retain = [float(r["retain_acc"]) for r in part]
            lines.append(f"| {dataset} {arch} | {recipe} | {protocol} | {100 * statistics.mean(forget):.2f} % | "
                         f"{100 * max(forget):.2f} % | {100 * statistics.mean(retain):.2f} % | "
                         f"{100 * min(retain):.2f} % | {len(part)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--archs", nargs="+", default=["cnn", "allcnn"])
    parser.add_argument("--recipes", nargs="+", default=["paper", "ours"], choices=sorted(RECIPES))
    parser.add_argument("--first-seed", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--classes", type=int, nargs="+", default=None)
    parser.add_argument("--train-per-class", type=int, default=1000,
                        help="training images per class for the train protocol (seeded; 0 = the whole split)")
    parser.add_argument("--out", required=True, help="folder for worst-case.csv (a new or empty folder)")
    parser.add_argument("--report", action="store_true",
                        help="print the tables of an existing --out/worst-case.csv (nothing is run)")
    args = parser.parse_args()
    if args.report:
        with (Path(args.out) / "worst-case.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        print(summary(rows))
        print()
        print(side_by_side(rows))
        return
    out = Path(args.out)
    if (out / "worst-case.csv").exists():
        raise SystemExit(f"{out / 'worst-case.csv'} exists; choose another --out (results are never overwritten).")
    set_threads()
    test = load_split(args.dataset, "test", args.data_dir)
    train = load_split(args.dataset, "train", args.data_dir)
    classes = args.classes or list(range(test.info.num_classes))
    if args.train_per_class:
        train = stratified_sample(train, args.train_per_class, 104729)
    rows = []
    for arch in args.archs:
        model, _ = load_checkpoint(shipped_checkpoint(args.dataset, arch))
        on_train = EvalCaches(model, train)
        on_train.warm([])              # the earliest cut the erasure may need; later cuts carry on from it
        train_before = on_train.original_logits()
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            pool, eval_set = split_heldout(test, 100, seed)
            on_eval = EvalCaches(model, eval_set)
            on_eval.warm([])
            eval_before = on_eval.original_logits()
            for recipe in args.recipes:
                for c in classes:
                    start = time.perf_counter()
                    result = unlearn(model, pool, c, RECIPES[recipe].override({"seed": seed}))
                    seconds = time.perf_counter() - start
                    for protocol, data, caches, before in (("held-out", eval_set, on_eval, eval_before),
                                                           ("train", train, on_train, train_before)):
                        rows.append({"dataset": args.dataset, "arch": arch, "recipe": recipe, "forget_class": c,
                                     "seed": seed, "protocol": protocol,
                                     **measure(before, caches.forward(result.model)[0], data.labels, c),
                                     "target": result.config.perturbation.target, "seconds": round(seconds, 3)})
                    print(f"{arch} {recipe} class {c} seed {seed}: {rows[-2]['forget_acc']:.4f} / "
                          f"{100 * rows[-2]['retain_drop']:.2f} pts / worst class {100 * rows[-2]['worst_class_drop']:.1f}"
                          f" / train {rows[-1]['forget_acc']:.4f} / {result.config.perturbation.target} / "
                          f"{seconds:.2f} s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".worst-case.csv.tmp-{os.getpid()}"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / "worst-case.csv")
    print(summary(rows))
    print()
    print(side_by_side(rows))


if __name__ == "__main__":
    main()
