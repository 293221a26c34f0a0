"""Stage 3, attribution: which hidden units carry a class.

``canonizers`` (the model rewritten so that zennit's LRP rules apply) -> ``relevance`` (LRP relevance
of every unit of a layer, per image) -> ``paths`` (the neuronal path: the units selected per layer).
"""
from core.attribution.paths import LayerSelection, NeuronPath, find_path
from core.attribution.relevance import RULES, RelevanceAnalyzer

__all__ = ["RULES", "LayerSelection", "NeuronPath", "RelevanceAnalyzer", "find_path"]
