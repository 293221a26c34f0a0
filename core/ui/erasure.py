"""The Unlearn page's "Erase, relabel and repair": the library default's last three steps, step by step.

On top of the page's perturbed model: the class direction erased from the layers before the
classifier (:func:`core.unlearning.pipeline.erase_class_direction`), second-choice relabelling
(:func:`core.unlearning.relabel.relabel`), then the retain repair (:func:`core.unlearning.repair.repair`),
each chosen on the pool's validation part with the library's default settings, exactly as
:func:`core.unlearning.pipeline.unlearn` does. Each model is
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
from core.models.compute import predict_logits
from core.ui.speed import EvalCaches

STEPS = ("Fitting the erasers on the pool", "Fitting the relabelling on the pool",
         "Refitting the classifier for the other classes", "Measuring the models on the evaluation set",
         "Probing their features for the class")


def erase_and_relabel(original: nn.Module, perturbed: nn.Module, pool: AnalysisPool, caches: EvalCaches,
                      forget_class: int, seed: int = 0,
                      step: Callable[[str], None] | None = None) -> tuple[dict, dict[str, nn.Module]]:
    """(summary, models): for the original, perturbed, erased, relabelled and repaired model,
    forget / retain accuracy, the probe's recall and the forget images' mean softmax entropy (nats)
    on the evaluation set; ``step(text)`` is told each stage as it starts. ``relabelled`` is missing
    from both when relabelling did not run (its strength is 0; the reason is in
    ``summary["relabelling"]``), ``repaired`` when the repair changed nothing (``summary["repair"]``)."""
    from core.unlearning.config import default_config
    from core.unlearning.pipeline import erase_class_direction
    from core.unlearning.relabel import relabel
    from core.unlearning.repair import repair

    say = step or (lambda text: None)
    eval_set = caches.eval_set
    config = default_config().override({"seed": seed})
    fit, val = pool.validation_split(config.validation_fraction, config.seed)
    say(STEPS[0])
    original_logits = predict_logits(original, val.images)
    layers, erased = erase_class_direction(perturbed, original, fit, val, forget_class, config,
                                           original_val_logits=original_logits)
    say(STEPS[1])
    settings = config.relabel
    relabelling, relabelled = relabel(erased, original, fit, val, forget_class, settings.budget, settings.shrinkage,
                                      settings.min_wrong, original_logits)
    models = {"original": original, "perturbed": perturbed, "erased": erased}
    if relabelling.strength:
        models["relabelled"] = relabelled
    say(STEPS[2])
    repairing, repaired = repair(models.get("relabelled", erased), original, fit, val, forget_class,
                                 config.repair.shrinkage, original_logits)
    if repairing.strength:
        models["repaired"] = repaired
    say(STEPS[3])
    forwards = {name: caches.forward(model) for name, model in models.items()}
    say(STEPS[4])
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
    return {"layers": layers, "relabelling": relabelling.to_dict(), "repair": repairing.to_dict(), **rows}, models
