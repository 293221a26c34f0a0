"""Neuronal path perturbation: edit the weights around selected units, on a copy of the model.

For units U read at the output of a stage, with strength s in [0, 1]:

* ``in``  - the producing layer's rows W[U] (and bias b[U] unless ``keep_bias``; and the following
  BatchNorm's gamma[U], beta[U], since a zeroed filter alone leaves the BN shift), and
* ``out`` - the consuming layer's columns W[:, U]: only the forget-class row when the consumer is the
  classifier (the authors' MNIST recipe), every row otherwise or with ``out_classes="all"``.

``zero`` scales the chosen entries by (1 - s); ``gaussian`` / ``laplace`` add s * N(0, 1) /
s * Laplace(0, 1) noise (the authors' GN / LN baselines). The source model is never changed:
:func:`perturb` returns a new model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from core.compute import stage_index_of
from core.errors import UserError
from core.models import classifier_name, clone_model

METHODS = ("zero", "gaussian", "laplace")
TARGETS = ("in", "out", "both")
_PASS_THROUGH = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Identity,
                 nn.BatchNorm2d, nn.BatchNorm1d)


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


def _stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if not isinstance(model, nn.Sequential):
        raise UserError("Perturbing stage outputs needs a Sequential model (every built-in architecture is one).")
    return list(model.named_children())


_SIZES: dict[tuple, dict[str, tuple[int, int]]] = {}


def _spatial_sizes(model: nn.Module, input_shape) -> dict[str, tuple[int, int]]:
    """Per stage, the spatial size (H*W, or 1 for flat tensors) of its input and of its output,
    from one forward pass of a blank image; remembered per architecture (the stages' reprs) and
    input shape, since weight edits never change them."""
    key = (tuple(input_shape), tuple((name, repr(module)) for name, module in model.named_children()))
    if key not in _SIZES:
        if len(_SIZES) >= 64:
            _SIZES.clear()
        _SIZES[key] = _measure_spatial_sizes(model, input_shape)
    return dict(_SIZES[key])


def _measure_spatial_sizes(model: nn.Module, input_shape) -> dict[str, tuple[int, int]]:
    param = next(model.parameters(), None)
    sizes, x = {}, torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu")
    with torch.no_grad():
        for name, module in model.named_children():
            before = int(x[0, 0].numel()) if x.dim() == 4 else 1
            x = module(x)
            sizes[name] = (before, int(x[0, 0].numel()) if x.dim() == 4 else 1)
    return sizes


def _producer_edits(model: nn.Module, stage: str, units: list[int], keep_bias: bool, spatial: int) -> list[ParamEdit]:
    """Rows of the Conv/Linear that produces ``stage``'s output, and any BatchNorm in between."""
    stages = _stages(model)
    names = [n for n, _ in stages]
    channels = tuple(sorted({u // spatial for u in units})) if spatial > 1 else tuple(units)
    edits: list[ParamEdit] = []
    for name, module in reversed(stages[: names.index(stage) + 1]):
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if not keep_bias:
                edits += [ParamEdit(f"{name}.weight", channels), ParamEdit(f"{name}.bias", channels)]
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            edits.append(ParamEdit(f"{name}.weight", channels))
            if module.bias is not None and not keep_bias:
                edits.append(ParamEdit(f"{name}.bias", channels))
            return edits
        elif not isinstance(module, _PASS_THROUGH + (nn.Flatten,)):
            break
    raise UserError(f"Layer '{stage}' is not produced by a Conv or Linear layer, so target 'in' cannot reach it; "
                    "use target 'out'.")


def _consumer_edits(model: nn.Module, stage: str, units: list[int], forget_class: int, out_classes: str,
                    spatial: int) -> list[ParamEdit]:
    """Columns of the next Conv/Linear that reads ``stage``'s units."""
    stages = _stages(model)
    names = [n for n, _ in stages]
    flattened = False
    for name, module in stages[names.index(stage) + 1:]:
        if isinstance(module, nn.Flatten):
            flattened = True
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            if flattened and spatial > 1:
                cols = tuple(c * spatial + p for c in sorted({u // spatial for u in units}) for p in range(spatial))
            else:
                cols = tuple(units)
            is_classifier = name == classifier_name(model)
            rows = (forget_class,) if is_classifier and out_classes == "forget" else None
            return [ParamEdit(f"{name}.weight", rows, cols)]
        elif not isinstance(module, _PASS_THROUGH):
            break
    raise UserError(f"No Conv or Linear layer reads '{stage}' directly, so target 'out' cannot reach it; use target 'in'.")


def plan_edits(model: nn.Module, units: dict[str, list[int]], forget_class: int, spec: PerturbationSpec,
               input_shape) -> list[ParamEdit]:
    """Every parameter entry the perturbation touches, for units selected per stage."""
    edits: list[ParamEdit] = []
    stages = dict(_stages(model))
    sizes = _spatial_sizes(model, input_shape)
    for stage, selected in units.items():
        if not selected:
            continue
        if stage not in stages:
            raise UserError(f"'{stage}' is not a top-level stage of the model; perturbation works on stage outputs.")
        spatial_in, spatial_out = sizes[stage]
        if spec.target in ("in", "both"):
            # a Flatten stage's units are conv positions: unit u belongs to channel u // (H*W)
            flattened = spatial_in if isinstance(stages[stage], nn.Flatten) else 1
            edits += _producer_edits(model, stage, selected, spec.keep_bias, flattened)
        if spec.target in ("out", "both"):
            edits += _consumer_edits(model, stage, selected, forget_class, spec.out_classes, spatial_out)
    return edits


def first_changed_stage(model: nn.Module, edits: list[ParamEdit]) -> int:
    """Index of the earliest top-level stage an edit touches (the activation cache's start)."""
    return min((stage_index_of(model, e.param) for e in edits), default=len(list(model.children())))


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


def apply_edits(model: nn.Module, edits: list[ParamEdit], spec: PerturbationSpec) -> nn.Module:
    """A perturbed copy of ``model``; noise is drawn from a generator seeded with ``spec.seed``."""
    return edit_in_place(clone_model(model), edits, spec, torch.Generator().manual_seed(spec.seed))


def perturb(model: nn.Module, units: dict[str, list[int]], forget_class: int, spec: PerturbationSpec,
            input_shape) -> nn.Module:
    """Perturbed copy of ``model`` for the selected ``units`` (stage name -> unit indices)."""
    return apply_edits(model, plan_edits(model, units, forget_class, spec, input_shape), spec)
