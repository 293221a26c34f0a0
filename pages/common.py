"""Streamlit glue shared by the pages: the current model, cached computations, the sidebar.

Everything cached with ``st.cache_resource`` is shared by all sessions and threads, so it is only
ever read: core functions return new models and never change their inputs. Arguments whose name
starts with ``_`` are not hashed by Streamlit; each such function takes a string id instead
(``model_id`` = the model's state checksum) so that the cache key still names the model.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import streamlit as st

from core import ui
from core.errors import UserError
from core.metrics.evaluate import Evaluation


PAGES = {"model": "pages/1_model.py", "relevance": "pages/2_relevance.py", "paths": "pages/3_paths.py",
         "unlearn": "pages/4_unlearn.py", "compare": "pages/5_compare.py"}


_RUN = threading.local()          # per script-run thread: is app.py's navigation running this page?


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


def current_model() -> ui.LoadedModel:
    """The model every page works on: the user's choice, else the shipped digits CNN."""
    key = st.session_state.get("model_key", ui.DEFAULT_MODEL)
    if key in session_models():
        return session_models()[key]
    entries = {e.key: e for e in zoo(data_dir())}
    entry = entries.get(key)
    if entry is None or not entry.available:
        key = ui.DEFAULT_MODEL
        entry = entries[key]
    st.session_state["model_key"] = key
    return shipped_model(str(entry.path))


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


@st.cache_data(show_spinner="Evaluating the original model...", max_entries=32)
def _eval_logits(model_id: str, _lm: ui.LoadedModel) -> np.ndarray:
    _, eval_set = heldout(_lm.dataset, data_dir())
    return ui.eval_logits(_lm.model, eval_set).numpy()


def before_evaluation(lm: ui.LoadedModel, forget_class: int) -> Evaluation:
    """The original model on the evaluation set, split on ``forget_class``."""
    _, eval_set = heldout(lm.dataset, data_dir())
    return ui.evaluation_from_logits(_eval_logits(lm.checksum, lm), eval_set, forget_class)


# ----------------------------------------------------------------------------- relevance and paths
@st.cache_resource(show_spinner="Running LRP on the class's pool images...", max_entries=32)
def class_relevance(model_id: str, _lm: ui.LoadedModel, cls: int, rule: str, layers: tuple[str, ...]) -> ui.ClassRelevance:
    pool, _ = heldout(_lm.dataset, data_dir())
    return ui.class_relevance(_lm.model, _lm.card, pool, cls, rule, list(layers))


@st.cache_resource(show_spinner="Finding the neuronal path (LRP on 36 pool images)...", max_entries=32)
def neuron_path(model_id: str, _lm: ui.LoadedModel, cls: int, layers: tuple[str, ...], k: float, h: float,
                selection: str, rule: str, edge_units: int):
    from core.attribution.paths import find_path
    from core.attribution.relevance import RelevanceAnalyzer

    pool, _ = heldout(_lm.dataset, data_dir())
    analyzer = RelevanceAnalyzer(_lm.model, rule)        # private: hooks never cross sessions
    return find_path(analyzer, pool, cls, list(layers), k, h, selection, edge_units=edge_units)


@st.cache_resource(show_spinner="Finding every class's path for the overlap...", max_entries=16)
def all_paths(model_id: str, _lm: ui.LoadedModel, layers: tuple[str, ...], k: float, h: float, selection: str,
              rule: str) -> dict:
    from core.attribution.paths import find_path
    from core.attribution.relevance import RelevanceAnalyzer

    pool, _ = heldout(_lm.dataset, data_dir())
    analyzer = RelevanceAnalyzer(_lm.model, rule)
    return {c: find_path(analyzer, pool, c, list(layers), k, h, selection) for c in range(len(_lm.classes))}


# ----------------------------------------------------------------------------- unlearning
@st.cache_resource(show_spinner="Selecting the path to perturb (LRP on the analysis pool)...", max_entries=32)
def unlearned(model_id: str, _lm: ui.LoadedModel, cls: int, config_key: str, _config):
    """(UnlearnResult, PerturbationExplorer) for one model, class and selection setting; ``config_key``
    is ``repr(config)`` of the frozen config (method and strength fixed, they vary on the slider)."""
    from core.unlearning.explorer import PerturbationExplorer
    from core.unlearning.pipeline import unlearn

    pool, eval_set = heldout(_lm.dataset, data_dir())
    result = unlearn(_lm.model, pool, cls, _config)
    explorer = PerturbationExplorer(_lm.model, result.path, eval_set, result.config.perturbation)
    return result, explorer


def selection_config(config):
    """The config with method and strength at their base values (they do not change the path), without
    erasure or relabelling: the page shows what the path perturbation alone does."""
    return config.override({"perturbation.method": "zero", "perturbation.strength": 1.0, "erasure": None, "relabel": None})


@st.cache_resource(show_spinner=False, max_entries=256)
def perturbed(explorer_key: str, _explorer, strength: float, method: str):
    """(Evaluation, perturbed model) from the activation cache: only later layers re-run."""
    return _explorer.evaluate(strength=float(strength), method=method)


@st.cache_data(show_spinner="Sweeping the strength...", max_entries=64)
def sweep(explorer_key: str, _explorer, method: str, points: int = 11) -> dict:
    xs = [round(float(x), 3) for x in np.linspace(0.0, 1.0, points)]
    forget, retain = [], []
    for x in xs:
        evaluation, _ = perturbed(explorer_key, _explorer, x, method)
        forget.append(evaluation.forget_acc)
        retain.append(evaluation.retain_acc)
    return {"x": xs, "forget": forget, "retain": retain}


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


def sidebar() -> ui.LoadedModel | None:
    """The shared sidebar: current model, its dataset and accuracy, the device, the data folder."""
    with st.sidebar:
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
