"""This project's unlearning vs retraining from scratch with the full recipe, timed in one run.

    .venv/bin/python -m benchmarks.speedup --data-dir ../shared/data --forget 3

Retraining: a fresh MNIST cnn trained on the retain classes only with the shipped model's recipe
(3 epochs). Unlearning: ``unlearn(model, pool, c, default_config())`` (median of 5). Prints Markdown.
"""
from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.common import mnist_cnn

from core.data.catalog import load_split
from core.metrics.evaluate import evaluate
from core.models.registry import build_model
from core.models.train import TrainConfig, train_model
from core.unlearning.pipeline import unlearn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--forget", type=int, default=3)
    args = parser.parse_args()
    model, card, pool, eval_set = mnist_cnn(args.data_dir)
    train = load_split("mnist", "train", args.data_dir)
    unlearn(model, pool, args.forget)                      # warm-up
    runs = [unlearn(model, pool, args.forget) for _ in range(5)]
    ours = statistics.median(r.seconds_unlearn for r in runs)
    start = time.perf_counter()
    fresh = build_model("cnn", 10, (1, 28, 28), seed=0)
    train_model(fresh, train.without_class(args.forget), TrainConfig(**card.notes["train_config"]))
    retrain = time.perf_counter() - start
    a, b = evaluate(runs[0].model, eval_set, args.forget), evaluate(fresh, eval_set, args.forget)
    print("| method | seconds | forget acc | retain acc |\n|---|---|---|---|")
    print(f"| ours (default, median of 5) | {ours:.3f} | {a.forget_acc:.2%} | {a.retain_acc:.2%} |")
    print(f"| retrain (full recipe: {card.notes['train_config']['epochs']} epochs on retain classes) | "
          f"{retrain:.1f} | {b.forget_acc:.2%} | {b.retain_acc:.2%} |")
    print(f"\nretrain / ours = {retrain / ours:.0f}x")


if __name__ == "__main__":
    main()
