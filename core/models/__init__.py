"""Stage 2, models: the architectures the project defines, checkpoints and their cards, files
brought from elsewhere (ONNX, ``torch.export``), training, and the model as a graph.

``registry`` (a name, a builder) -> ``cards`` (what a checkpoint is) -> ``checkpoints`` (safe save
and load) -> ``formats`` (imported programs) -> ``graph`` and ``wiring`` (layers, cuts, which rows
make a unit) -> ``compute`` (devices and activation caches) -> ``train``.
"""
from core.models.cards import ModelCard, card_path, read_card
from core.models.checkpoints import (clone_model, file_checksum, load_checkpoint, save_checkpoint, shipped_checkpoint,
                                     shipped_checkpoints, state_checksum)
from core.models.graph import ModelGraph, graph_of
from core.models.registry import ARCHITECTURES, build_model

__all__ = ["ARCHITECTURES", "ModelCard", "ModelGraph", "build_model", "card_path", "clone_model", "file_checksum",
           "graph_of", "load_checkpoint", "read_card", "save_checkpoint", "shipped_checkpoint", "shipped_checkpoints",
           "state_checksum"]
