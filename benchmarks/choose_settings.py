"""Choose unlearning settings on the analysis pool alone: each setting unlearns from one half of
the pool (50 images per class) and is scored on the other half, never on the evaluation set.

    .venv/bin/python -m benchmarks.choose_settings --data-dir ../shared/data --archs cnn allcnn --seeds 2 \
        --grid erase=none,auto erase_budget=0,0.005,0.01

``--held-back N`` scores at the worst case with finer steps: each seed's pool is cut with 100 + N
images a class, the setting unlearns from 100 of them (the pool size of every other run) and is
scored on the other N (with N = 200, one image is 0.5 points). ``--first-seed`` moves the seeds
(choice seeds are 0-2 and 100 up; 3-99 are kept for reporting).

Scores per setting (mean over classes and seeds, on the held-back half): forget accuracy, retain
drop (points), the representation probe's recall on the forget class (penultimate features), and
the entropy gap: mean softmax entropy of the forget images minus that of the retain images the
model answers wrongly (nats; what core.unlearning.relabel drives to 0, empty when there are none);
and at the worst run: the highest forget accuracy, the largest retain drop, the runs within 0.5
points and the largest drop of any single retain class (points; with 50 held-back images a class,
one image is 2 points).
Prints Markdown.
"""
from __future__ import annotations

import itertools
import statistics

from benchmarks.common import sweep_data, sweep_parser

from core.data.sets import split_heldout
from core.metrics.evaluate import evaluate, summarize, worst_class_drop
from core.metrics.probes import forward_with_features, representation_probe
from core.models.checkpoints import load_checkpoint, shipped_checkpoint
from core.unlearning.config import default_config
from core.unlearning.pipeline import unlearn
from core.unlearning.relabel import forget_and_wrong_entropies


def parse_grid(items: list[str]) -> list[dict]:
    """``name=v1,v2`` items (dotted setting names, ``erasure.budget=0.005,0.01``) -> every combination;
    the values stay text, read by :meth:`core.unlearning.config.UnlearnConfig.override`."""
    axes = []
    for item in items:
        name, values = item.split("=", 1)
        axes.append([(name, v) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] or [{}]


def pools(test, seed: int, held_back: int):
    """(pool the setting unlearns from, held-back images it is scored on), both from the test split
    and disjoint: halves of a 100-image pool, or 100 images a class and ``held_back`` more."""
    if not held_back:
        pool, _ = split_heldout(test, 100, seed)
        return pool.validation_split(0.5, seed + 1000)
    pool, _ = split_heldout(test, 100 + held_back, seed)
    return pool.validation_split(held_back / (100 + held_back), seed + 1000)


def entropy_gap(logits, labels, forget_class: int) -> float | None:
    """Mean entropy of the forget images minus that of the wrongly answered retain images (None: none)."""
    forget, wrong, how_many = forget_and_wrong_entropies(logits, labels, forget_class)
    return forget - wrong if how_many else None


def main() -> None:
    parser = sweep_parser(seeds=2)
    parser.add_argument("--grid", nargs="*", default=[])
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--held-back", type=int, default=0,
                        help="score on this many images a class held back beside a 100-image pool "
                             "(0: on the pool's other half)")
    args = parser.parse_args()
    test, classes = sweep_data(args)
    print("| model | setting | forget acc (held-back half) | retain drop (points) | probe recall | entropy gap | "
          "worst forget | worst retain drop | runs within 0.5 points | worst single class drop | runs |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")
    for arch in args.archs:
        model, _ = load_checkpoint(shipped_checkpoint(args.dataset, arch))
        for setting in parse_grid(args.grid):
            rows = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                seen, held = pools(test, seed, args.held_back)
                original_logits = forward_with_features(model, held.images).logits
                for c in classes:
                    before = summarize(original_logits, held.labels, c)
                    result = unlearn(model, seen, c, default_config().override({**setting, "seed": seed}))
                    after = evaluate(result.model, held, c)
                    fwd = forward_with_features(result.model, held.images)
                    probe = representation_probe(fwd.features.numpy(), held.labels.numpy(), c, seed)
                    rows.append((after.forget_acc, before.retain_acc - after.retain_acc, probe.recall,
                                 entropy_gap(fwd.logits, held.labels, c), worst_class_drop(before, after)))
            mean = [statistics.mean(r[i] for r in rows) for i in range(3)]
            gaps = [r[3] for r in rows if r[3] is not None]
            gap = f"{statistics.mean(gaps):.2f}" if gaps else "n/a"
            label = ", ".join(f"{k}={v}" for k, v in setting.items()) or "default"
            print(f"| {args.dataset} {arch} | {label} | {100 * mean[0]:.2f} % | {100 * mean[1]:.2f} | "
                  f"{100 * mean[2]:.1f} % | {gap} | {100 * max(r[0] for r in rows):.2f} % | "
                  f"{100 * max(r[1] for r in rows):.2f} | {sum(r[1] <= 0.005 for r in rows)}/{len(rows)} | "
                  f"{100 * max(r[4] for r in rows):.1f} | {len(rows)} |",
                  flush=True)


if __name__ == "__main__":
    main()
