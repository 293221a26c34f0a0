"""Streamlit glue shared by the pages: the current model, cached computations, the sidebar.

Everything cached with ``st.cache_resource`` is shared by all sessions and threads, so it is only
ever read: core functions return new models and never change their inputs. Arguments whose name
starts with ``_`` are not hashed by Streamlit; each such function takes a string id instead
(``model_id`` = the model's state checksum) so that the cache key still names the model.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from core import ui
from core.errors import UserError

if TYPE_CHECKING:
    from core.metrics.evaluate import Evaluation


PAGES = {"model": "pages/1_model.py", "relevance": "pages/2_relevance.py", "paths": "pages/3_paths.py",
         "unlearn": "pages/4_unlearn.py", "compare": "pages/5_compare.py"}


_RUN = threading.local()          # per script-run thread: is app.py's navigation running this page?
BACKGROUND = "unlearning-lab-"    # the name prefix of this app's background threads (warm-up, prefetch)


class _QuietBackground(logging.Filter):
    """Streamlit warns "missing ScriptRunContext" whenever a cached function runs outside a script run;
    this app's background threads do that on purpose, so their warnings are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not threading.current_thread().name.startswith(BACKGROUND)


_CONTEXT_LOG = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
if not any(isinstance(f, _QuietBackground) for f in _CONTEXT_LOG.filters):
    _CONTEXT_LOG.addFilter(_QuietBackground())
_EXITING = threading.Event()


@atexit.register
def _finish_background() -> None:
    """At interpreter exit, let the background threads finish the step they are on: torch aborts the
    whole process ("terminate called without an active exception") if a thread is still inside it
    while the interpreter goes."""
    _EXITING.set()
    for thread in threading.enumerate():
        if thread.name.startswith(BACKGROUND):
            thread.join(timeout=120)


@contextmanager
def inside_app():
    """app.py runs the chosen page inside this, so that the page knows it came through app.py."""
    _RUN.active = True
    try:
        yield
    finally:
        _RUN.active = False


def ensure_navigation(entry: bool = False) -> None:
    """Make every run go through ``app.py``'s ``st.navigation``, never Streamlit's legacy pages/ mode.

    Because this project keeps its pages in ``pages/``, Streamlit (1.67) starts a server's first
    script run (and every AppTest run) in its old "pages directory" mode. There a URL such as
    /unlearn runs the page file alone, without app.py: no sidebar, and it stays broken on later
    reruns. ``st.navigation`` switches that mode off. app.py calls this with ``entry=True`` (switch
    it off, its own ``st.navigation`` takes over); a page file run alone (not inside
    :func:`inside_app`) runs app.py in its place, which runs the page properly, and then stops."""
    from streamlit.runtime.pages_manager import PagesManager   # private: fenced by tests/test_app.py

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
    if entry or getattr(_RUN, "active", False):
        return
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"), run_name="__main__")
    st.stop()


@st.cache_resource(show_spinner=False)
def favicon():
    """The tab icon, drawn locally: a white ring on the project's orange."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, 63, 63), radius=14, fill="#d9480f")
    draw.ellipse((14, 14, 49, 49), outline="white", width=7)
    return image


def data_dir() -> str | None:
    return os.environ.get("UNLEARN_DATA_DIR") or None


# ----------------------------------------------------------------------------- models
@st.cache_resource(show_spinner="Loading the checkpoint...", max_entries=8)
def shipped_model(path: str) -> ui.LoadedModel:
    return ui.load_shipped(path)


@st.cache_data(show_spinner=False, ttl=60)
def zoo(data_dir_: str | None) -> list[ui.ZooEntry]:
    return ui.model_zoo(data_dir_)


def session_models() -> dict[str, ui.LoadedModel]:
    """Models trained or uploaded in this session (never shared, never written to disk)."""
    return st.session_state.setdefault("session_models", {})


def current_key() -> str:
    """The key of the model every page works on: the user's choice, else the default
    (:func:`core.ui.zoo.default_model_key`); read from the zoo's cards, nothing loaded."""
    entries = {e.key: e for e in zoo(data_dir())}
    default = ui.default_model_key(list(entries.values()))
    key = st.session_state.get("model_key", default)
    if key not in session_models() and (key not in entries or not entries[key].available):
        key = default
    st.session_state["model_key"] = key
    return key


