"""The model zoo: every shipped checkpoint with its card and whether its dataset is on this
machine, read from the cards and the file names alone (no torch), so that the dashboard's first
page lists the models before torch is imported (:mod:`core.ui.model_store` loads them).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.data.locate import dataset_available
from core.models.cards import ModelCard, shipped_checkpoints

DEFAULT_MODEL = "shipped:digits/cnn"             # works offline, no files beyond the repository
PREFERRED_MODEL = "shipped:mnist/cnn"            # the default wherever MNIST's data is present


@dataclass(frozen=True)
class ZooEntry:
    """A shipped checkpoint and whether its dataset is present on this machine."""

    key: str
    path: Path
    card: ModelCard
    available: bool
    reason: str

    @property
    def name(self) -> str:
        return f"{self.card.dataset} / {self.card.arch}"


def model_zoo(data_dir: str | None = None) -> list[ZooEntry]:
    """Every shipped checkpoint, marked available when its dataset can be loaded from local files."""
    entries = []
    for path, card in shipped_checkpoints():
        ok, reason = dataset_available(card.dataset, data_dir)
        entries.append(ZooEntry(f"shipped:{path.parent.name}/{path.stem}", path, card, ok, reason))
    return entries


def default_model_key(entries: list[ZooEntry]) -> str:
    """MNIST's cnn where its data is present (``UNLEARN_DATA_DIR``), else the bundled digits model."""
    available = {e.key for e in entries if e.available}
    return PREFERRED_MODEL if PREFERRED_MODEL in available else DEFAULT_MODEL
