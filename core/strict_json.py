"""Strict JSON in and out: what the project writes (``--json`` reports, model cards, benchmark
metadata) and reads back must be JSON as RFC 8259 defines it, which has no NaN or infinities.

A number that is not finite (an accuracy over a class with no images, for instance) is written as
``null``, meaning "not measured"; reading refuses the ``NaN`` / ``Infinity`` literals that Python's
:mod:`json` accepts by default.
"""
from __future__ import annotations

import json
import math


def finite_or_none(value):
    """``value`` with every float that is not finite replaced by None, through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def dumps(value, **kwargs) -> str:
    """``json.dumps`` of ``value`` with non-finite numbers as null and ``allow_nan=False``."""
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str | bytes):
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity`` (ValueError, as for any
    other malformed JSON)."""
    return json.loads(text, parse_constant=_refuse_constant)