def current_model() -> ui.LoadedModel:
    """The model every page works on (:func:`current_key`), loaded once per process."""
    from core.models.compute import set_threads

    set_threads()
    key = current_key()
    if key in session_models():
        return session_models()[key]
    return shipped_model(str({e.key: e for e in zoo(data_dir())}[key].path))


def set_current(key: str) -> None:
    st.session_state["model_key"] = key


# ----------------------------------------------------------------------------- data and evaluation
@st.cache_resource(show_spinner="Loading the held-out images...", max_entries=8)
def heldout(dataset: str, data_dir_: str | None):
    """(analysis pool, evaluation set): the fixed split of the test split."""
    return ui.heldout_data(dataset, data_dir_)


@st.cache_data(show_spinner="Evaluating on the test split...", max_entries=32)
def test_accuracy(model_id: str, _lm: ui.LoadedModel) -> dict:
    return ui.test_evaluation(_lm.model, _lm.dataset, data_dir()).to_dict()


def before_evaluation(lm: ui.LoadedModel, forget_class: int) -> Evaluation:
    """The original model on the evaluation set, split on ``forget_class`` (from the shared caches)."""
    _, eval_set = heldout(lm.dataset, data_dir())
    return ui.evaluation_from_logits(_original_logits(lm.checksum, lm), eval_set, forget_class)


@st.cache_data(show_spinner="Evaluating the original model...", max_entries=32)
def _original_logits(model_id: str, _lm: ui.LoadedModel) -> np.ndarray:
    return eval_caches(model_id, _lm).original_logits().numpy()


@st.cache_resource(show_spinner=False, max_entries=8)
def eval_caches(model_id: str, _lm: ui.LoadedModel) -> ui.EvalCaches:
    """The evaluation set's activations under the model, shared by every class and setting."""
    _, eval_set = heldout(_lm.dataset, data_dir())
    return ui.EvalCaches(_lm.model, eval_set)


@st.cache_resource(show_spinner=False, max_entries=16)
def analyzer(model_id: str, _lm: ui.LoadedModel, rule: str) -> ui.MemoAnalyzer:
    """One remembering LRP analyzer per model and rule: a K or H step re-selects from stored relevance."""
    return ui.MemoAnalyzer(_lm.model, rule)


@st.cache_resource(show_spinner=False, max_entries=8)
def activations(model_id: str, _lm: ui.LoadedModel) -> ui.MemoActivations:
    """The pool's validation activations per cut, remembered: a K, H or target step re-runs none of the model."""
    return ui.MemoActivations(_lm.model)


@st.cache_resource(show_spinner=False, max_entries=8)
def warm_up(model_id: str, _lm: ui.LoadedModel) -> threading.Thread:
    """Build, in one background thread, what a first visit to Unlearn needs for this model: first
    the modules its answer imports (zennit with torchvision, about 2 s of Python on one core, which
    the Model page does not import), then the held-out images and the evaluation set's activations
    before the default layer, at the classifier and before the erasure's layers (the model's
    convolutions, on both cores). One after the other, not side by side: the import held the
    interpreter for the evaluation thread's Python between its convolutions, and the first visit
    right after the load took 0.90x the time in one thread (BENCHMARKS.md, "Dashboard response
    times"). What only the erase button needs (scikit-learn) waits for the first prefetch
    (:func:`import_erase_libraries`). (Also computing the page's answer for the default class here
    slowed the cold start itself on 2 cores.)"""
    def work():
        from core.unlearning.pipeline import load_libraries

        try:
            load_libraries()              # zennit with torchvision, torch.fx's symbolic shapes
            eval_caches(model_id, _lm).warm(ui.analysable_layers(_lm.model, _lm.card)[-1:])
        except Exception:                 # noqa: BLE001 - a warm-up only saves time; the page computes on demand
            pass
    thread = threading.Thread(target=work, name=f"{BACKGROUND}warm-{model_id[:8]}", daemon=True)
    thread.start()
    return thread


