"""Speed of the graph engine on the models users bring, for BENCHMARKS.md.

Two measurements, each with its ratios taken within one run (these machines are noisy):

* ``sequential`` - the generic graph path against the engine of an earlier commit (``--baseline``,
  the last one with the Sequential-only stage machinery) on the shipped MNIST cnn: seconds to
  unlearn class 3 with the default, and one slider step (``PerturbationExplorer.evaluate`` at a new
  strength). The two checkouts run in alternating subprocesses (``--rounds`` each), so both see
  the same machine; the ratio is of the medians over all rounds.
* ``resnet`` - torchvision's own ResNet-18 (3 x 32 x 32, 10 classes, its own forward), trained
  briefly on a seeded part of CIFAR-10's training split, exported to ONNX with the legacy exporter
  and *imported* through :mod:`core.models.formats`: seconds to unlearn a class, and a slider step against
  a full evaluation of the same perturbed model, in one process.

Usage (from the repository root)::

    python -m benchmarks.own_models sequential --baseline a3b2f85 --data-dir ../shared/data
    python -m benchmarks.own_models resnet --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]

# Runs inside a checkout (old or new): only API both have (unlearn, PerturbationExplorer).
_MEASURE = r"""
import json, statistics, sys, time
from core.models.compute import set_threads
from core.data import load_split, split_heldout
from core.models import load_checkpoint, shipped_checkpoint
from core.unlearning import PerturbationExplorer, unlearn
set_threads()
data_dir, repeats, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model, _ = load_checkpoint(shipped_checkpoint("mnist", "cnn"))
pool, eval_set = split_heldout(load_split("mnist", "test", data_dir), 100, 0)
result = unlearn(model, pool, 3)                       # warm-up
times = []
for _ in range(repeats):
    start = time.perf_counter(); result = unlearn(model, pool, 3); times.append(time.perf_counter() - start)
explorer = PerturbationExplorer(model, result.path, eval_set, result.config.perturbation)
explorer.evaluate(strength=0.5)
slider = []
for i in range(steps):
    start = time.perf_counter(); explorer.evaluate(strength=0.03 + 0.94 * i / max(steps - 1, 1))
    slider.append(time.perf_counter() - start)
