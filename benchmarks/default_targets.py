"""The default's targets (BENCHMARKS.md, "How each default was chosen") read off a bench's runs.csv:
forget / retain per model, and how close `ours` sits to retrain versus output_mask on the inside
metrics (probe recall and AUC, relearn steps) and the entropy membership attack.

    .venv/bin/python -m benchmarks.default_targets assets/bench/full-mnist/runs.csv assets/bench/full-cifar10/runs.csv

"Closeness" = (metric - output_mask) / (retrain - output_mask): 0 is the output mask, 1 is retrain;
above 0.5 means closer to retrain. Prints Markdown.

A later file replaces an earlier one's runs of the same (dataset, arch, method, seed, class), so a
rerun of some methods (e.g. ``ours`` on a CPU after a change) can be read against the retrained
models of an earlier full run:

    .venv/bin/python -m benchmarks.default_targets assets/bench/full-cifar10/runs.csv assets/bench/cpu-cifar10/runs.csv
"""
from __future__ import annotations

import sys

import pandas as pd


METHODS = ("lra_npp", "ours")


def model_rows(runs: pd.DataFrame) -> list[str]:
    lines = []
    for (dataset, arch), df in runs.groupby(["dataset", "arch"]):
        key = ["seed", "forget_class"]
        orig = df[df.method == "original"].set_index(key)
        mean = df.groupby("method")[["mia_entropy", "probe_recall", "probe_auc", "relearn_steps"]].mean()
        for method in METHODS:
            own = df[df.method == method].set_index(key)
            drop = 100 * (orig.retain_acc - own.retain_acc)
            per_class = own.forget_acc.groupby(level="forget_class").mean()
            close = {m: (mean.loc[method, m] - mean.loc["output_mask", m]) /
                     (mean.loc["retrain", m] - mean.loc["output_mask", m]) for m in ("probe_recall", "probe_auc",
                                                                                     "relearn_steps")}
            mia_gap = abs(mean.loc[method, "mia_entropy"] - mean.loc["retrain", "mia_entropy"])
            lines.append(
                f"| {dataset} {arch} | {method} | {100 * own.forget_acc.mean():.2f} % | {100 * per_class.max():.2f} % "
                f"(class {per_class.idxmax()}) | {drop.mean():.2f} | {drop.max():.2f} | {mia_gap:.3f} | "
                f"{close['probe_recall']:.2f} | {close['probe_auc']:.2f} | {close['relearn_steps']:.2f} | {len(own)} |")
    return lines


def main() -> None:
    runs = pd.concat([pd.read_csv(path) for path in sys.argv[1:]])
    runs = runs.drop_duplicates(["dataset", "arch", "method", "seed", "forget_class"], keep="last")
    print("| model | method | forget acc mean | worst class (mean over seeds) | retain drop mean (points) | "
          "retain drop worst run | MIA gap to retrain | probe recall closeness | probe AUC closeness | "
          "relearn closeness | runs |\n|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(model_rows(runs)))


if __name__ == "__main__":
    main()