# ----------------------------------------------------------------------------- relevance and paths
@st.cache_resource(show_spinner="Running LRP on the class's pool images...", max_entries=32)
def class_relevance(model_id: str, _lm: ui.LoadedModel, cls: int, rule: str, layers: tuple[str, ...]) -> ui.ClassRelevance:
    pool, _ = heldout(_lm.dataset, data_dir())
    return ui.class_relevance(_lm.model, _lm.card, pool, cls, rule, list(layers))


@st.cache_resource(show_spinner="Measuring the relevance flowing between the drawn units...", max_entries=32)
def path_edges(model_id: str, _lm: ui.LoadedModel, cls: int, config_key: str, _path, edge_units: int) -> list[dict]:
    from core.attribution.paths import path_edges as edges

    pool, _ = heldout(_lm.dataset, data_dir())
    if len(_path.selections) < 2:
        return []
    forget = pool.forget_images(cls, _path.settings["n_images"], _path.settings["seed"])
    return edges(analyzer(model_id, _lm, _path.settings["rule"]), forget.images, _path, edge_units)


@st.cache_resource(show_spinner="Finding every class's path for the overlap...", max_entries=16)
def all_paths(model_id: str, _lm: ui.LoadedModel, config_key: str, _config) -> dict:
    return {c: unlearned(model_id, _lm, c, config_key, _config)[0].path for c in range(len(_lm.classes))}


@st.cache_data(show_spinner="Finding the unit's top-activating pool images...", max_entries=64)
def unit_detail(model_id: str, _lm: ui.LoadedModel, layer: str, unit: int, cls: int, rule: str) -> dict:
    pool, _ = heldout(_lm.dataset, data_dir())
    return ui.unit_detail(_lm.model, _lm.card, pool, layer, unit, rule)


# ----------------------------------------------------------------------------- unlearning
@st.cache_resource(show_spinner="Selecting the path to perturb (LRP on the analysis pool)...", max_entries=256)
def unlearned(model_id: str, _lm: ui.LoadedModel, cls: int, config_key: str, _config):
    """(UnlearnResult, PerturbationExplorer) for one model, class and selection setting; ``config_key``
    is ``repr(config)`` of the frozen config (method and strength fixed, they vary on the slider).
    The relevance and the evaluation set's activations are shared by every setting (:mod:`core.ui.speed`)."""
    from core.unlearning.pipeline import unlearn

    pool, _ = heldout(_lm.dataset, data_dir())
    result = unlearn(_lm.model, pool, cls, _config, analyzer=analyzer(model_id, _lm, _config.lrp.rule),
                     activations=activations(model_id, _lm))
    return result, ui.explorer_from(eval_caches(model_id, _lm), result.path, result.config.perturbation)


def selection_config(config):
    """The config with method and strength at their base values (they do not change the path), without
    erasure, relabelling or repair: the page shows what the path perturbation alone does."""
    return config.override({"perturbation.method": "zero", "perturbation.strength": 1.0, "erasure": None,
                            "relabel": None, "repair": None})


@st.cache_resource(show_spinner=False, max_entries=256)
def perturbed(explorer_key: str, _explorer, strength: float, method: str):
    """(Evaluation, perturbed model) from the activation cache: only later layers re-run."""
    return _explorer.evaluate(strength=float(strength), method=method)


class Stopped(Exception):
    """A background step gave way to the person (nothing of it is cached)."""


@st.cache_data(show_spinner="Sweeping the strength...", max_entries=64)
def sweep(explorer_key: str, _explorer, method: str, points: int = 11, _stop=None) -> dict:
    """Forget and retain accuracy at ``points`` strengths from 0 to 1. ``_stop()`` (a prefetch's) is
    asked before each strength; True raises :class:`Stopped`, so that a sweep left half-done is not kept."""
    xs = [round(float(x), 3) for x in np.linspace(0.0, 1.0, points)]
    forget, retain = [], []
    for x in xs:
        if _stop is not None and _stop():
            raise Stopped
        evaluation, _ = perturbed(explorer_key, _explorer, x, method)
        forget.append(evaluation.forget_acc)
        retain.append(evaluation.retain_acc)
    return {"x": xs, "forget": forget, "retain": retain}


