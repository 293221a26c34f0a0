"""Stage 2, models: the architectures the project defines, checkpoints and their cards, files
brought from elsewhere (ONNX, ``torch.export``), training, and the model as a graph.

``registry`` (a name, a builder) -> ``cards`` (what a checkpoint is) -> ``checkpoints`` (safe save
and load) -> ``formats`` (imported programs) -> ``graph`` and ``wiring`` (layers, cuts, which rows
make a unit) -> ``compute`` (devices and activation caches) -> ``train``.
"""
from __future__ import annotations

from core import lazy

_SOURCES = {
    'core.models.cards': ('ModelCard', 'card_path', 'read_card', 'shipped_checkpoints'),
    'core.models.checkpoints': ('clone_model', 'file_checksum', 'load_checkpoint', 'save_checkpoint', 'shipped_checkpoint', 'state_checksum'),
    'core.models.graph': ('ModelGraph', 'graph_of'),
    'core.models.registry': ('ARCHITECTURES', 'build_model'),
}
__getattr__, __dir__, __all__ = lazy.exports(__name__, _SOURCES)
