"""Engine timings for BENCHMARKS.md: unlearning seconds, cached vs full evaluation, LRP throughput.

    .venv/bin/python -m benchmarks.engine --data-dir ../shared/data

Every ratio is measured within one run (these machines are noisy). Prints Markdown.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from benchmarks.common import mnist_cnn

from core.attribution.relevance import RelevanceAnalyzer
from core.metrics.evaluate import evaluate
from core.models.registry import build_model
from core.unlearning.config import default_config
from core.unlearning.explorer import PerturbationExplorer
from core.unlearning.pipeline import unlearn


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model, _, pool, eval_set = mnist_cnn(args.data_dir)
    config = default_config()
    unlearn(model, pool, 3, config)      # warm-up (imports, allocator)

    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU")
    print("\n| measurement (MNIST cnn, forget class 3) | median seconds |\n|---|---|")
    seconds = [unlearn(model, pool, 3, config).seconds for _ in range(args.repeats)]
    for key in ("relevance_and_selection", "perturbation", "erasure", "relabelling", "repair", "total"):
        print(f"| unlearning: {key.replace('_', ' ')} | {statistics.median(s[key] for s in seconds):.4f} |")

    result = unlearn(model, pool, 3, config)
    explorer = PerturbationExplorer(model, result.path, eval_set, result.config.perturbation)
    full = median_seconds(lambda: evaluate(explorer.variant(strength=0.7)[0], eval_set, 3), args.repeats)
    cached = median_seconds(lambda: explorer.evaluate(strength=0.7), args.repeats)
    print(f"| full evaluation of a perturbed model ({len(eval_set)} images) | {full:.4f} |")
    print(f"| cached re-evaluation after a strength change (from the cached {', '.join(explorer.cache.cut.live)}) | {cached:.4f} |")
    print(f"| ratio full / cached | {full / cached:.1f}x |")

    print("\n| LRP (epsilon rule, classifier-input layer) | seconds per 1,000 images |\n|---|---|")
    images = eval_set.images[:1000]
    lrp = RelevanceAnalyzer(model)
    print(f"| mnist cnn (28x28) | {median_seconds(lambda: lrp.relevance(images), 3):.3f} |")
    resnet = build_model("resnet18", 10, (3, 32, 32))
    rgb = torch.randn(200, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    lrp18 = RelevanceAnalyzer(resnet)
    print(f"| resnet18 (32x32, CIFAR stem; timed on 200 images, scaled) | {5 * median_seconds(lambda: lrp18.relevance(rgb, batch_size=100), 2):.3f} |")


if __name__ == "__main__":
    main()