@st.cache_data(show_spinner=False, max_entries=256)
def own_heatmap(variant_key: str, _model, image_key: str, _image, target: int, rule: str = "epsilon") -> np.ndarray:
    """Input relevance for class ``target`` of the person's own image under a given model."""
    return ui.image_relevance(_model, _image, target, rule)


@st.cache_data(show_spinner=False, max_entries=256)
def heatmap_of(variant_key: str, _model, image_position: int, dataset: str, target: int, rule: str = "epsilon") -> np.ndarray:
    """Input relevance for class ``target`` of one evaluation image under a given model."""
    _, eval_set = heldout(dataset, data_dir())
    return ui.image_relevance(_model, eval_set.images[image_position], target, rule)


# ----------------------------------------------------------------------------- page helpers
def fail(exc: UserError) -> None:
    """Show a user's mistake as one sentence and stop the page."""
    st.error(str(exc))
    st.stop()


def class_selectbox(label: str, lm: ui.LoadedModel, key: str, container=st, help: str | None = None) -> int:
    n = len(lm.classes)
    if st.session_state.get(key) is not None and st.session_state[key] >= n:
        del st.session_state[key]
    default = min(3, n - 1)
    return container.selectbox(label, list(range(n)), index=default, format_func=lm.class_label, key=key, help=help)


def reuse_sentence(reuse: dict) -> str:
    """What a slider step re-runs, in words (:attr:`core.unlearning.explorer.PerturbationExplorer.reuse`)."""
    if reuse["full"]:
        return ("The earliest perturbed layer is the model's first operation, so each slider step evaluates the "
                "whole model.")
    tensors = ", ".join(f"`{name}`" for name in reuse["cached"])
    rows = " (and only the changed rows of the first perturbed layer)" if reuse["rows"] else ""
    return (f"Moving the slider re-runs {reuse['total'] - reuse['skipped']} of the model's {reuse['total']} operations"
            f"{rows}, from the evaluation set's cached {tensors}.")


def pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f} %"


def sidebar(container=None) -> ui.LoadedModel | None:
    """The shared sidebar (into ``container``, a place kept in it, when given): current model, its
    dataset and accuracy, the device, the data folder."""
    with container if container is not None else st.sidebar:
        try:
            lm = current_model()
        except UserError as exc:
            st.error(str(exc))
            return None
        st.markdown("#### Current model")
        st.markdown(f"**{lm.name}**")
        acc = lm.card.test_accuracy
        if acc is None:
            acc = test_accuracy(lm.checksum, lm)["overall"]
        st.markdown(f"Dataset: `{lm.dataset}` ({len(lm.classes)} classes)  \nTest accuracy: **{pct(acc)}**  \n"
                    f"Source: {lm.origin}")
        st.markdown(f"Device: `{ui.device_label()}`")
        folder = data_dir()
        st.caption(f"Data folder: `{folder}`" if folder else
                   "Data folder: none set. Digits always works; set UNLEARN_DATA_DIR for MNIST and the others "
                   "(datasets already in the local cache work too).")
        st.page_link(PAGES["model"], label="Change model", icon=":material/swap_horiz:")
    return lm


# ----------------------------------------------------------------------------- shared path settings and the URL
# One selection for the Neuron paths and Unlearn pages: the values live under "cfg_*" keys (kept when
# the other page is shown) and each widget ("w_cfg_*") is seeded from them, so a change on either page
# is the other page's setting too. The URL carries them (core/ui/share.py).
H_LABELS = {"share": "share of layer", "auto": "auto (coverage)", "calibrate": "calibrated (library default)"}
SLIDER_RANGES = {"k": (1.0, 50.0), "h": (1.0, 90.0)}      # K and H in percent, in steps of SLIDER_STEP
SLIDER_STEP = 0.5
PREFETCH_DELAY = 0.5      # seconds after an answer before the settings a step away are prepared
TARGETS = ("auto", "in", "out", "both")      # the Unlearn page's choices of weights to perturb (with_target)


