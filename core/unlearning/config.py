"""Every setting of neuronal-path unlearning, nested by the stage that uses it.

:class:`UnlearnConfig` holds one small frozen part per stage, each defined (and checked) by the
module that uses it:

=============== ================================================ ============================
part            what it decides                                   defined in
=============== ================================================ ============================
``lrp``         the LRP rule                                      :mod:`core.attribution.relevance`
``selection``   which units make the path (K, H, layers)          :mod:`core.attribution.paths`
``perturbation`` how the path's weights are changed                :mod:`core.unlearning.perturb`
``calibration`` H (and the target) chosen on validation images    :mod:`core.unlearning.calibration`
``erasure``     the class direction erased before the classifier  :mod:`core.unlearning.erase`
``relabel``     the forget images' second choice taught           :mod:`core.unlearning.relabel`
``repair``      the retain classes' logits brought back           :mod:`core.unlearning.repair`
=============== ================================================ ============================

``calibration``, ``erasure``, ``relabel`` and ``repair`` are ``None`` when that stage is skipped. Rules that
join two parts are checked when the config is made. :data:`PAPER_CONFIG` is the authors' recipe,
:data:`OURS_CONFIG` this project's default; :meth:`UnlearnConfig.override` changes any setting by its
dotted name (``{"erasure.budget": 0.01}``), from Python values or from the text a command line gives.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields, replace

from core.attribution.paths import Selection
from core.attribution.rules import LRP
from core.errors import UserError
from core.unlearning.calibration import Calibration
from core.unlearning.erase import Erasure
from core.unlearning.perturb import PerturbationSpec
from core.unlearning.relabel import Relabel
from core.unlearning.repair import Repair

PARTS: dict[str, type] = {"lrp": LRP, "selection": Selection, "perturbation": PerturbationSpec,
                          "calibration": Calibration, "erasure": Erasure, "relabel": Relabel, "repair": Repair}
OPTIONAL_PARTS = ("calibration", "erasure", "relabel", "repair")
SEED_LIMIT = 2 ** 63 - 1


@dataclass(frozen=True)
class UnlearnConfig:
    """The settings of one unlearning run (see the module docstring).

    ``validation_fraction``: share of the analysis pool held back to validate calibration, erasure,
    relabelling and repair; ``seed``: the run's seed (pool split, image samples, the perturbation's noise)."""

    lrp: LRP = field(default_factory=LRP)
    selection: Selection = field(default_factory=Selection)
    perturbation: PerturbationSpec = field(default_factory=PerturbationSpec)
    calibration: Calibration | None = None
    erasure: Erasure | None = None
    relabel: Relabel | None = None
    repair: Repair | None = None
    validation_fraction: float = 0.5
    seed: int = 0

    def __post_init__(self):
        for name, kind in PARTS.items():
            value = getattr(self, name)
            if not (isinstance(value, kind) or value is None and name in OPTIONAL_PARTS):
                raise UserError(f"The config's '{name}' must be a {kind.__name__}"
                                f"{' or None' if name in OPTIONAL_PARTS else ''}, got {value!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= SEED_LIMIT:
            raise UserError(f"The seed must be a whole number in 0..{SEED_LIMIT}, got {self.seed!r}.")
        if isinstance(self.validation_fraction, bool) or not isinstance(self.validation_fraction, (int, float)) \
                or not 0 < self.validation_fraction < 1:
            raise UserError(f"validation_fraction must be a share in (0, 1), got {self.validation_fraction!r}.")
        if self.calibration is not None and self.selection.h is not None:
            raise UserError("Calibration chooses H on the validation images; leave selection.h unset (none), "
                            "or drop the calibration to give H yourself.")
        if self.calibration is None and self.selection.h is None:
            raise UserError("selection.h is unset, so H must be calibrated; give H (a count or a share) "
                            "or a calibration.")
        if self.perturbation.seed != self.seed:          # one seed for the run, the noise's included
            object.__setattr__(self, "perturbation", replace(self.perturbation, seed=self.seed))

    @property
    def validated(self) -> bool:
        """Whether any stage needs the validation part of the pool."""
        return any(getattr(self, name) is not None for name in OPTIONAL_PARTS)

    @property
    def has_last_stages(self) -> bool:
        """Whether any stage after the perturbation (erasure, relabelling, repair) runs."""
        return any(getattr(self, name) is not None for name in OPTIONAL_PARTS[1:])

    def targets(self) -> tuple[str, ...]:
        """The perturbation targets tried, in order (more than one only under calibration)."""
        if self.calibration is not None and self.calibration.targets:
            return self.calibration.targets
        return (self.perturbation.target,)

    def to_dict(self) -> dict:
        """Nested plain values (JSON-ready); skipped stages are ``None``."""
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, object]:
        """Every setting by its dotted name (``"erasure.budget"``); a skipped stage as ``"erasure": None``."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in PARTS and value is not None:
                out.update({f"{f.name}.{g.name}": getattr(value, g.name) for g in fields(value)
                            if not (f.name == "perturbation" and g.name == "seed")})
            else:
                out[f.name] = value
        return out

    def override(self, changes: dict[str, object]) -> "UnlearnConfig":
        """A copy with ``changes`` applied, by dotted name: ``{"erasure.budget": 0.01}``,
        ``{"relabel": None}`` (skip a stage), ``{"calibration": "default"}`` (its default settings).
        Values may be text (from a command line); they are read by the setting's type. Setting a
        field of a skipped stage turns the stage on with its defaults. Unknown names and values of
        the wrong kind raise :class:`UserError`."""
        parts = {f.name: getattr(self, f.name) for f in fields(self)}
        grouped: dict[str, dict[str, object]] = {}
        for key, value in changes.items():
            name, _, sub = str(key).partition(".")
            if name not in parts:
                raise UserError(f"Unknown setting '{key}'; the settings are {', '.join(sorted(self._names()))}.")
            if not sub:
                parts[name] = _whole_value(name, value, parts[name])
                grouped.pop(name, None)
                continue
            if name not in PARTS:
                raise UserError(f"Unknown setting '{key}'; '{name}' has no parts.")
            kind = PARTS[name]
            if sub not in {f.name for f in fields(kind)}:
                raise UserError(f"Unknown setting '{key}'; {name} has {', '.join(f.name for f in fields(kind))}.")
            grouped.setdefault(name, {})[sub] = _read(value, typing.get_type_hints(kind)[sub], key)
        for name, values in grouped.items():
            base = parts[name] if parts[name] is not None else PARTS[name]()
            parts[name] = replace(base, **values)
        return UnlearnConfig(**parts)

    def _names(self) -> list[str]:
        return [f"{n}.{f.name}" for n, kind in PARTS.items() for f in fields(kind)
                if (n, f.name) != ("perturbation", "seed")] + \
               ["validation_fraction", "seed", *OPTIONAL_PARTS]


