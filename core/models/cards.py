"""A model card: what a checkpoint is (architecture, dataset, classes, input shape, normalisation)
and how it was made (seed, recipe, accuracy), stored beside the weights or inside them.

A card is checked where it enters (a sidecar file, the safetensors metadata, an upload, or code
that builds one): every field has a type and a range, and a card that breaks one is refused with
one sentence naming the field. The input shape is capped (:data:`MAX_SIDE`, :data:`MAX_VALUES`)
because models are built and traced on images of that shape. Cards are strict JSON
(:mod:`core.strict_json`): an accuracy that was not measured is ``null``, never ``NaN``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core import strict_json
from core.errors import UserError


MIN_CLASSES, MAX_CLASSES = 2, 100_000
MAX_CHANNELS = 1024
MAX_SIDE = 8192                 # pixels, height or width
MAX_VALUES = 2 ** 24            # C x H x W of one image (a 3 x 2048 x 2048 image has 12.6 million)
MAX_CARD_BYTES = 16 * 2 ** 20
SEED_LIMIT = 2 ** 63 - 1
REQUIRED = ("arch", "dataset", "classes", "input_shape", "mean", "std")


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_float(value) -> float | None:
    """A number as a float (NaN stays NaN), None when it is no number or too large for a float."""
    if not _is_number(value):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _finite(value) -> bool:
    number = _as_float(value)
    return number is not None and math.isfinite(number)


def _share(value) -> bool:
    """None, NaN (not measured) or a number in [0, 1]."""
    number = _as_float(value)
    return value is None or number is not None and (math.isnan(number) or 0 <= number <= 1)


@dataclass
class ModelCard:
    """What a checkpoint is: enough to rebuild, normalise inputs and reproduce it.

    ``input_shape`` is (C, H, W); ``mean`` and ``std`` have one finite entry per channel (std > 0);
    ``per_class_accuracy`` has one entry per class in [0, 1], or None for a class that was not
    measured (no test images), or is empty."""

    arch: str
    dataset: str
    classes: list[str]
    input_shape: list[int]
    mean: list[float]
    std: list[float]
    seed: int = 0
    command: str = ""
    per_class_accuracy: list[float | None] = field(default_factory=list)
    test_accuracy: float | None = None
    created: str = ""
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check("The model card")

    def check(self, source: str) -> None:
        """Raise one UserError sentence, starting with ``source``, for the first field out of its
        type or range; normalise lists (tuples become lists) and unmeasured accuracies (None)."""
        def bad(name: str, must: str, value) -> UserError:
            return UserError(f"{source} is not valid: '{name}' must be {must}, got {_shown(value)}.")

        for name in ("arch", "dataset"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or len(value) > 1000:
                raise bad(name, "a non-empty name (text)", value)
        for name in ("command", "created"):
            if not isinstance(getattr(self, name), str):
                raise bad(name, "text", getattr(self, name))
        classes = self.classes
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes) \
                or not MIN_CLASSES <= len(classes) <= MAX_CLASSES:
            raise bad("classes", f"a list of {MIN_CLASSES} to {MAX_CLASSES} class names (text)", classes)
        self.classes = list(classes)
        shape = self.input_shape
        if not isinstance(shape, (list, tuple)) or len(shape) != 3 or not all(_is_whole(d) for d in shape) \
                or not (1 <= shape[0] <= MAX_CHANNELS and all(1 <= d <= MAX_SIDE for d in shape[1:])) \
                or math.prod(shape) > MAX_VALUES:
            raise bad("input_shape", f"three whole numbers [C, H, W] with 1 <= C <= {MAX_CHANNELS}, "
                      f"1 <= H, W <= {MAX_SIDE} and C x H x W <= {MAX_VALUES}", shape)
        self.input_shape = list(shape)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or len(value) != shape[0] \
                    or not all(_finite(v) for v in value) \
                    or (name == "std" and not all(v > 0 for v in value)):
                what = "positive finite numbers" if name == "std" else "finite numbers"
                raise bad(name, f"a list of {shape[0]} {what}, one per input channel", value)
            setattr(self, name, [float(v) for v in value])
        if not _is_whole(self.seed) or not 0 <= self.seed <= SEED_LIMIT:
            raise bad("seed", f"a whole number from 0 to {SEED_LIMIT}", self.seed)
        accuracy = self.per_class_accuracy
        if not isinstance(accuracy, (list, tuple)) or len(accuracy) not in (0, len(self.classes)) \
                or not all(_share(v) for v in accuracy):
            raise bad("per_class_accuracy", f"empty or {len(self.classes)} accuracies in [0, 1] (null: not "
                      "measured)", accuracy)
        self.per_class_accuracy = [None if v is None or math.isnan(v) else float(v) for v in accuracy]
        test = self.test_accuracy
        if not _share(test):
            raise bad("test_accuracy", "an accuracy in [0, 1] or null", test)
        self.test_accuracy = None if test is None or math.isnan(test) else float(test)
        if not isinstance(self.notes, dict):
            raise bad("notes", "a JSON object", self.notes)
        self.notes = strict_json.finite_or_none(self.notes)   # as the card's JSON will hold them

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> str:
        """Strict JSON (non-finite numbers in the notes become null)."""
        return strict_json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict, source: str = "The model card") -> "ModelCard":
        """A card from parsed JSON; unknown keys are ignored, missing or bad fields are one sentence."""
        if not isinstance(data, dict):
            kind = {list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false",
                    type(None): "null"}.get(type(data), type(data).__name__)
            raise UserError(f"{source} must be a JSON object with {', '.join(REQUIRED)}; it is {kind}.")
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise UserError(f"{source} is missing {', '.join(missing)}.")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        card = object.__new__(cls)
        for name, f in cls.__dataclass_fields__.items():
            default = f.default_factory() if callable(f.default_factory) else f.default
            setattr(card, name, known.get(name, default))
        card.check(source)
        return card


def parse_card(data: bytes | str, source: str = "The model card") -> ModelCard:
    """A card from the bytes of a JSON file (UTF-8, at most :data:`MAX_CARD_BYTES`), or one sentence
    saying what is wrong with it."""
    if len(data) > MAX_CARD_BYTES:
        raise UserError(f"{source} is {len(data) / 2 ** 20:.0f} MB; a model card is at most "
                        f"{MAX_CARD_BYTES // 2 ** 20} MB of JSON.")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UserError(f"{source} is not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON.") from None
    try:
        parsed = strict_json.loads(data)
    except RecursionError:
        raise UserError(f"{source} is nested too deeply to be a model card.") from None
    except ValueError as exc:
        where = f" (line {exc.lineno}, column {exc.colno}: {exc.msg})" if hasattr(exc, "lineno") else f" ({exc})"
        raise UserError(f"{source} is not valid JSON{where}.") from None
    return ModelCard.from_dict(parsed, source)


def card_path(weights_path: str | Path) -> Path:
    return Path(weights_path).with_suffix(".json")


def read_card(path: str | Path) -> ModelCard | None:
    """The model card beside a model file (``<stem>.json``), None when there is none."""
    side = card_path(path)
    if not side.is_file():
        return None
    try:
        with open(side, "rb") as fh:
            data = fh.read(MAX_CARD_BYTES + 1)
    except OSError as exc:
        raise UserError(f"The model card '{side.name}' could not be read ({exc.strerror}).") from exc
    return parse_card(data, f"The model card '{side.name}'")


ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
MODEL_SUFFIXES = (".safetensors", ".onnx", ".pt2")


def shipped_checkpoints() -> list[tuple[Path, ModelCard]]:
    """Every shipped model (safetensors, ONNX, .pt2) with its card, sorted by path."""
    found = []
    for path in sorted(p for p in ASSETS_DIR.glob("*/*") if p.suffix in MODEL_SUFFIXES):
        card = read_card(path)
        if card is not None:
            found.append((path, card))
    return found
