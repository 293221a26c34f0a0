"""Neuronal paths: which units carry a class, per analysed layer, and how relevance flows between them.

Frequency selection (the authors' code): for each analysis image n keep its top-K units by signed
relevance, T_n = topK_u R_nu; count c_u = |{n : u in T_n}|; keep the H units with the largest c_u
(ties broken by mean relevance). H may exceed K.

Contrast selection (this project): score_u = mean_n r_nu(forget) - mean_m r_mu(other classes),
with r = R / sum_u |R| the relevance share of unit u per image, so units that matter for the forget
class *but not for the others* rank first. H may be a count, ``"auto"`` (the fewest top-scoring
units whose positive scores cover ``coverage`` of the total positive score), or ``"all"`` (a full
ranking, which :mod:`core.unlearning` cuts to a calibrated length).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from core.attribution.relevance import RelevanceAnalyzer
from core.data.sets import AnalysisPool, require_analysis_pool
from core.errors import UserError


# The authors' defaults (MNIST: K=50, H=80 of 512 units) as shares of the analysed layer's width.
PAPER_K_SHARE, PAPER_H_SHARE = 50 / 512, 80 / 512
SELECTIONS = ("frequency", "contrast")


def _is_count(value) -> bool:
    """A unit count (an int >= 1) or a share of the layer width (a float in (0, 1))."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 1
    return isinstance(value, float) and math.isfinite(value) and (0 < value < 1 or value.is_integer() and value >= 1)


@dataclass(frozen=True)
class Selection:
    """Which units make the path, per analysed layer (see the module docstring for the maths).

    ``k``: top-K units per image (frequency selection); ``h``: units kept per layer, as a count, a
    share of the layer width in (0, 1), ``"auto"`` (contrast: cover ``coverage`` of the positive
    score) or ``None`` (every unit ranked, for a calibration to cut). ``layers``: analysed tensors
    (``None``: the classifier's input); ``n_images``: forget-class pool images analysed."""

    method: str = "frequency"
    k: int | float = PAPER_K_SHARE
    h: int | float | str | None = PAPER_H_SHARE
    layers: tuple[str, ...] | None = None
    n_images: int | None = 36
    coverage: float = 0.5

    def __post_init__(self):
        if self.method not in SELECTIONS:
            raise UserError(f"Unknown selection '{self.method}'; use 'frequency' or 'contrast'.")
        if not _is_count(self.k):
            raise UserError(f"K must be a unit count (1, 2, ...) or a share of the layer width in (0, 1), got {self.k!r}.")
        if self.h == "auto" and self.method != "contrast":
            raise UserError("H 'auto' covers a share of the class-contrast score; it needs selection 'contrast' "
                            "(or give H as a count or a share).")
        if self.h not in (None, "auto") and not _is_count(self.h):
            raise UserError(f"H must be a unit count, a share of the layer width in (0, 1), 'auto' or calibrated, "
                            f"got {self.h!r}.")
        if self.layers is not None and (isinstance(self.layers, str) or not all(isinstance(x, str) for x in self.layers)):
            raise UserError(f"Layers must be a list of layer names, got {self.layers!r}.")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers) or None)
        if self.n_images is not None and (isinstance(self.n_images, bool) or not isinstance(self.n_images, int)
                                          or self.n_images < 1):
            raise UserError(f"The number of analysed images must be a whole number of at least 1, got {self.n_images!r}.")
        if not isinstance(self.coverage, (int, float)) or not 0 < self.coverage <= 1:
            raise UserError(f"The coverage must be a share in (0, 1], got {self.coverage!r}.")


@dataclass
class LayerSelection:
    """Selected units of one layer, most important first."""

    layer: str
    units: list[int]
    frequency: list[float]      # share of forget images whose top-K holds the unit
    relevance: list[float]      # mean relevance of the unit on the forget images
    width: int                  # number of units in the layer
    k: int
    h: int


@dataclass
class NeuronPath:
    """A class's path: per layer (input side first) the selected units, plus relevance flows."""

    forget_class: int
    selections: dict[str, LayerSelection]
    edges: list[dict] = field(default_factory=list)   # {lower, i, upper, j, flow}
    settings: dict = field(default_factory=dict)

    @property
    def units(self) -> dict[str, list[int]]:
        return {name: sel.units for name, sel in self.selections.items()}

    def truncated(self, share: float) -> "NeuronPath":
        """The same path keeping the top ``share`` of each layer's width (at least one unit)."""
        def cut_layer(sel: LayerSelection) -> LayerSelection:
            n = max(1, round(share * sel.width))
            return LayerSelection(sel.layer, sel.units[:n], sel.frequency[:n], sel.relevance[:n], sel.width,
                                  sel.k, min(sel.h, n))
        cut = {name: cut_layer(sel) for name, sel in self.selections.items()}
        return NeuronPath(self.forget_class, cut, [], {**self.settings, "h_share": share})

    def to_dict(self) -> dict:
        return {"forget_class": self.forget_class, "settings": self.settings, "edges": self.edges,
                "selections": {k: asdict(v) for k, v in self.selections.items()}}


def resolve_count(value: int | float | str, width: int, what: str) -> int:
    """``value`` as a unit count: an int in [1, width], a float in (0, 1) as a share of width,
    or ``"all"`` (every unit, ranked)."""
    if value == "all":
        return width
    count = max(1, round(value * width)) if isinstance(value, float) and 0 < value < 1 else int(value)
    if not 1 <= count <= width:
        raise UserError(f"{what}={value} is out of range for a layer of {width} units (use 1-{width}).")
    return count


