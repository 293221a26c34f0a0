"""The Unlearn page's "Erase, relabel and repair": the library default's last three steps, step by step.

On top of the page's perturbed model: the class direction erased from the layers before the
classifier, second-choice relabelling, then the retain repair, each chosen on the pool's
validation part with the library's default settings: :func:`core.unlearning.pipeline.last_stages`,
the function :func:`core.unlearning.pipeline.unlearn` ends with. Each model is
then measured on the evaluation set from :class:`core.ui.speed.EvalCaches` (only the layers a model
changes are re-run), and the representation probe runs once per distinct set of features.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from core.data.sets import AnalysisPool
from core.metrics.evaluate import softmax_entropy, summarize
from core.metrics.probes import representation_probe
from core.ui.speed import EvalCaches

STEPS = {"erasure": "Fitting the erasers on the pool", "relabelling": "Fitting the relabelling on the pool",
         "repair": "Refitting the classifier for the other classes",
         "measure": "Measuring the models on the evaluation set", "probe": "Probing their features for the class"}


def erase_and_relabel(original: nn.Module, perturbed: nn.Module, pool: AnalysisPool, caches: EvalCaches,
                      forget_class: int, seed: int = 0, step: Callable[[str], None] | None = None,
                      activations: Callable | None = None) -> tuple[dict, dict[str, nn.Module]]:
    """(summary, models): for the original, perturbed, erased, relabelled and repaired model,
    forget / retain accuracy, the probe's recall and the forget images' mean softmax entropy (nats)
    on the evaluation set; ``step(text)`` is told each stage (:data:`STEPS`) as it starts.
    ``relabelled`` is missing from both when relabelling did not run (its strength is 0; the reason
    is in ``summary["relabelling"]``), ``repaired`` when the repair changed nothing
    (``summary["repair"]``). ``activations``: the page's :class:`core.ui.speed.MemoActivations`, so that
    the pool's images run only through the layers each stage changes."""
    from core.models.compute import Activations
    from core.unlearning.config import default_config
    from core.unlearning.pipeline import last_stages

    say = step or (lambda text: None)
    eval_set = caches.eval_set
    config = default_config().override({"seed": seed})
    fit, val = pool.validation_split(config.validation_fraction, config.seed)
    make = activations or Activations
    done = last_stages(perturbed, original, fit, val, forget_class, config, make(original, fit), make(original, val),
                       step=lambda name: say(STEPS[name]))
    models = {"original": original, "perturbed": perturbed, **done.models}
    say(STEPS["measure"])
    forwards = caches.forward_each(models)      # relabelled and repaired: only their classifier runs
    say(STEPS["probe"])
    labels = eval_set.labels.numpy()
    forget = (eval_set.labels == forget_class).numpy()
    rows, probed = {}, []            # (features, result): a model whose features equal another's shares its probe
    for name, (logits, features, unchanged) in forwards.items():
        result = next((r for f, r in probed if f.shape == features.shape and torch.equal(f, features)), None)
        if result is None:
            def compute(features=features):
                return representation_probe(features.numpy(), labels, forget_class, seed)
            result = caches.probe(("original", forget_class, seed), compute) if unchanged else compute()
            probed.append((features, result))
        ev = summarize(logits, eval_set.labels, forget_class)
        rows[name] = {"forget_acc": ev.forget_acc, "retain_acc": ev.retain_acc, "probe_recall": result.recall,
                      "forget_entropy": float(softmax_entropy(logits)[forget].mean()), "per_class": list(ev.per_class)}
    return {"layers": done.erased_layers, "relabelling": done.relabelling.to_dict(), "repair": done.repairing.to_dict(),
            **rows}, models
