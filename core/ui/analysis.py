"""What the dashboard's pages compute: held-out data, evaluations, erasure summaries, relevance.

Every LRP run uses its own analyzer (an analyzer registers hooks on its private twin, so one
analyzer must never serve two threads); models are only read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.attribution.paths import NeuronPath
from core.attribution.relevance import RelevanceAnalyzer
from core.data.catalog import load_split
from core.data.sets import AnalysisPool, ImageSet, split_heldout
from core.errors import UserError
from core.metrics.evaluate import Evaluation, membership_inference, summarize
from core.models.cards import ModelCard
from core.models.compute import predict_logits


POOL_PER_CLASS, SPLIT_SEED = 100, 0


def heldout_data(dataset: str, data_dir: str | None = None) -> tuple[AnalysisPool, ImageSet]:
    """(analysis pool, evaluation set) with the project's fixed split (100 per class, seed 0)."""
    return split_heldout(load_split(dataset, "test", data_dir), POOL_PER_CLASS, SPLIT_SEED)


def display_images(images: torch.Tensor, card: ModelCard) -> np.ndarray:
    """Normalised (N,C,H,W) images back to pixels in [0, 1], as (N,H,W,C)."""
    mean = torch.tensor(card.mean).view(1, -1, 1, 1)
    std = torch.tensor(card.std).view(1, -1, 1, 1)
    return (images.cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def test_evaluation(model: nn.Module, dataset: str, data_dir: str | None = None) -> Evaluation:
    """Per-class accuracy on the whole test split (what a model card reports)."""
    test = load_split(dataset, "test", data_dir)
    return summarize(predict_logits(model, test.images), test.labels, None)


def evaluation_from_logits(logits: np.ndarray, eval_set: ImageSet, forget_class: int) -> Evaluation:
    """Per-class, forget and retain accuracy from stored logits (a NumPy array, cache-friendly)."""
    return summarize(torch.from_numpy(logits), eval_set.labels, forget_class)


def membership_scores(original: nn.Module, unlearned: nn.Module, dataset: str, forget_class: int,
                      eval_set: ImageSet, data_dir: str | None = None) -> dict:
    """SSD's entropy attack on the forget class's training images, before and after unlearning.
    Training images are used only to evaluate here, never to unlearn."""
    train = load_split(dataset, "train", data_dir)
    retain_train, forget_train = train.without_class(forget_class), train.of_class(forget_class)
    return {"before": membership_inference(original, retain_train, eval_set, forget_train),
            "after": membership_inference(unlearned, retain_train, eval_set, forget_train)}


def erasure_summary(original: nn.Module, perturbed: nn.Module, pool: AnalysisPool, eval_set: ImageSet,
                    forget_class: int, seed: int = 0) -> dict:
    """The library default's last three steps on top of the page's perturbed model
    (:func:`core.unlearning.pipeline.last_stages`: erasure, relabelling, repair, each chosen on the
    pool's validation part), measured with plain forward passes: for the original, perturbed, and
    each model a stage changed, forget / retain accuracy, the representation probe's recall and the
    mean softmax entropy of the forget images (nats), on the evaluation set. The plain twin of
    :func:`core.ui.erasure.erase_and_relabel`, which reuses cached activations."""
    from core.metrics.evaluate import softmax_entropy
    from core.metrics.probes import forward_with_features, representation_probe
    from core.unlearning.config import default_config
    from core.unlearning.pipeline import last_stages

    config = default_config().override({"seed": seed})
    fit, val = pool.validation_split(config.validation_fraction, config.seed)
    done = last_stages(perturbed, original, fit, val, forget_class, config)
    rows = {}
    forget = (eval_set.labels == forget_class).numpy()
    for name, model in {"original": original, "perturbed": perturbed, **done.models}.items():
        fwd = forward_with_features(model, eval_set.images)
        ev = summarize(fwd.logits, eval_set.labels, forget_class)
        probe = representation_probe(fwd.features.numpy(), eval_set.labels.numpy(), forget_class, seed)
        rows[name] = {"forget_acc": ev.forget_acc, "retain_acc": ev.retain_acc, "probe_recall": probe.recall,
                      "forget_entropy": float(softmax_entropy(fwd.logits)[forget].mean())}
    return {"layers": done.erased_layers, "relabelling": done.relabelling.to_dict(), "repair": done.repairing.to_dict(),
            **rows}


@dataclass
class ClassRelevance:
    """LRP of a class's pool images (from the predicted class), as numpy arrays."""

    positions: list[int]          # indices into the pool's images of the class
    test_indices: list[int]       # the images' indices in the test split
    images: np.ndarray            # (N,H,W,C) pixels in [0, 1]
    heatmaps: np.ndarray          # (N,H,W) input relevance summed over channels
    predicted: list[int]
    layers: dict[str, np.ndarray]  # layer -> (N, units)


def class_relevance(model: nn.Module, card: ModelCard, pool: AnalysisPool, cls: int, rule: str,
                    layers: list[str], max_images: int = 100) -> ClassRelevance:
    """LRP of up to ``max_images`` pool images of ``cls`` with a private analyzer."""
    images = pool.of_class(cls)
    images = images.subset(range(min(max_images, len(images))))
    if len(images) == 0:
        raise UserError(f"The analysis pool has no images of class {cls}.")
    analyzer = RelevanceAnalyzer(model, rule)
    result = analyzer.relevance(images.images, target="pred", layers=list(layers) or None)
    return ClassRelevance(list(range(len(images))), images.indices.tolist(), display_images(images.images, card),
                          result.heatmaps.numpy(), result.targets.tolist(),
                          {k: v.numpy() for k, v in result.layers.items() if k in layers})


def image_relevance(model: nn.Module, image: torch.Tensor, target: int, rule: str = "epsilon") -> np.ndarray:
    """(H,W) input relevance of one normalised image (C,H,W) for class ``target``."""
    analyzer = RelevanceAnalyzer(model, rule)
    return analyzer.relevance(image[None], target=int(target)).heatmaps[0].numpy()


def jaccard(a, b) -> float:
    """|A n B| / |A u B| (1.0 for two empty sets)."""
    a, b = set(a), set(b)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def path_overlap(paths: dict[int, NeuronPath], forget_class: int) -> tuple[list[str], list[int], np.ndarray]:
    """Jaccard overlap of the forget class's selected units with each class's, per layer:
    (layers, classes, matrix[layer, class])."""
    base = paths[forget_class]
    layers = list(base.selections)
    classes = sorted(paths)
    matrix = np.array([[jaccard(base.selections[layer].units, paths[c].selections[layer].units) for c in classes]
                       for layer in layers])
    return layers, classes, matrix


def unit_detail(model: nn.Module, card: ModelCard, pool: AnalysisPool, layer: str, unit: int, rule: str = "epsilon",
                top: int = 8) -> dict:
    """What a unit detects: the ``top`` pool images (of the whole pool) on which ``layer``'s unit
    (a channel's activation summed over positions) is largest, and the mean LRP heatmap of those
    images for their predicted class. Returns images (N,H,W,C), activations, labels, mean_map, pool_size."""
    from core.models.graph import graph_of

    graph = graph_of(model, tuple(card.input_shape))
    node = graph.tensor(layer)
    (acts,) = graph.run_probe(model, pool.images, [node.name])
    acts = acts.flatten(2).sum(2) if acts.dim() > 2 else acts
    if not 0 <= unit < acts.shape[1]:
        raise UserError(f"{layer} has {acts.shape[1]} units; unit {unit} is not one of them.")
    values, order = acts[:, unit].float().topk(min(top, len(acts)))
    images = pool.images[order]
    heatmaps = RelevanceAnalyzer(model, rule).relevance(images, target="pred").heatmaps.numpy()
    return {"images": display_images(images, card), "activations": values.tolist(),
            "labels": pool.labels[order].tolist(), "mean_map": heatmaps.mean(0), "pool_size": len(pool)}