def topk_counts(relevance: torch.Tensor, k: int) -> torch.Tensor:
    """c_u: in how many images (rows) unit u is among the top-K by signed relevance."""
    top = relevance.topk(k, dim=1).indices
    return torch.zeros(relevance.shape[1]).index_add_(0, top.flatten(), torch.ones(top.numel()))


def select_by_frequency(layer: str, relevance: torch.Tensor, k: int | float, h: int | float) -> LayerSelection:
    """The authors' selection: top-K per image, the H most frequent overall."""
    width = relevance.shape[1]
    k, h = resolve_count(k, width, "K"), resolve_count(h, width, "H")
    counts, mean_rel = topk_counts(relevance, k), relevance.mean(0)
    order = sorted(range(width), key=lambda u: (-counts[u].item(), -mean_rel[u].item()))[:h]
    n = relevance.shape[0]
    return LayerSelection(layer, order, [counts[u].item() / n for u in order], [mean_rel[u].item() for u in order],
                          width, k, h)


def relevance_share(relevance: torch.Tensor) -> torch.Tensor:
    """r_nu = R_nu / sum_u |R_nu|: each image's relevance as shares, so images weigh equally."""
    return relevance / relevance.abs().sum(1, keepdim=True).clamp_min(1e-12)


def select_by_contrast(layer: str, forget_rel: torch.Tensor, other_rel: torch.Tensor, k: int | float,
                       h: int | float | str, coverage: float = 0.5) -> LayerSelection:
    """Units whose relevance share is high for the forget class and low for the others."""
    width = forget_rel.shape[1]
    k = resolve_count(k, width, "K")
    score = relevance_share(forget_rel).mean(0)
    if len(other_rel):
        score = score - relevance_share(other_rel).mean(0)
    order = score.argsort(descending=True)
    if h == "auto":
        positive = score.clamp_min(0)[order]
        cumulative = positive.cumsum(0) / positive.sum().clamp_min(1e-12)
        h_count = min(int((cumulative < coverage).sum().item()) + 1, width)
    else:
        h_count = resolve_count(h, width, "H")
    chosen = order[:h_count].tolist()
    counts, mean_rel = topk_counts(forget_rel, k), forget_rel.mean(0)
    n = forget_rel.shape[0]
    return LayerSelection(layer, chosen, [counts[u].item() / n for u in chosen], [mean_rel[u].item() for u in chosen],
                          width, k, h_count)


def find_path(analyzer: RelevanceAnalyzer, pool: AnalysisPool, forget_class: int, layers: list[str] | None = None,
              k: int | float = 50, h: int | float | str = 80, selection: str = "frequency",
              n_images: int | None = 36, seed: int = 0, coverage: float = 0.5,
              edge_units: int = 0) -> NeuronPath:
    """Relevance of ``n_images`` forget-class pool images (LRP from the predicted class, as the
    authors do), then per-layer selection; with ``edge_units`` > 0 also the relevance flowing
    between the top ``edge_units`` selected units of consecutive layers."""
    pool = require_analysis_pool(pool)
    analyzer.prepare(pool.info.input_shape)
    layers = analyzer.check_layers(layers or [analyzer.default_layer])
    layers = order_layers(analyzer, layers)
    forget = pool.forget_images(forget_class, n_images, seed)
    result = analyzer.relevance(forget.images, target="pred", layers=layers, input_heatmaps=False)
    if selection == "frequency":
        selections = {name: select_by_frequency(name, result.layers[name], k, h) for name in layers}
    elif selection == "contrast":
        others = pool.without_class(forget_class).sample((n_images or 36) * 3, seed)
        other = analyzer.relevance(others.images, target="pred", layers=layers, input_heatmaps=False)
        selections = {name: select_by_contrast(name, result.layers[name], other.layers[name], k, h, coverage)
                      for name in layers}
    else:
        raise UserError(f"Unknown selection '{selection}'; use 'frequency' or 'contrast'.")
    settings = {"k": k, "h": h, "selection": selection, "rule": analyzer.rule, "epsilon": analyzer.epsilon,
                "n_images": len(forget), "seed": seed, "layers": layers, "coverage": coverage}
    path = NeuronPath(forget_class, selections, settings=settings)
    if edge_units > 0:
        path.edges = path_edges(analyzer, forget.images, path, edge_units)
    return path


def order_layers(analyzer: RelevanceAnalyzer, layers: list[str]) -> list[str]:
    """Layers in forward order (input side first): by the position of the tensor each one reads."""
    graph = analyzer.graph
    return sorted(layers, key=lambda name: graph.position[graph.tensor(name).name])


def path_edges(analyzer: RelevanceAnalyzer, images: torch.Tensor, path: NeuronPath, edge_units: int) -> list[dict]:
    """Mean relevance flowing from each of the top ``edge_units`` units of a layer to those of the
    layer below it (LRP restarted from each upper unit alone)."""
    names = list(path.selections)
    edges = []
    for lower, upper in zip(names, names[1:]):
        low_units = path.selections[lower].units[:edge_units]
        up_units = path.selections[upper].units[:edge_units]
        flows = analyzer.flow(images, "pred", lower, upper, up_units, low_units)
        for a, i in enumerate(low_units):
            for b, j in enumerate(up_units):
                edges.append({"lower": lower, "i": i, "upper": upper, "j": j, "flow": float(flows[a, b])})
    return edges
