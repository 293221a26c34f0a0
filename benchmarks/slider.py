"""How fast the Unlearn page answers a move of its strength slider, on MNIST (shipped CNN).

Two numbers:

* compute - ``PerturbationExplorer.evaluate(strength=s)``: copy the model, perturb the path,
  re-run only the stages after the perturbed one on the cached evaluation-set activations
  (9,000 MNIST images). Median of 20 distinct strengths after one warm-up.
* page    - Streamlit's AppTest: set the slider to a new value and ``run()`` the page, median of
  several values never shown before (so nothing comes from the per-setting cache). AppTest re-runs
  the whole script; a browser re-runs only the slider's fragment, so this is an upper bound.

Usage: ``.venv/bin/python -m benchmarks.slider [--data-dir ../shared/data] [--repeats 20] [--page-runs 9]
[--target auto|in|out|both]`` (``--page-runs 0``: the compute alone; run as a file with another
checkout's ``PYTHONPATH``, it times that checkout's engine)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def compute_times(data_dir: str, repeats: int, forget_class: int, target: str = "auto") -> dict:
    import torch

    from benchmarks.common import mnist_cnn
    from core.unlearning.config import default_config
    from core.unlearning.explorer import PerturbationExplorer
    from core.unlearning.pipeline import unlearn

    model, _, pool, eval_set = mnist_cnn(data_dir)
    config = default_config().override({"perturbation.method": "zero", "perturbation.strength": 1.0})   # what the page selects with
    if target != "auto":                                                # the page's "Weights to perturb"
        config = config.override({"calibration.targets": (target,), "perturbation.target": target})
    result = unlearn(model, pool, forget_class, config)
    start = time.perf_counter()
    explorer = PerturbationExplorer(model, result.path, eval_set, result.config.perturbation)
    build = time.perf_counter() - start
    explorer.evaluate(strength=0.5)                                     # warm-up
    strengths = [round(0.025 + 0.95 * i / (repeats - 1), 4) for i in range(repeats)]
    total, variant_part = [], []
    for s in strengths:
        t0 = time.perf_counter()
        explorer.evaluate(strength=s)
        total.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        explorer.variant(strength=s)
        variant_part.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(total), "min_s": min(total), "max_s": max(total),
            "variant_median_s": statistics.median(variant_part), "explorer_build_s": build,
            "cached": ", ".join(explorer.cache.cut.live),
            "cached_shape": [tuple(t.shape) for t in explorer.cache.activations],
            "units": {k: len(v) for k, v in result.path.units.items()}, "eval_images": len(eval_set),
            "target": result.config.perturbation.target,
            "rows": "no" if explorer.rows_cache is None else ("rows, classifier split" if getattr(
                explorer.rows_cache, "classifier_tail", None) else "rows"),
            "threads": torch.get_num_threads()}


def page_times(data_dir: str, runs: int, forget_class: int) -> dict:
    from streamlit.testing.v1 import AppTest

    os.environ["UNLEARN_DATA_DIR"] = data_dir
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.session_state["model_key"] = "shipped:mnist/cnn"
    at.session_state["cfg_forget"] = forget_class
    t0 = time.perf_counter()
    at.run()
    at.switch_page("pages/4_unlearn.py")
    at.run()
    first = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    values = [round(0.05 + 0.1 * i, 2) for i in range(runs)]           # off the sweep's 0.1 grid: not cached
    times = []
    for value in values:
        t0 = time.perf_counter()
        at.slider(key="w_cfg_strength").set_value(value).run()
        times.append(time.perf_counter() - t0)
        assert at.session_state["unlearn_report"]["strength"] == value
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "first_load_s": first,
            "values": values}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("UNLEARN_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--page-runs", type=int, default=9)
    parser.add_argument("--forget", type=int, default=3)
    parser.add_argument("--target", default="auto", choices=["auto", "in", "out", "both"],
                        help="the weights to perturb (auto: the calibration's choice, as the page's default)")
    args = parser.parse_args()
    if not (Path(args.data_dir) / "MNIST" / "raw").is_dir():
        print(f"MNIST not found under {args.data_dir}; pass --data-dir.", file=sys.stderr)
        return 2
    c = compute_times(args.data_dir, args.repeats, args.forget, args.target)
    print(f"compute: PerturbationExplorer.evaluate, MNIST cnn, forget {args.forget}, {c['eval_images']} eval images, "
          f"{c['threads']} torch threads, units {c['units']}, target {c['target']}, row cache: {c['rows']}")
    print(f"  median {1000 * c['median_s']:.0f} ms (min {1000 * c['min_s']:.0f}, max {1000 * c['max_s']:.0f}) "
          f"over {args.repeats} strengths; of which copy+perturb {1000 * c['variant_median_s']:.0f} ms; "
          f"cache at {c['cached']} {c['cached_shape']}, built once in {c['explorer_build_s']:.1f} s")
    if not args.page_runs:
        return 0
    p = page_times(args.data_dir, args.page_runs, args.forget)
    print(f"page: AppTest slider set_value + run (whole script), {len(p['values'])} new values")
    print(f"  median {1000 * p['median_s']:.0f} ms (min {1000 * p['min_s']:.0f}, max {1000 * p['max_s']:.0f}); "
          f"first load of the page {p['first_load_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
