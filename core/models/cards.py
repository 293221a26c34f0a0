"""A model card: what a checkpoint is (architecture, dataset, classes, input shape, normalisation)
and how it was made (seed, recipe, accuracy), stored beside the weights or inside them.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import UserError


@dataclass
class ModelCard:
    """What a checkpoint is: enough to rebuild, normalise inputs and reproduce it."""

    arch: str
    dataset: str
    classes: list[str]
    input_shape: list[int]
    mean: list[float]
    std: list[float]
    seed: int = 0
    command: str = ""
    per_class_accuracy: list[float] = field(default_factory=list)
    test_accuracy: float | None = None
    created: str = ""
    notes: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        missing = {"arch", "dataset", "classes", "input_shape", "mean", "std"} - set(known)
        if missing:
            raise UserError(f"The model card is missing {', '.join(sorted(missing))}.")
        return cls(**known)


def card_path(weights_path: str | Path) -> Path:
    return Path(weights_path).with_suffix(".json")


def read_card(path: str | Path) -> ModelCard | None:
    """The model card beside a model file (``<stem>.json``), None when there is none."""
    side = card_path(path)
    if not side.is_file():
        return None
    try:
        return ModelCard.from_dict(json.loads(side.read_text()))
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise UserError(f"The model card '{side.name}' is not a valid model card (JSON object with arch, dataset, "
                        "classes, input_shape, mean and std).") from exc
