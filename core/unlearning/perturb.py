"""Neuronal path perturbation: edit the weights around selected units, on a copy of the model.

For units U of an analysed tensor (a layer's output or input, :mod:`core.models.graph`), with strength
s in [0, 1]:

* ``in``  - the rows W[U] of every Conv/Linear that produces the tensor (and bias b[U] unless
  ``keep_bias``; and any BatchNorm's gamma[U], beta[U] on the way, since a zeroed filter alone
  leaves the BN shift). Through a residual sum every branch is edited, so the unit is silenced;
* ``out`` - the columns W[:, U] of every Conv/Linear that reads the tensor: only the forget-class
  row when the reader is the classifier (the authors' MNIST recipe), every row otherwise or with
  ``out_classes="all"``.

``zero`` scales the chosen entries by (1 - s); ``gaussian`` / ``laplace`` add s * N(0, 1) /
s * Laplace(0, 1) noise (the authors' GN / LN baselines). The source model is never changed:
:func:`perturb` returns a new model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from core.errors import UserError
from core.models.checkpoints import clone_model
from core.models.graph import Cut, ModelGraph, graph_of
from core.models.tracing import NORMS


METHODS = ("zero", "gaussian", "laplace")
TARGETS = ("in", "out", "both")
@dataclass(frozen=True)
class PerturbationSpec:
    """How selected units are perturbed."""

    method: str = "zero"
    strength: float = 1.0
    target: str = "both"
    keep_bias: bool = False
    out_classes: str = "forget"     # "forget" | "all"
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"Unknown method '{self.method}'; choose one of {', '.join(METHODS)}.")
        if self.target not in TARGETS:
            raise UserError(f"Unknown target '{self.target}'; choose one of {', '.join(TARGETS)}.")
        if not 0.0 <= float(self.strength) <= 1.0:
            raise UserError(f"Strength {self.strength} is out of range; use a value in [0, 1].")
        if self.out_classes not in ("forget", "all"):
            raise UserError("out_classes must be 'forget' or 'all'.")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ParamEdit:
    """Entries ``param[rows][:, cols]`` to perturb (``None`` = all along that axis)."""

    param: str
    rows: tuple[int, ...] | None
    cols: tuple[int, ...] | None = None


def plan_edits(model: nn.Module, units: dict[str, list[int]], forget_class: int, spec: PerturbationSpec,
               input_shape) -> list[ParamEdit]:
    """Every parameter entry the perturbation touches, for units selected per analysed tensor."""
    graph = graph_of(model, input_shape)
    classifier = graph.classifier()
    edits: list[ParamEdit] = []
    for layer, selected in units.items():
        if not selected:
            continue
        if spec.target in ("in", "both"):
            for module, channels in graph.producers(layer, list(selected)):
                edits += _row_edits(graph, module, channels, spec.keep_bias)
        if spec.target in ("out", "both"):
            for module, cols in graph.consumers(layer, list(selected)):
                rows = (forget_class,) if module == classifier and spec.out_classes == "forget" else None
                edits.append(ParamEdit(f"{module}.weight", rows, cols))
    return edits


def _row_edits(graph: ModelGraph, name: str, channels: tuple[int, ...], keep_bias: bool) -> list[ParamEdit]:
    """Rows ``channels`` of a Conv/Linear (weight, and bias unless kept) or of a BatchNorm's scale
    and shift (unless the bias is kept)."""
    module = graph.modules[name]
    if isinstance(module, NORMS):
        if keep_bias or module.weight is None:
            return []
        return [ParamEdit(f"{name}.weight", channels), ParamEdit(f"{name}.bias", channels)]
    edits = [ParamEdit(f"{name}.weight", channels)]
    if module.bias is not None and not keep_bias:
        edits.append(ParamEdit(f"{name}.bias", channels))
    return edits


def edited_modules(edits: list[ParamEdit]) -> list[str]:
    """Module paths the edits touch (``fc1.weight`` -> ``fc1``), in order, once each."""
    return list(dict.fromkeys(e.param.rsplit(".", 1)[0] for e in edits))


def edit_cut(graph: ModelGraph, edits: list[ParamEdit]) -> Cut:
    """The cut just before the earliest module an edit touches: everything before it is unchanged
    (the activation cache's place)."""
    return graph.earliest_cut(edited_modules(edits))


def _index(edit: ParamEdit, param: torch.Tensor):
    rows = list(edit.rows) if edit.rows is not None else slice(None)
    if edit.cols is None:
        return (rows,)
    cols = list(edit.cols)
    if edit.rows is None:
        return (slice(None), cols)
    return (torch.tensor(rows)[:, None], torch.tensor(cols)[None, :])


@torch.no_grad()
def edit_in_place(model: nn.Module, edits: list[ParamEdit], spec: PerturbationSpec,
                  generator: torch.Generator) -> nn.Module:
    """Apply ``edits`` to ``model`` itself: only for a private working copy."""
    params = dict(model.named_parameters())
    s = float(spec.strength)
    for edit in edits:
        param = params[edit.param]
        idx = _index(edit, param)
        if spec.method == "zero":
            param[idx] = param[idx] * (1.0 - s)
            continue
        shape = param[idx].shape
        if spec.method == "gaussian":
            noise = torch.randn(shape, generator=generator)
        else:
            uniform = torch.rand(shape, generator=generator).clamp(1e-7, 1 - 1e-7) - 0.5
            noise = -torch.sign(uniform) * torch.log1p(-2 * uniform.abs())
        param[idx] = param[idx] + s * noise.to(param.device, param.dtype)
    return model


def apply_edits(model: nn.Module, edits: list[ParamEdit], spec: PerturbationSpec, share_unedited: bool = False) -> nn.Module:
    """A perturbed copy of ``model``; noise is drawn from a generator seeded with ``spec.seed``.
    ``share_unedited``: copy only the modules the edits touch (and the containers above them) and
    share every other layer with ``model``; for a short-lived, read-only variant such as a slider
    step's, where copying every weight of a large model would cost more than evaluating it."""
    copy_ = shallow_variant(model, edited_modules(edits)) if share_unedited else clone_model(model)
    return edit_in_place(copy_, edits, spec, torch.Generator().manual_seed(spec.seed))


def shallow_variant(model: nn.Module, modules: list[str]) -> nn.Module:
    """A copy of ``model`` whose ``modules`` (paths) hold copies of their parameters and buffers and
    whose other layers are ``model``'s own (read-only): the root and every container on the way to
    an edited module are new objects, so nothing of ``model`` is changed by editing the copy."""
    import copy

    from core.models.graph import adopt

    def fresh(module: nn.Module) -> nn.Module:
        twin = copy.copy(module)
        twin._modules = module._modules.copy()
        twin._parameters = module._parameters.copy()
        twin._buffers = module._buffers.copy()
        return twin

    root = fresh(model)
    for path in modules:
        parent, source = root, model
        parts = path.split(".")
        for depth, part in enumerate(parts):
            original, current = source._modules[part], parent._modules[part]
            if current is original:                 # not yet copied in this variant
                current = fresh(original)
                if depth == len(parts) - 1:
                    for name, param in original._parameters.items():
                        if param is not None:
                            current._parameters[name] = nn.Parameter(param.detach().clone(),
                                                                     requires_grad=param.requires_grad)
                    for name, buffer in original._buffers.items():
                        if buffer is not None:
                            current._buffers[name] = buffer.detach().clone()
                parent._modules[part] = current
            parent, source = current, original
    adopt(root, model)
    return root.eval()


def perturb(model: nn.Module, units: dict[str, list[int]], forget_class: int, spec: PerturbationSpec,
            input_shape) -> nn.Module:
    """Perturbed copy of ``model`` for the selected ``units`` (stage name -> unit indices)."""
    return apply_edits(model, plan_edits(model, units, forget_class, spec, input_shape), spec)
