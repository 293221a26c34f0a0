"""The same small benchmark grid on a local Ray with 1 and with 2 workers, timed in one run.

    .venv/bin/python -m benchmarks.ray_scale                     # digits, classes 3 5 8, 1 seed
    .venv/bin/python -m benchmarks.ray_scale --workers 1 2 4 --repeats 2 --classes 0 3 5 8

Each measurement starts a fresh local Ray with ``num_cpus = workers`` (one torch thread per case,
``UNLEARN_BENCH_THREADS=1``), starts its worker processes (one warm-up task per worker that imports
the runner and waits 2 s, so that each lands on its own worker; timed apart with the Ray start-up),
runs ``run_bench(..., executor=RayExecutor())`` into a new folder (no retrain cache, nothing
skipped) and shuts Ray down. The grid's wall time runs from the first task submitted to the last
row stored and its outputs rebuilt. Repeats alternate the order of the worker counts (1 2 2 1 ...) and the
fastest of each count is reported, with the load average before each run, because a shared machine
slows whichever run it happens to meet. The rows of every run are checked to be the same numbers.
Prints Markdown.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

TIMING = ["seconds", "peak_mem_mb", "eval_seconds", "details"]


def _warm_up() -> int:
    import core.bench.runner  # noqa: F401 - torch, the methods and the metrics, as a case imports them

    time.sleep(2)
    return os.getpid()


def one_run(workers: int, args, folder: Path) -> dict:
    import ray

    from core.bench.executors import RayExecutor

    from core.bench.runner import run_bench

    load = os.getloadavg()[0]
    start = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
    try:
        warm = ray.remote(num_cpus=1)(_warm_up)
        ray.get([warm.remote() for _ in range(workers)])
        ray_start = time.perf_counter() - start
        out = run_bench("quick", args.methods, [args.dataset], 1, args.classes, args.data_dir, "cpu", folder,
                        use_cache=False, progress=False, command=f"ray_scale workers={workers}",
                        executor=RayExecutor())
    finally:
        ray.shutdown()
    meta = json.loads((out / "meta.json").read_text())
    runs = pd.read_csv(out / "runs.csv")
    return {"workers": workers, "ray_start": ray_start, "grid": meta["wall_seconds"], "load": load,
            "cases": len(runs), "case_seconds": float(runs["seconds"].sum() + runs["eval_seconds"].sum()),
            "rows": runs.drop(columns=TIMING)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--classes", type=int, nargs="+", default=[3, 5, 8])
    parser.add_argument("--methods", nargs="+", default=["finetune", "gradient_ascent", "lra_npp", "output_mask", "ours"])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    os.environ["UNLEARN_BENCH_THREADS"] = "1"
    os.environ.setdefault("UNLEARN_CACHE_DIR", tempfile.mkdtemp(prefix="ray-scale-cache-"))
    order = [w for r in range(args.repeats) for w in (args.workers if r % 2 == 0 else args.workers[::-1])]
    results = []
    with tempfile.TemporaryDirectory(prefix="ray-scale-") as tmp:
        for i, workers in enumerate(order):
            results.append(one_run(workers, args, Path(tmp) / f"run{i}-w{workers}"))
            r = results[-1]
            print(f"run {i}: {workers} worker(s): grid {r['grid']:.1f} s, Ray start {r['ray_start']:.1f} s, "
                  f"load {r['load']:.2f}", flush=True)
    same = all(r["rows"].equals(results[0]["rows"]) for r in results)
    best = {w: min((r for r in results if r["workers"] == w), key=lambda r: r["grid"]) for w in args.workers}
    base = best[args.workers[0]]["grid"]
    print(f"\n{platform.node()}: {os.cpu_count()} cores, {platform.platform()}; {args.dataset}, classes "
          f"{' '.join(map(str, args.classes))}, 1 seed, methods {' '.join(args.methods)} (+ original): "
          f"{results[0]['cases']} cases; rows of every run identical: {'yes' if same else 'NO'}\n")
    print("| workers | grid wall time (s) | speed-up | Ray + workers start (s) | case seconds (sum) | load average at start |")
    print("|---|---|---|---|---|---|")
    for w in args.workers:
        r = best[w]
        print(f"| {w} | {r['grid']:.1f} | {base / r['grid']:.2f}x | {r['ray_start']:.1f} | {r['case_seconds']:.1f} | "
              f"{r['load']:.2f} |")
    print("\nall runs: " + "; ".join(f"{r['workers']}w {r['grid']:.1f} s (load {r['load']:.2f})" for r in results))


if __name__ == "__main__":
    main()