def _seeded(name: str, default):
    """The widget key for shared setting ``name``, its value seeded from the kept one (or ``default``)."""
    key = f"w_cfg_{name}"
    # Always from the kept value: the other page's widget of the same key is another widget to Streamlit.
    st.session_state[key] = st.session_state.get(f"cfg_{name}", st.session_state.get(key, default))
    return key


def _keep(name: str) -> None:
    st.session_state[f"cfg_{name}"] = st.session_state[f"w_cfg_{name}"]


def shared(widget, label: str, name: str, default, **kwargs):
    """``widget`` (e.g. ``st.selectbox``) bound to shared setting ``name``."""
    if "options" in kwargs:
        chosen = st.session_state.get(f"cfg_{name}", default)
        if not set(chosen if isinstance(chosen, (list, tuple)) else [chosen]) <= set(kwargs["options"]):
            st.session_state[f"cfg_{name}"] = default        # e.g. a layer or class the new model lacks
    value = widget(label, key=_seeded(name, default), on_change=_keep, args=(name,), **kwargs)
    st.session_state[f"cfg_{name}"] = value
    return value


def apply_query_params() -> None:
    """Once per session: settings from the URL (``?model=mnist/cnn&forget=7&strength=0.9``)."""
    from core.attribution.rules import RULES

    if st.session_state.get("_url_read"):
        return
    st.session_state["_url_read"] = True
    params = ui.read_params(dict(st.query_params), [e.key for e in zoo(data_dir()) if e.available], RULES)
    if "model" in params:
        st.session_state["model_key"] = params.pop("model")
    for name, value in params.items():
        st.session_state[f"cfg_{name}"] = value
        st.session_state.pop(f"w_cfg_{name}", None)


def write_query_params(lm: ui.LoadedModel, **values) -> None:
    """The page's current settings into its URL (only what differs from the URL already)."""
    settings = {"model": lm.key, **{n: st.session_state.get(f"cfg_{n}") for n in
                                    ("forget", "method", "target", "strength", "k", "h_mode", "selection", "rule")},
                **values}
    if settings.get("h_mode") == "share":
        settings["h"] = st.session_state.get("cfg_h")
    wanted = ui.write_params(settings)
    if dict(st.query_params) != wanted:
        st.query_params.from_dict(wanted)


def default_forget(lm: ui.LoadedModel) -> int:
    """The forget class a first visit shows."""
    return min(3, len(lm.classes) - 1)


def forget_class_box(lm: ui.LoadedModel, label: str, container=st, help: str | None = None) -> int:
    n = len(lm.classes)
    if st.session_state.get("cfg_forget") is not None and st.session_state["cfg_forget"] >= n:
        st.session_state.pop("cfg_forget")
        st.session_state.pop("w_cfg_forget", None)
    return shared(container.selectbox, label, "forget", default_forget(lm), options=list(range(n)),
                  format_func=lm.class_label, help=help)


def default_path_values(lm: ui.LoadedModel) -> dict:
    """The path settings' starting values (the library's default): what a first visit shows."""
    from core.unlearning.config import default_config

    base = default_config()
    layers_all = ui.analysable_layers(lm.model, lm.card)
    return {"layers": tuple(layer for layer in (base.selection.layers or layers_all[-1:]) if layer in layers_all),
            "selection": base.selection.method, "k": round(100 * base.selection.k * 2) / 2, "h_mode": "calibrate",
            "h": 30.0, "rule": base.lrp.rule}