print(json.dumps({"unlearn_s": statistics.median(times), "slider_s": statistics.median(slider)}))
"""


def _checkout(rev: str, folder: Path) -> Path:
    """``rev`` of this repository unpacked into ``folder`` (git archive; no worktree registered)."""
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def _measure(tree: Path, data_dir: str, repeats: int, steps: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(Path(data_dir).resolve()), str(repeats), str(steps)],
                          cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sequential(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        old = _checkout(args.baseline, Path(tmp) / "baseline")
        runs = {"generic": [], "sequential": []}
        for _ in range(args.rounds):
            runs["sequential"].append(_measure(old, args.data_dir, args.repeats, args.steps))
            runs["generic"].append(_measure(ROOT, args.data_dir, args.repeats, args.steps))
    print(f"MNIST cnn, forget 3, default config; {args.rounds} alternating rounds, each the median of "
          f"{args.repeats} unlearnings and {args.steps} slider steps; baseline {args.baseline}")
    print("\n| path | unlearn (s), median of rounds | worst round | slider step (ms), median | worst round |")
    print("|---|---|---|---|---|")
    medians = {}
    for name, rows in runs.items():
        u, s = [r["unlearn_s"] for r in rows], [r["slider_s"] for r in rows]
        medians[name] = (statistics.median(u), statistics.median(s))
        print(f"| {name} | {medians[name][0]:.3f} | {max(u):.3f} | {1000 * medians[name][1]:.1f} | {1000 * max(s):.1f} |")
    print(f"\nratio generic / sequential: unlearn {medians['generic'][0] / medians['sequential'][0]:.2f}x, "
          f"slider step {medians['generic'][1] / medians['sequential'][1]:.2f}x")


def resnet(args) -> None:
    import warnings

    import torch
    import torchvision

    from core.models.compute import predict_logits, set_threads
    from core.data.catalog import dataset_info, load_split
    from core.data.sets import split_heldout
    from core.metrics.evaluate import evaluate, summarize
    from core.models.cards import ModelCard
    from core.models.checkpoints import load_checkpoint
    from core.models.train import TrainConfig, train_model
    from core.unlearning.explorer import PerturbationExplorer
    from core.unlearning.pipeline import unlearn

    set_threads()
    train = load_split("cifar10", "train", args.data_dir)
    train = train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:args.train_images])
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    start = time.perf_counter()
    train_model(model, train, TrainConfig(epochs=args.epochs, batch_size=128, lr=4e-3, augment=True, seed=0))
    trained_s = time.perf_counter() - start
    info = dataset_info("cifar10", args.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet18.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False,
                              input_names=["image"], dynamic_axes={"image": {0: "batch"}})
        card = ModelCard(arch="resnet18 (torchvision, ONNX)", dataset="cifar10", classes=list(info.classes),
                         input_shape=[3, 32, 32], mean=list(info.mean), std=list(info.std))
        start = time.perf_counter()
        imported, card = load_checkpoint(path, card)
        import_s = time.perf_counter() - start
    pool, eval_set = split_heldout(load_split("cifar10", "test", args.data_dir), 100, 0)
    print(f"torchvision resnet18, trained {args.epochs} epochs on {args.train_images} CIFAR-10 training images "
          f"({trained_s:.0f} s), exported to ONNX (legacy) and imported in {import_s:.2f} s; "
          f"test accuracy on the evaluation set {evaluate(imported, eval_set).overall:.3f}")
    print("\n| forget class | unlearn (s) | forget before -> after | retain before -> after | target | erased |")
    print("|---|---|---|---|---|---|")
    results = {}
    for cls in args.classes:
        before = evaluate(imported, eval_set, cls)
        start = time.perf_counter()
        result = unlearn(imported, pool, cls)
        seconds = time.perf_counter() - start
        after = evaluate(result.model, eval_set, cls)
        results[cls] = result
        print(f"| {cls} | {seconds:.2f} | {before.forget_acc:.3f} -> {after.forget_acc:.3f} | "
              f"{before.retain_acc:.4f} -> {after.retain_acc:.4f} | {result.config.perturbation.target} | "
              f"{', '.join(result.erased_layers) or '-'} |")
    print("\n| slider (class, target) | full evaluation (ms) | slider step (ms) | ratio | cached tensors |")
    print("|---|---|---|---|---|")
    for cls, result in results.items():
        for target in ("out", "both"):
            spec = result.config.override({"perturbation.target": target}).perturbation
            explorer = PerturbationExplorer(imported, result.path, eval_set, spec)
            explorer.evaluate(strength=0.5)
            full, step = [], []
            for i in range(args.steps):
                s = 0.03 + 0.94 * i / max(args.steps - 1, 1)
                t0 = time.perf_counter()
                variant, _ = explorer.variant(strength=s)
                summarize(predict_logits(variant, eval_set.images), eval_set.labels, cls)
                full.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                explorer.evaluate(strength=s)
                step.append(time.perf_counter() - t0)
            f, c = statistics.median(full), statistics.median(step)
            print(f"| {cls}, {target} | {1000 * f:.0f} | {1000 * c:.1f} | {f / c:.1f}x | "
                  f"{', '.join(explorer.reuse['cached'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="which", required=True)
    seq = sub.add_parser("sequential")
    seq.add_argument("--baseline", default="a3b2f85")
    seq.add_argument("--rounds", type=int, default=3)
    seq.add_argument("--repeats", type=int, default=5)
    seq.add_argument("--steps", type=int, default=20)
    res = sub.add_parser("resnet")
    res.add_argument("--train-images", type=int, default=20000)
    res.add_argument("--epochs", type=int, default=2)
    res.add_argument("--classes", type=int, nargs="+", default=[0, 3])
    res.add_argument("--steps", type=int, default=10)
    for p in (seq, res):
        p.add_argument("--data-dir", default=os.environ.get("UNLEARN_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, CPU; "
          f"{time.strftime('%Y-%m-%d')}")
    {"sequential": sequential, "resnet": resnet}[args.which](args)


if __name__ == "__main__":
    main()
