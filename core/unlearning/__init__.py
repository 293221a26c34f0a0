"""Stage 4, unlearning: the class removed from a model using the analysis pool only.

``config`` (every setting, the authors' recipe and the default) -> ``perturb`` (editing the path's
weights) -> ``erase`` (the class direction erased before the classifier) -> ``relabel`` (the
forget images given their second choice) -> ``pipeline`` (:func:`unlearn`) -> ``explorer`` (the
dashboard's slider: re-running only what a new strength changes).
"""
from core.unlearning.config import OURS_CONFIG, PAPER_CONFIG, UnlearnConfig, default_config
from core.unlearning.explorer import PerturbationExplorer
from core.unlearning.perturb import PerturbationSpec, perturb
from core.unlearning.pipeline import UnlearnResult, unlearn

__all__ = ["OURS_CONFIG", "PAPER_CONFIG", "PerturbationExplorer", "PerturbationSpec", "UnlearnConfig",
           "UnlearnResult", "default_config", "perturb", "unlearn"]