def path_settings(lm: ui.LoadedModel, container=st):
    """The shared path settings (layers, selection, K, H, LRP rule) as widgets; returns the frozen
    selection config both pages use (method and strength at their base values)."""
    from core.attribution.rules import RULES

    start = default_path_values(lm)
    layers_all = ui.analysable_layers(lm.model, lm.card)
    c1, c2, c3, c4, c5 = container.columns([3, 2, 2, 2, 2])
    if any(layer not in layers_all for layer in st.session_state.get("cfg_layers") or []):
        st.session_state.pop("cfg_layers")
        st.session_state.pop("w_cfg_layers", None)
    layers = shared(c1.multiselect, "Layers (input side first)", "layers", list(start["layers"]), options=layers_all,
                    help="The library analyses the classifier's input (the last one), as the authors do.")
    selection = shared(c2.selectbox, "Unit selection", "selection", start["selection"],
                       options=["contrast", "frequency"],
                       help="contrast: units relevant for this class but not for the others (the library's "
                            "default). frequency: the authors' top-K counting.")
    k_pct = shared(c3.slider, "K: top units per image (%)", "k", start["k"], min_value=SLIDER_RANGES["k"][0],
                   max_value=SLIDER_RANGES["k"][1], step=SLIDER_STEP,
                   help="Per image, the units kept by relevance (frequency selection; contrast ranks with it too).")
    modes = ["calibrate", "share"] + (["auto"] if selection == "contrast" else [])
    h_mode = shared(c4.selectbox, "H: units to perturb", "h_mode", start["h_mode"], options=modes,
                    format_func=H_LABELS.get,
                    help="calibrated: the smallest share that forgets the class on a validation part of the pool "
                         "while the other classes keep their accuracy. share: the slider below. auto: the "
                         "fewest units covering half of the contrast score.")
    h_pct = shared(c4.slider, "H: share of each layer (%)", "h", start["h"], min_value=SLIDER_RANGES["h"][0],
                   max_value=SLIDER_RANGES["h"][1], step=SLIDER_STEP, disabled=h_mode != "share")
    rule = shared(c5.selectbox, "LRP rule", "rule", start["rule"], options=list(RULES))
    if not layers:
        return None
    values = {"layers": tuple(layers), "selection": selection, "k": k_pct, "h_mode": h_mode, "h": h_pct, "rule": rule}
    st.session_state["_path_values"] = values
    return path_config(values)


def path_config(values: dict):
    """The selection config of the path settings' values (``path_settings``; the same config, the
    same cache key, for a prefetched step)."""
    from dataclasses import replace

    from core.unlearning.config import default_config

    base = default_config()
    changes = {"selection.layers": values["layers"], "selection.method": values["selection"],
               "selection.k": values["k"] / 100, "lrp.rule": values["rule"]}
    if values["h_mode"] == "calibrate":
        config = base.override({**changes, "selection.h": None})
    else:
        h = values["h"] / 100 if values["h_mode"] == "share" else "auto"
        config = replace(base, calibration=None, selection=replace(base.selection, h=h)).override(changes)
    return selection_config(config)


def prepare(lm: ui.LoadedModel, cls: int, values: dict, target: str, method: str, strength: float,
            position: int | None, stop=lambda: False) -> None:
    """Into the caches the Unlearn page reads: its path and explorer for these path settings and
    target, the strength sweep, the model at ``strength`` and the heatmaps of the example image at
    evaluation-set ``position``; ``stop()`` is asked between these steps and between the sweep's strengths
    (True: leave the rest)."""
    config = with_target(path_config(values), target)
    key = repr(config)
    _, explorer = unlearned(lm.checksum, lm, cls, key, config)
    explorer_key = f"{lm.checksum}|{cls}|{key}"
    if stop():
        return
    try:
        sweep(explorer_key, explorer, method, _stop=stop)
    except Stopped:
        return
    _, variant = perturbed(explorer_key, explorer, strength, method)
    if position is not None and not stop():
        heatmap_of(lm.checksum, lm.model, position, lm.dataset, cls, values["rule"])
        heatmap_of(f"{explorer_key}|{strength}|{method}", variant, position, lm.dataset, cls, values["rule"])


_PREFETCH = {"stop": threading.Event()}     # the one prefetch of this process may run until this is set


def stop_prefetch() -> None:
    """Stop the prefetch within the step it is on: someone asked for something. One prefetch runs at a
    time in the whole app, whichever session started it: on 2 cores a session's background work
    slowed the answers of the others (one left behind by a page reload, or a second visitor's), and a
    reloaded page's old session never runs again to stop its own."""
    _PREFETCH["stop"].set()


