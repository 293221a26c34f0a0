"""Compare: unlearning methods side by side from the benchmark's runs.csv, retraining as the reference."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
from pages import common

from core import ui
from core.ui import figures
from core.errors import UserError


common.ensure_navigation()

st.title("Compare methods")
st.caption("Results of the benchmark: every method forgets the same classes of the same models. Retraining from "
           "scratch without the forget class is the reference: an ideal method lands where retraining does, in a "
           "fraction of its time.")

files = ui.bench_run_files()
if not files:
    st.info("No benchmark results yet. Make some with\n\n```\npython -m core bench --profile quick\n```\n\n"
            "It writes `bench-results/quick/runs.csv`; reload this page afterwards.")
    st.stop()


def label(path: Path) -> str:
    try:
        return str(path.relative_to(ui.ROOT))
    except ValueError:
        return str(path)


chosen = st.selectbox("Results file", files, format_func=label, key="cmp_file",
                      help="Your own runs (bench-results/) come first, newest first; then the copies shipped in "
                           "assets/bench/.")
try:
    runs = ui.load_runs(chosen)
except UserError as exc:
    common.fail(exc)

combos = runs[["dataset", "arch"]].drop_duplicates().apply(tuple, axis=1).tolist() \
    if {"dataset", "arch"} <= set(runs.columns) else []
if len(combos) > 1:
    pick = st.selectbox("Model", combos, format_func=lambda c: f"{c[0]} / {c[1]}", key="cmp_combo")
    runs = runs[(runs["dataset"] == pick[0]) & (runs["arch"] == pick[1])]
elif combos:
    st.markdown(f"Model: **{combos[0][0]} / {combos[0][1]}**")
st.caption(f"{len(runs)} runs: {runs['method'].nunique()} methods"
           + (f", forget classes {', '.join(map(str, sorted(runs['forget_class'].unique())))}"
              if "forget_class" in runs else "")
           + (f", {runs['seed'].nunique()} seeds" if "seed" in runs else "") + ".")
if "retrain" not in set(runs["method"]):
    st.warning("These results have no 'retrain' runs, so there is no reference point.")

left, right = st.columns(2, gap="medium")
left.plotly_chart(figures.bench_tradeoff(runs), key="cmp_tradeoff")
left.caption("Best: bottom right (forgets the class, keeps the rest). The star and dotted lines are retraining.")
right.plotly_chart(figures.bench_time(runs), key="cmp_time")
right.caption("Wall-clock seconds to unlearn one class, mean over runs; each grid line is 10x.")
left2, right2 = st.columns(2, gap="medium")
if "mia_entropy" in runs and runs["mia_entropy"].notna().any():
    left2.plotly_chart(figures.bench_membership(runs), key="cmp_mia")
    left2.caption("Share of the forget class's training images an entropy attack still calls members. "
                  "Retraining's value is what 'never seen' looks like.")
right2.markdown("""
**How to read these results**

- **Forget accuracy**: how often the unlearned model still recognises the forgotten class on held-out
  images. Retraining reaches about 0 %.
- **Retain accuracy**: mean accuracy over the other classes; it should stay at the original model's level.
- **Membership inference**: does the model still behave as if it had *trained* on the class's images?
  Close to retraining's value means the traces are gone.
- **Time**: seconds for the unlearning step alone; retraining is the cost every method tries to avoid.
- Methods that need the training data (retraining, fine-tuning, ...) are marked in the table below;
  neuronal-path unlearning looks only at a few held-out images.
""")

summary = figures.bench_summary(runs)
if "uses_training_data" in runs:
    uses = runs.groupby("method")["uses_training_data"].agg(lambda v: bool(pd.Series(v).astype(str).str.lower()
                                                                           .isin(["true", "1"]).any()))
    summary["uses training data"] = summary["method"].map(uses)
columns = {"method": "method", "forget_acc_mean": "forget acc. (%)", "forget_acc_std": "± (forget)",
           "retain_acc_mean": "retain acc. (%)", "retain_acc_std": "± (retain)", "mia_entropy_mean": "MIA (%)",
           "seconds_mean": "seconds", "uses training data": "uses training data", "runs": "runs"}
table = summary[[c for c in columns if c in summary]].rename(columns=columns)
st.markdown("**Means per method** (over forget classes and seeds)")
st.dataframe(table, hide_index=True, width="stretch", key="cmp_table",
             column_config={c: st.column_config.NumberColumn(format="%.3g" if c == "seconds" else "%.1f")
                            for c in table.columns if c not in ("method", "runs", "uses training data")})
with st.expander("All runs"):
    st.dataframe(runs, hide_index=True, width="stretch", key="cmp_runs")
