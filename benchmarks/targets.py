"""Forget/retain accuracy of the authors' recipe and this project's default over every class and
several seeds (the accuracy half of the benchmark's full profile, without the slow baselines).

    .venv/bin/python -m benchmarks.targets --data-dir ../shared/data --dataset mnist --archs cnn allcnn --seeds 3

Each seed re-draws the analysis pool / evaluation split and the analysis sample. Prints Markdown.
"""
from __future__ import annotations

import statistics

from benchmarks.common import sweep_data, sweep_parser

from core.data.sets import split_heldout
from core.metrics.evaluate import evaluate
from core.models.checkpoints import load_checkpoint, shipped_checkpoint
from core.unlearning.config import PAPER_CONFIG, default_config
from core.unlearning.pipeline import unlearn


def main() -> None:
    args = sweep_parser(seeds=3).parse_args()
    test, classes = sweep_data(args)
    print("| model | recipe | forget acc mean | forget acc worst class | retain drop mean (points) | "
          "retain drop worst | unlearn seconds (median) | runs |\n|---|---|---|---|---|---|---|---|")
    for arch in args.archs:
        model, _ = load_checkpoint(shipped_checkpoint(args.dataset, arch))
        for name, config in (("lra_npp (paper)", PAPER_CONFIG), ("ours (default)", default_config())):
            rows = []
            for seed in range(args.seeds):
                pool, eval_set = split_heldout(test, 100, seed)
                for c in classes:
                    before = evaluate(model, eval_set, c)
                    result = unlearn(model, pool, c, config.__class__(**{**config.__dict__, "seed": seed}))
                    after = evaluate(result.model, eval_set, c)
                    rows.append((c, after.forget_acc, 100 * (before.retain_acc - after.retain_acc), result.seconds_unlearn))
            per_class = {c: statistics.mean(r[1] for r in rows if r[0] == c) for c in classes}
            worst = max(per_class, key=per_class.get)
            print(f"| {args.dataset} {arch} | {name} | {100 * statistics.mean(r[1] for r in rows):.2f} % | "
                  f"{100 * per_class[worst]:.2f} % (class {worst}) | {statistics.mean(r[2] for r in rows):.2f} | "
                  f"{max(r[2] for r in rows):.2f} | {statistics.median(r[3] for r in rows):.3f} | {len(rows)} |", flush=True)


if __name__ == "__main__":
    main()
