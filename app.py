"""Unlearning Lab dashboard: ``streamlit run app.py``.

Five thin pages over ``core/``: pick or train a model, look at its relevance, draw a class's
neuronal path, unlearn the class with a live strength slider, and compare methods from the
benchmark. Works offline with the shipped digits model; MNIST and others appear when their data
is present (``UNLEARN_DATA_DIR``).
"""
from __future__ import annotations

import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from pages import common  # noqa: E402

common.ensure_navigation(entry=True)     # never draw through Streamlit's legacy pages/ mode (see there)
# The icon is drawn here (an emoji or a :material/ icon would be fetched from an outside host).
st.set_page_config(page_title="Unlearning Lab", page_icon=common.favicon(), layout="wide")
# Less empty space above each page's title, so that more of the charts fit on a laptop screen.
st.html("<style>[data-testid='stMainBlockContainer'] {padding-top: 2rem;} "
        "[data-testid='stMainBlockContainer'] h1 {font-size: 2.1rem; padding-bottom: 0.25rem;}</style>")

pages = [
    st.Page(common.PAGES["model"], title="Model", icon=":material/model_training:", url_path="home", default=True),
    st.Page(common.PAGES["relevance"], title="Relevance", icon=":material/local_fire_department:", url_path="relevance"),
    st.Page(common.PAGES["paths"], title="Neuron paths", icon=":material/account_tree:", url_path="paths"),
    st.Page(common.PAGES["unlearn"], title="Unlearn", icon=":material/auto_fix_off:", url_path="unlearn"),
    st.Page(common.PAGES["compare"], title="Compare", icon=":material/leaderboard:", url_path="compare"),
    # The default page is served at "/"; this hidden twin makes a shared /model?model=... link open it
    # too (without it Streamlit shows "Page not found" over the page).
    st.Page(common.PAGES["model"], title="Model", icon=":material/model_training:", url_path="model",
            visibility="hidden"),
]
page = st.navigation(pages, position="sidebar", expanded=True)
with st.sidebar:
    st.caption("Unlearning Lab: zero-shot class unlearning by layer-wise relevance analysis "
               "and neuronal path perturbation.")
common.stop_prefetch()                # any page run: the background steps a page prepared give way
common.apply_query_params()           # ?model=mnist/cnn&forget=7&strength=0.9 (once per session)
# The sidebar's model block is filled after the page, so that the Model page's zoo is drawn before
# torch is imported and the model loaded (the cold start: BENCHMARKS.md, "Dashboard response times").
sidebar_slot = st.sidebar.container()
current = None
try:
    with common.inside_app():
        page.run()
finally:
    current = common.sidebar(sidebar_slot)
if current is not None:                 # after the page is drawn: ready what a first visit to Unlearn needs
    common.warm_up(current.checksum, current)