def _whole_value(name: str, value, current):
    """A whole part (or a top-level setting) given at once."""
    if name in PARTS:
        kind = PARTS[name]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off")):
            if name not in OPTIONAL_PARTS:
                raise UserError(f"'{name}' cannot be skipped; change its settings instead ({name}.NAME=VALUE).")
            return None
        if isinstance(value, str) and value.strip().lower() in ("default", "on", "auto"):
            return current if current is not None else kind()
        if isinstance(value, kind):
            return value
        if isinstance(value, dict):
            return kind(**{k: _read(v, typing.get_type_hints(kind)[k], f"{name}.{k}") for k, v in value.items()})
        raise UserError(f"'{name}' takes none, default, or its settings one by one ({name}.NAME=VALUE); "
                        f"got {value!r}.")
    hint = typing.get_type_hints(UnlearnConfig)[name]
    return _read(value, hint, name)


def _read(value, hint, key: str):
    """``value`` as the type ``hint`` names; text is parsed (numbers, none, true/false, lists)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if type(None) in options and text.lower() in ("none", "null", ""):
        return None
    for option in options:
        if option is bool and text.lower() in ("true", "false", "yes", "no", "1", "0"):
            return text.lower() in ("true", "yes", "1")
        if option is int:
            try:
                return int(text)
            except ValueError:
                pass
        if option is float:
            try:
                number = float(text)
            except ValueError:
                continue
            if not math.isfinite(number):
                raise UserError(f"{key} must be a finite number, got '{value}'.")
            return number
        if typing.get_origin(option) is tuple:
            return tuple(part.strip() for part in text.split(",") if part.strip())
    if str in options:
        return text
    raise UserError(f"{key} does not take '{value}'.")


# The authors' recipe (epsilon LRP at the classifier input, frequency selection, K=50 and H=80 of
# 512 units as shares of the layer width, zero the units' incoming rows (bias kept) and their
# weight to the forget class).
PAPER_CONFIG = UnlearnConfig(perturbation=PerturbationSpec(keep_bias=True))

# This project's default (chosen on the validation part of the pool, see BENCHMARKS.md): rank the
# classifier-input units by class contrast, calibrate how many to take on held-out pool images,
# cut their weights to the forget class, or silence them completely (incoming rows, bias, BatchNorm)
# where that forgets more of the validation images, with no single retain class losing more than
# 2 points of validation accuracy (one image in 50) besides the budget on the mean, then erase the class direction from the
# layers before the classifier, teach the classifier to give the class's images their second
# choice as surely as a model that never learned the class would, and refit it so that the other
# classes' logits come back to the original model's.
OURS_CONFIG = UnlearnConfig(selection=Selection(method="contrast", h=None),
                            calibration=Calibration(retain_budget=0.02, class_budget=0.02, targets=("out", "both")),
                            erasure=Erasure(), relabel=Relabel(), repair=Repair())

RECIPES: dict[str, UnlearnConfig] = {"ours": OURS_CONFIG, "paper": PAPER_CONFIG}


def default_config() -> UnlearnConfig:
    """The settings ``python -m core unlearn`` and the dashboard start from."""
    return OURS_CONFIG
