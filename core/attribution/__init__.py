"""Stage 3, attribution: which hidden units carry a class.

``canonizers`` (the model rewritten so that zennit's LRP rules apply) -> ``relevance`` (LRP relevance
of every unit of a layer, per image) -> ``paths`` (the neuronal path: the units selected per layer).
"""
from __future__ import annotations

from core import lazy

_SOURCES = {
    'core.attribution.paths': ('LayerSelection', 'NeuronPath', 'find_path'),
    'core.attribution.relevance': ('RelevanceAnalyzer',),
    'core.attribution.rules': ('LRP', 'RULES'),
}
__getattr__, __dir__, __all__ = lazy.exports(__name__, _SOURCES)