def prefetch_steps(lm: ui.LoadedModel, cls: int, target: str, method: str, strength: float,
                   position: int | None) -> None:
    """After the Unlearn page is drawn: in one background thread, first what the erase button
    imports (:func:`import_erase_libraries`; once per process), then the path, explorer, strength
    sweep and test-image heatmap of the settings one slider step away, into the same caches the page
    reads, so that the next step finds them there. The sliders that can move: K and H where H is a
    share of each layer (H first: it is what that mode is for), K alone otherwise (H calibrated,
    where a K step re-runs the calibration, or chosen by coverage); the slider last moved first, in
    the direction it moved first (:func:`core.ui.speed.step_neighbours`); after the first of these
    steps, the other choices of weights to perturb (:data:`TARGETS`) at the current settings. (When
    each setting also ran the repair, this background work slowed the answers it did not serve on
    2 cores: BENCHMARKS.md, "Dashboard response times".) The next page run, of any session
    (:func:`stop_prefetch`), stops the thread within the step it is on (:func:`prepare`; the sweep
    gives way between two strengths), and it starts only after ``PREFETCH_DELAY`` seconds without
    one, so that quick steps in a row do not compete with it; the settings are worked out there, not
    in the page run; a setting the page asks for meanwhile is computed once (Streamlit's caches lock
    each key)."""
    values = st.session_state.get("_path_values")
    if values is None:
        return
    stop_prefetch()
    stop = _PREFETCH["stop"] = threading.Event()
    last, st.session_state["_prefetch_last"] = st.session_state.get("_prefetch_last"), values

    def stopped() -> bool:
        return stop.is_set() or _EXITING.is_set()

    def settings() -> list[tuple[dict, str]]:
        """(path settings, target) to prepare: the likeliest slider step, the other targets, the other steps."""
        ranges = ({"h": SLIDER_RANGES["h"], "k": SLIDER_RANGES["k"]} if values["h_mode"] == "share"
                  else {"k": SLIDER_RANGES["k"]})
        steps = [(v, target) for v in ui.step_neighbours(values, last, ranges, SLIDER_STEP)]
        config = path_config(values)
        keys = {repr(with_target(config, target))}
        targets = []                 # the other choices of weights that give another path or explorer
        for other in TARGETS:
            key = repr(with_target(config, other))
            if key not in keys:
                keys.add(key)
                targets.append((values, other))
        return steps[:1] + targets + steps[1:]

    def work():
        if stop.wait(PREFETCH_DELAY):    # stepping again at once: nothing started to compete with it
            return
        try:
            import_erase_libraries()
        except Exception:            # noqa: BLE001 - only saves time; the erase button imports what it needs
            pass
        for v, t in settings():
            if stopped():
                return
            try:
                prepare(lm, cls, v, t, method, strength, position, stopped)
            except Exception:        # noqa: BLE001 - a prefetch only saves time; the page computes on demand
                pass
    threading.Thread(target=work, name=f"{BACKGROUND}prefetch", daemon=True).start()


def import_erase_libraries() -> None:
    """Import what the erase button needs beyond the first answer: scikit-learn's probes (about
    1.5-2 s of Python, one core; at once when already imported). The prefetch does it first, once
    the person has been idle for ``PREFETCH_DELAY`` seconds: in the warm-up, beside the first visit's
    evaluation pass, it held the interpreter for the page's answer, and started right after that
    answer it slowed the end of the same page run (BENCHMARKS.md, "Dashboard response times")."""
    import sklearn.linear_model  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import sklearn.preprocessing  # noqa: F401


def with_target(config, target: str):
    """The selection config with the page's weights to perturb: "auto" keeps the calibration's order of
    targets (outgoing first, both where needed); without calibration it is "both"."""
    if config.calibration is not None:
        targets = config.calibration.targets if target == "auto" else (target,)
        return config.override({"calibration.targets": targets, "perturbation.target": targets[0]})
    return config.override({"perturbation.target": "both" if target == "auto" else target})
