"""The Unlearn and Neuron paths pages' settings as a shareable URL (``?model=mnist/cnn&forget=7``).

:func:`read_params` turns query parameters into checked settings (unknown or bad values are left
out, so a stale link still opens); :func:`write_params` is the reverse. K and H are percentages of
the layer width; H may also be ``calibrate`` or ``auto``.
"""
from __future__ import annotations

import math

METHODS = ("zero", "gaussian", "laplace")
TARGETS = ("auto", "in", "out", "both")
H_MODES = ("calibrate", "auto")
SELECTIONS = ("contrast", "frequency")


def _number(text, low: float, high: float) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and low <= value <= high else None


def read_params(params: dict[str, str], model_keys: list[str], rules: tuple[str, ...] = ()) -> dict:
    """Checked settings from a URL's query parameters: ``model`` (a zoo key), ``forget`` (int),
    ``method``, ``target``, ``strength`` (0-1, in steps of 0.05), ``k`` (1-50 %), ``h`` (1-90 % or a
    mode), ``selection``, ``layers`` (comma-separated), ``rule``."""
    out: dict = {}
    model = params.get("model")
    if model and f"shipped:{model}" in model_keys:
        out["model"] = f"shipped:{model}"
    if str(params.get("forget", "")).isdigit():
        out["forget"] = int(params["forget"])
    for name, allowed in (("method", METHODS), ("target", TARGETS), ("selection", SELECTIONS), ("rule", rules)):
        if params.get(name) in allowed:
            out[name] = params[name]
    strength = _number(params.get("strength"), 0.0, 1.0)
    if strength is not None:
        out["strength"] = round(round(strength / 0.05) * 0.05, 2)
    k = _number(params.get("k"), 1.0, 50.0)
    if k is not None:
        out["k"] = round(k * 2) / 2
    h = params.get("h")
    if h in H_MODES:
        out["h_mode"] = h
    elif _number(h, 1.0, 90.0) is not None:
        out["h_mode"], out["h"] = "share", round(float(h) * 2) / 2
    if params.get("layers"):
        out["layers"] = [p for p in str(params["layers"]).split(",") if p]
    return out


def write_params(settings: dict) -> dict[str, str]:
    """Query parameters for the settings (the inverse of :func:`read_params`)."""
    out = {}
    if settings.get("model", "").startswith("shipped:"):
        out["model"] = settings["model"].split(":", 1)[1]
    for name in ("forget", "method", "target", "selection", "rule"):
        if settings.get(name) is not None:
            out[name] = str(settings[name])
    if settings.get("strength") is not None:
        out["strength"] = f"{float(settings['strength']):.2f}"
    if settings.get("k") is not None:
        out["k"] = f"{float(settings['k']):g}"
    mode = settings.get("h_mode")
    if mode in H_MODES:
        out["h"] = mode
    elif settings.get("h") is not None:
        out["h"] = f"{float(settings['h']):g}"
    if settings.get("layers"):
        out["layers"] = ",".join(settings["layers"])
    return out
