"""The LRP rules the engine knows and the settings that pick one (:class:`LRP`), without torch:
the dashboard reads a shared link's rule before it imports the engine. The rules themselves are
applied in :mod:`core.attribution.relevance`."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import UserError

if TYPE_CHECKING:
    from core.attribution.relevance import RelevanceAnalyzer


RULES = ("epsilon", "epsilon-plus-flat", "alpha1-beta0", "alpha2-beta1", "gamma")


@dataclass(frozen=True)
class LRP:
    """Which LRP rule explains the model: ``rule`` (one of :data:`RULES`) with stabiliser ``epsilon``
    (the epsilon rule's :math:`z_j + \\epsilon \\operatorname{sign}(z_j)` in every denominator)."""

    rule: str = "epsilon"
    epsilon: float = 0.1

    def __post_init__(self):
        if self.rule not in RULES:
            raise UserError(f"Unknown LRP rule '{self.rule}'; choose one of {', '.join(RULES)}.")
        if not isinstance(self.epsilon, (int, float)) or not math.isfinite(self.epsilon) or self.epsilon <= 0:
            raise UserError(f"The LRP epsilon must be a positive number, got {self.epsilon!r}.")

    def analyzer(self, model) -> "RelevanceAnalyzer":
        """A fresh analyzer of ``model`` with this rule (one per thread: it hooks a private twin)."""
        from core.attribution.relevance import RelevanceAnalyzer

        return RelevanceAnalyzer(model, self.rule, self.epsilon)
