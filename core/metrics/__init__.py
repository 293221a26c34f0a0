"""Stage 5, metrics: how well a class is forgotten and what it cost.

``evaluate`` (forget and retain accuracy, per class, membership inference) -> ``probes`` (features,
a linear probe for the class, relearning steps).
"""
from core.metrics.evaluate import Evaluation, evaluate, membership_inference, summarize

__all__ = ["Evaluation", "evaluate", "membership_inference", "summarize"]
