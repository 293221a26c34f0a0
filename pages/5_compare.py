"""Compare: unlearning methods side by side from the benchmark's runs.csv, retraining as the reference;
then the current model's per-class predictions before and after unlearning."""
from __future__ import annotations

from pathlib import Path

import streamlit as st
from pages import common

from core import ui
from core.bench import figures as bench_figures
from core.errors import UserError
from core.ui import figures


common.ensure_navigation()

st.title("Compare methods")
st.caption("Results of the benchmark: every method forgets the same classes of the same models. Retraining from "
           "scratch without the forget class is the reference: an ideal method lands where retraining does, in a "
           "fraction of its time.")

lm = common.current_model()
files = ui.bench_run_files()


def label(path: Path) -> str:
    try:
        return str(path.relative_to(ui.ROOT))
    except ValueError:
        return str(path)


@st.cache_resource(show_spinner="Unlearning the class with the library's default...", max_entries=16)
def predictions(model_id: str, _lm: ui.LoadedModel, cls: int) -> dict:
    pool, eval_set = common.heldout(_lm.dataset, common.data_dir())
    return ui.prediction_matrices(_lm.model, pool, eval_set, cls)


def benchmark() -> None:
    chosen = st.selectbox("Results file", files, format_func=label, key="cmp_file",
                          help="Your own runs (bench-results/) come first, newest first; then the copies shipped "
                               "in assets/bench/.")
    try:
        runs = ui.load_runs(chosen)
    except UserError as exc:
        common.fail(exc)
    combos, index = ui.model_choices(runs, (lm.dataset, lm.card.arch))
    if len(combos) > 1:
        pick = st.selectbox("Model", combos, index=index, format_func=lambda c: f"{c[0]} / {c[1]}", key="cmp_combo",
                            help="Starts at the current model when these results have it.")
    else:
        pick = combos[0]
        st.markdown(f"Model: **{pick[0]} / {pick[1]}**")
    runs = runs[(runs["dataset"].astype(str) == pick[0]) & (runs["arch"].astype(str) == pick[1])]
    st.caption(f"{len(runs)} runs: {runs['method'].nunique()} methods, forget classes "
               f"{', '.join(map(str, sorted(runs['forget_class'].dropna().astype(int).unique())))}, "
               f"{runs['seed'].nunique()} seed(s).")
    note = ui.reference_note(runs)
    if note:
        st.warning(note)

    st.plotly_chart(bench_figures.fig_forget_retain(runs, title="Forget vs retain accuracy", height=420),
                    key="cmp_tradeoff")
    st.caption("Best: top left (forgets the class, keeps the rest). The black star with dashed guides is "
               "retraining, the target; it is drawn on top. Hover a point for what the method does.")
    left, right = st.columns(2, gap="medium")
    left.plotly_chart(bench_figures.fig_seconds(runs, title="Seconds to unlearn (log scale)"), key="cmp_time")
    left.caption("Wall-clock seconds to unlearn one class, mean over runs; each grid line is 10x.")
    if runs["mia_entropy"].notna().any():
        right.plotly_chart(bench_figures.fig_metric(runs, "mia_entropy", pick[0], pick[1],
                                                    title="Membership inference"), key="cmp_mia")
        right.caption("Share of the forget class's training images an entropy attack still calls members. "
                      "Retraining's value (dashed) is what 'never seen' looks like.")
    with st.expander("How to read these results"):
        st.markdown("""
- **Forget accuracy**: how often the unlearned model still recognises the forgotten class on held-out
  images. Retraining reaches about 0 %.
- **Retain accuracy**: mean accuracy over the other classes; it should stay at the original model's level.
- **Membership inference**: does the model still behave as if it had *trained* on the class's images?
  Close to retraining's value means the traces are gone.
- **Time**: seconds for the unlearning step alone; retraining is the cost every method tries to avoid.
- **Training data**: ticked for methods that read training images (retraining, fine-tuning, ...);
  neuronal-path unlearning looks only at a few held-out images.
""")
    st.markdown("**Means per method** (over forget classes and seeds)")
    table = ui.compare_table(runs)
    st.dataframe(table, hide_index=True, width="stretch", key="cmp_table", height=36 * (len(table) + 1) + 4,
                 column_config={
        "what it does": st.column_config.TextColumn(width="large"),
        "uses training data": st.column_config.CheckboxColumn(help="Did the method read training images?"),
        **{c: st.column_config.NumberColumn(format="%.3g" if c in ("seconds", "MIA (entropy)") else "%.1f")
           for c in ("forget acc. (%)", "± forget", "retain acc. (%)", "± retain", "MIA (entropy)", "seconds")}})
    with st.expander("All runs"):
        st.dataframe(runs, hide_index=True, width="stretch", key="cmp_runs")


if files:
    benchmark()
else:
    st.info("No benchmark results yet. Make some with\n\n```\npython -m core bench --profile quick\n```\n\n"
            "It writes `bench-results/quick/runs.csv`; reload this page afterwards.")

st.markdown(f"##### Which class the current model answers, before and after unlearning ({lm.name})")
c1, c2, c3 = st.columns(3)
cls = common.class_selectbox("Forget class", lm, key="cmp_class", container=c1,
                             help="Unlearned with the library's default (the CLI's `python -m core unlearn`).")
try:
    shown = predictions(lm.checksum, lm, cls)
except UserError as exc:
    common.fail(exc)
c2.metric("Forget accuracy", common.pct(shown["forget_acc"][1]),
          delta=f"{100 * (shown['forget_acc'][1] - shown['forget_acc'][0]):+.1f} points", delta_color="inverse")
c3.metric("Retain accuracy", common.pct(shown["retain_acc"][1]),
          delta=f"{100 * (shown['retain_acc'][1] - shown['retain_acc'][0]):+.1f} points")
st.plotly_chart(figures.confusion_before_after(lm.classes, shown["before"], shown["after"], cls,
                                               title="Predictions per class, before and after unlearning"),
                key="cmp_confusion")
st.caption(f"Each row: one true class's evaluation images, in percent, by the class the model answers. After "
           f"unlearning, the forget class's row spreads over the others and its column empties; the other rows "
           f"stay on the diagonal. Unlearning took {shown['seconds']:.2f} s.")
