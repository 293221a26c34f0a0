"""Seconds of one default unlearning, per class and per stage: the figure issue 14 bounds (0.5 s on MNIST cnn).

    .venv/bin/python -m benchmarks.unlearn_time --data-dir ../shared/data [--arch cnn] [--seed 3] \
        [--compare OTHER_CHECKOUT --rounds 3]

The shipped model unlearns each forget class from the seed's analysis pool (``split_heldout(test,
100, seed)``), in one warm process: a first call per class (tracing, first imports) is not
timed, then ``--repeats`` calls are, and the median is kept. Prints the median and the worst class
of the total and each stage's median (medians over rounds), and the worst class of the slowest
round. ``--compare`` runs another checkout (e.g. a git worktree of an older commit) and this one
alternately, ``--rounds`` times each, in fresh processes, and prints both with their ratio: this
machine's speed drifts by 1.5-2x within an hour, so only ratios
measured in one run are reported.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(data_dir: str, dataset: str, arch: str, seed: int, classes: list[int] | None, repeats: int) -> dict:
    """{class: {stage: median seconds}} for the checkout this process imports ``core`` from."""
    from core.data.catalog import load_split
    from core.data.sets import split_heldout
    from core.models.checkpoints import load_checkpoint, shipped_checkpoint
    from core.models.compute import set_threads
    from core.unlearning.pipeline import unlearn

    set_threads()
    model, _ = load_checkpoint(shipped_checkpoint(dataset, arch))
    pool, _ = split_heldout(load_split(dataset, "test", data_dir), 100, seed=seed)
    out = {}
    for forget in classes or range(pool.info.num_classes):
        unlearn(model, pool, forget)                      # warm: traced graphs, first imports
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = unlearn(model, pool, forget)
            runs.append({**result.seconds, "wall": time.perf_counter() - start})
        out[forget] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return out


def run_checkout(root: Path, args) -> dict:
    """:func:`worker` in a fresh process importing ``core`` from ``root``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--data-dir", str(Path(args.data_dir).resolve()),
               "--dataset", args.dataset, "--arch", args.arch, "--seed", str(args.seed), "--repeats", str(args.repeats)]
    if args.classes:
        command += ["--classes", *map(str, args.classes)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=True)
    return {int(k): v for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def summary(per_class: dict) -> dict:
    """Median and worst class of the total, and each stage's median over classes."""
    totals = {c: v["total"] for c, v in per_class.items()}
    worst = max(totals, key=totals.get)
    stages = {key: statistics.median(v[key] for v in per_class.values()) for key in next(iter(per_class.values()))}
    return {"median total": statistics.median(totals.values()), "worst class": totals[worst],
            **{f"median {key}": value for key, value in stages.items() if key not in ("total", "wall")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--classes", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", type=Path, default=None, help="another checkout, timed alternately with this one")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.data_dir, args.dataset, args.arch, args.seed, args.classes, args.repeats)))
        return
    roots = {"this": ROOT} if args.compare is None else {"other": args.compare.resolve(), "this": ROOT}
    rounds: dict[str, list[dict]] = {name: [] for name in roots}
    for _ in range(args.rounds):
        for name, root in roots.items():
            rounds[name].append(summary(run_checkout(root, args)))
    keys = list(rounds["this"][0])
    header = " | ".join(f"{name} ({roots[name]})" for name in roots)
    print(f"| seconds ({args.dataset} {args.arch}, seed {args.seed}, median of {args.rounds} rounds) | {header} |"
          + (" this / other |" if "other" in roots else ""))
    print("|---" * (len(roots) + 1 + ("other" in roots)) + "|")
    for key in keys:
        values = {name: statistics.median(r[key] for r in rounds[name] if key in r) if all(key in r for r in rounds[name])
                  else None for name in roots}
        cells = " | ".join("-" if values[n] is None else f"{values[n]:.3f}" for n in roots)
        ratio = f" {values['this'] / values['other']:.2f} |" if "other" in roots and values.get("other") else \
            (" - |" if "other" in roots else "")
        print(f"| {key} | {cells} |{ratio}")
    slowest = {name: max(r["worst class"] for r in rounds[name]) for name in roots}
    cells = " | ".join(f"{slowest[n]:.3f}" for n in roots)
    ratio = f" {slowest['this'] / slowest['other']:.2f} |" if "other" in roots else ""
    print(f"| worst class, slowest round | {cells} |{ratio}")


if __name__ == "__main__":
    main()
