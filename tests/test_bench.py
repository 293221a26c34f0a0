"""The benchmark on digits: every metric of every method, the attacks' sense, the report, the CLI."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from core.bench.columns import ORIGINAL, REFERENCE, RUN_COLUMNS, training_data_columns, uses_training
from core.bench.figures import fig_forget_retain, fig_seconds
from core.bench.machine import PeakMemory
from core.bench.methods import DATA_USED, METHODS, mask_output
from core.bench.plan import PROFILES, make_plan
from core.bench.report import runs_frame, summarize_runs, summary_frame, summary_markdown
from core.bench.runner import run_plan
from core.bench.store import write_outputs
from core.data.catalog import load_split
from core.errors import UserError
from core.metrics.probes import loss_mia_gap, rank_auc, representation_probe
from core.metrics.relearn import relearn


ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("bench_threads")


@pytest.fixture(scope="module")
def digits_rows():
    """All methods (and the original) on digits, class 3, one seed, without the retrain cache."""
    plan = make_plan("quick", datasets=["digits"], seeds=1, classes=[3])
    return run_plan(plan, use_cache=False, progress=False)


def test_every_method_reports_every_metric(digits_rows):
    runs = runs_frame(digits_rows)
    assert list(runs["method"]) == ["original"] + list(METHODS)
    assert set(RUN_COLUMNS) <= set(runs.columns)
    for _, row in runs.iterrows():
        for col in ("forget_acc", "retain_acc", "mia_entropy", "mia_loss_gap", "probe_recall", "probe_auc"):
            assert 0.0 <= row[col] <= 1.0, (row["method"], col, row[col])
        assert row["seconds"] >= 0 and row["peak_mem_mb"] >= 0
        assert 0 <= row["relearn_steps"] <= PROFILES["quick"].relearn_cap
        assert len(json.loads(row["per_class"])) == 10
        assert row["seed"] == 0 and row["forget_class"] == 3
        assert row["training_data"] == DATA_USED.get(row["method"], "n/a (the original model)")
        assert row["uses_training_data"] == (row["method"] in ("retrain", "finetune", "gradient_ascent",
                                                                "random_labels", "ssd"))
    by = runs.set_index("method")
    assert by.loc["original", "seconds"] == 0 and by.loc["original", "relearn_steps"] == 0
    for name in METHODS:
        if not name.startswith("noise_"):    # noise may make the class swallow the others (see test_baselines)
            assert by.loc[name, "forget_acc"] < by.loc["original", "forget_acc"], name
    assert by.loc["retrain", "forget_acc"] == 0.0
    for col in ("forget_acc_train", "retain_acc_train", "mia_loss_share", "mia_loss_auc", "mia_confidence_share",
                "mia_confidence_auc", "mia_entropy_share", "mia_entropy_auc"):
        assert runs[col].between(0.0, 1.0).all(), col
    assert (runs["mia_entropy_share"] == runs["mia_entropy"]).all()
    assert (runs["relearn_steps"] <= runs["relearn_steps_90"]).all()
    # the output mask is real weights now: fine-tuning brings the class back, measured like every method
    assert by.loc["output_mask", "relearn_reached"] and by.loc["output_mask", "relearn_steps"] > 0


def test_membership_attack_sees_the_original_but_not_retrain(digits_rows):
    by = pd.DataFrame(digits_rows).set_index("method")
    assert by.loc["original", "mia_entropy"] > by.loc["retrain", "mia_entropy"] + 0.3
    assert by.loc["original", "relearn_steps"] < by.loc["retrain", "relearn_steps"]


def test_rank_auc_and_loss_gap():
    assert rank_auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert rank_auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5
    assert rank_auc(np.array([np.inf, np.inf]), np.array([np.inf])) == 0.5        # the output mask's losses
    assert loss_mia_gap(np.array([0.1, 0.2]), np.array([1.0, 2.0])) == 0.5         # members: lower loss
    assert loss_mia_gap(np.array([1.0, 2.0]), np.array([0.1, 0.2])) == 0.5         # distance from 0.5 either way
    rng = np.random.default_rng(0)
    assert loss_mia_gap(rng.random(2000), rng.random(2000)) < 0.05


def test_probe_separates_a_separable_class():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    features = rng.normal(size=(200, 8))
    features[labels == 2, 0] += 6.0
    result = representation_probe(features, labels, 2, seed=0)
    assert result.recall == 1.0 and result.auc > 0.99
    noise = representation_probe(rng.normal(size=(200, 8)), labels, 2, seed=0)
    assert noise.auc < 0.85


def test_relearn_of_masked_and_original_models(digits_model, digits_split):
    """The original model holds the class at step 0; the weight mask (forget row zeroed) is a model
    like any other and relearns the class from the fixed relearn set within a few dozen steps."""
    model, _ = digits_model
    pool, eval_set = digits_split
    forget = eval_set.images[eval_set.labels == 3]
    train = load_split("digits", "train")
    relearn_set = train.subset((train.labels == 3).nonzero(as_tuple=True)[0][:32])
    assert relearn(model, relearn_set.images, relearn_set.labels, forget, 3, cap=20) == {0.5: 0, 0.9: 0}
    masked = mask_output(model, 3, pool)
    steps = relearn(masked, relearn_set.images, relearn_set.labels, forget, 3, cap=60)
    assert steps[0.5] is not None and 0 < steps[0.5] <= steps[0.9] <= 60, steps


def test_peak_memory_sees_an_allocation():
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(64 * 2 ** 20 // 4)      # 64 MiB
        block += 1
        torch.cuda.is_available()
    assert memory.peak_mb > 40
    del block


def test_plan_checks_its_arguments():
    with pytest.raises(UserError, match="Unknown method"):
        make_plan("quick", methods=["nosuch"], datasets=["digits"])
    with pytest.raises(UserError, match="out of range"):
        make_plan("quick", datasets=["digits"], classes=[10])
    with pytest.raises(UserError, match="at least 1"):
        make_plan("quick", datasets=["digits"], seeds=0)
    with pytest.raises(UserError, match="Unknown profile"):
        make_plan("medium")
    plan = make_plan("quick", datasets=["digits"], methods=["ours", "retrain"], seeds=3, classes=[1, 2])
    assert plan.methods == ["retrain", "ours"]
    assert [(t.dataset, t.arch, t.classes, t.seeds) for t in plan.targets] == [("digits", "cnn", (1, 2), 3)]


def test_report_orders_and_states_losses(digits_rows, tmp_path):
    runs = pd.DataFrame(digits_rows)
    summary = summarize_runs(runs)
    assert list(summary["method"])[:2] == ["retrain", "original"]
    assert {"forget_acc_mean", "forget_acc_std", "seconds_mean", "runs", "uses_training_data",
            "training_data"} <= set(summary.columns)
    flags = summary.set_index("method")["uses_training_data"]
    assert flags["retrain"] and flags["ssd"] and not flags["ours"] and not flags["output_mask"]
    text = summary_markdown(runs, summary, {"profile": {"name": "quick"}})
    for name in METHODS:
        if name != "retrain":
            assert f"- **{name}**" in text
    assert "loses to retrain" in text
    fig = fig_forget_retain(runs, "digits", "cnn")
    assert isinstance(fig, go.Figure) and any(t.marker.symbol == "star" for t in fig.data)
    times = fig_seconds(runs)
    assert times.layout.yaxis.type == "log" and "original" not in list(times.data[0].x)
    write_outputs(runs, tmp_path, {"profile": {"name": "quick"}})
    assert (tmp_path / "figures" / "forget_retain_digits_cnn.json").is_file()
    assert (tmp_path / "figures.html").is_file()
    back = pd.read_csv(tmp_path / "runs.csv")
    assert back["uses_training_data"].dtype == bool
    assert back.groupby("method")["training_data"].first().to_dict() == \
        {m: DATA_USED.get(m, "n/a (the original model)") for m in back["method"]}
    assert "| retain train |" in text and "| none (analysis pool only) |" in text


STORED = sorted((ROOT / "assets" / "bench").glob("*/runs.csv"))


@pytest.mark.parametrize("path", STORED, ids=[p.parent.name for p in STORED])
def test_stored_runs_read_training_data_as_flag_and_label(path):
    """The committed runs.csv files hold the label in ``uses_training_data`` (the layout before the
    flag): read back, the flag follows the label, and the label stays."""
    raw = pd.read_csv(path)
    runs = runs_frame(raw)
    assert runs["uses_training_data"].dtype == bool and len(runs) == len(raw)
    labels = raw["training_data"] if "training_data" in raw else raw["uses_training_data"]
    assert list(runs["training_data"]) == list(labels.astype(str))
    for method, flag in runs.groupby("method")["uses_training_data"].agg(set).items():
        assert flag == {method in ("retrain", "finetune", "gradient_ascent", "random_labels", "ssd")}, method
    summary = summary_frame(pd.read_csv(path.with_name("summary.csv")))
    assert summary.loc[summary["method"] == ORIGINAL, "uses_training_data"].eq(False).all()
    assert summary.loc[summary["method"] == REFERENCE, "uses_training_data"].eq(True).all()
    assert summary.loc[summary["method"] == REFERENCE, "training_data"].eq("retain train").all()


def test_training_data_flag_alone_gets_its_label_and_values_read_both_ways():
    rows = pd.DataFrame({"method": ["retrain", "ours", "original", "mine"], "uses_training_data": [True, False, False, True]})
    out = training_data_columns(rows)
    assert list(out["uses_training_data"]) == [True, False, False, True]
    assert list(out["training_data"]) == ["retain train", "none (analysis pool only)", "n/a (the original model)",
                                          "training data"]
    assert [uses_training(v) for v in ("retain+forget train", "none", "n/a (the original model)", "True", "false",
                                       None, float("nan"))] == [True, False, False, True, False, False, False]
    assert training_data_columns(out).equals(out)                      # reading twice changes nothing


def test_cli_quick_digits_writes_results(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "UNLEARN_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "core", "bench", "--profile", "quick", "--datasets", "digits",
                           "--methods", "ours", "retrain", "output_mask", "--seeds", "1", "--classes", "3",
                           "--out", "tmp"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "tmp"
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.columns[:len(RUN_COLUMNS)]) == RUN_COLUMNS
    assert sorted(runs["method"]) == ["original", "ours", "output_mask", "retrain"]
    assert (runs["profile"] == "quick").all() and (runs["seed"] == 0).all()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["method"])[:2] == ["retrain", "original"]
    text = (out / "summary.md").read_text()
    assert "| **retrain** |" in text and "- **ours**" in text and "- **output_mask**" in text
    meta = json.loads((out / "meta.json").read_text())
    assert {"command", "date", "machine", "git_commit", "profile"} <= set(meta)
    assert meta["status"] == "complete" and meta["machine"]["torch"] == torch.__version__
    assert (out / "figures" / "seconds.json").is_file()
    assert math.isfinite(float(runs.set_index("method").loc["retrain", "seconds"]))
    bad = subprocess.run([sys.executable, "-m", "core", "bench", "--datasets", "digits", "--methods", "nosuch",
                          "--out", "bad"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Unknown method" in bad.stderr and not (tmp_path / "bad").exists()


def test_archs_and_first_seed_select_the_work(tmp_path):
    with pytest.raises(UserError, match="architecture nosuch"):
        make_plan("quick", datasets=["digits"], archs=["nosuch"])
    with pytest.raises(UserError, match="--first-seed"):
        make_plan("quick", datasets=["digits"], first_seed=-1)
    plan = make_plan("quick", datasets=["digits"], archs=["cnn"], seeds=2, first_seed=3, classes=[1])
    assert [(t.arch, list(t.seed_range)) for t in plan.targets] == [("cnn", [3, 4])]
    assert list(make_plan("quick", datasets=["digits"]).targets[0].seed_range) == [0, 1]
    from core.cli import main

    assert main(["bench", "--datasets", "digits", "--archs", "nosuch", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_bench_merge_unites_parallel_parts(tmp_path, monkeypatch, capsys):
    """Two tiny parts (class 3 seed 0, class 5 seed 1) merged into one folder, as benchmarks/gpu_full.sh does."""
    from core.cli import main
    from core.bench.runner import run_bench

    monkeypatch.setenv("UNLEARN_CACHE_DIR", str(tmp_path / "cache"))
    common = dict(profile="quick", methods=["output_mask", "ours"], datasets=["digits"], seeds=1, use_cache=False,
                  progress=False)
    a = run_bench(**common, classes=[3], out=tmp_path / "a", command="part a")
    b = run_bench(**common, classes=[5], first_seed=1, out=tmp_path / "b", command="part b")
    assert json.loads((b / "meta.json").read_text())["targets"][0]["first_seed"] == 1
    out = tmp_path / "merged"
    assert main(["bench-merge", str(a), str(b), "--out", str(out)]) == 0
    runs = pd.read_csv(out / "runs.csv")
    parts = pd.concat([pd.read_csv(a / "runs.csv"), pd.read_csv(b / "runs.csv")])
    assert len(runs) == len(parts) == 6
    assert set(zip(runs["method"], runs["forget_class"], runs["seed"])) == set(
        zip(parts["method"], parts["forget_class"], parts["seed"]))
    assert sorted(set(zip(runs["forget_class"], runs["seed"]))) == [(3, 0), (5, 1)]
    text = (out / "summary.md").read_text()
    assert "forget classes 3, 5; seeds 0, 1" in text and "`part a`" in text and "`part b`" in text
    assert "| original |" in text and "| ours |" in text and "Partial parts" not in text
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["commands"] == ["part a", "part b"]
    assert meta["wall_seconds"] == max(json.loads((p / "meta.json").read_text())["wall_seconds"] for p in (a, b))
    assert (out / "summary.csv").is_file() and (out / "figures" / "seconds.json").is_file()

    # a duplicate part is dropped with a warning; a partial part makes the whole partial, and says so
    meta_b = json.loads((b / "meta.json").read_text())
    (b / "meta.json").write_text(json.dumps({**meta_b, "status": "partial"}))
    capsys.readouterr()
    assert main(["bench-merge", str(a), str(b), str(a), "--out", str(out)]) == 0
    assert "dropped 3 row(s)" in capsys.readouterr().err
    assert len(pd.read_csv(out / "runs.csv")) == 6
    assert json.loads((out / "meta.json").read_text())["status"] == "partial"
    assert "**Partial parts**" in (out / "summary.md").read_text() and f"`{b}`" in (out / "summary.md").read_text()
    assert main(["bench-merge", str(tmp_path / "nosuch"), "--out", str(out)]) == 2

    # a merged folder is itself a part (its meta lists several commits)
    (out / "meta.json").write_text(json.dumps({**json.loads((out / "meta.json").read_text()), "git_commit": ["c1", "c2"]}))
    again = tmp_path / "again"
    assert main(["bench-merge", str(out), str(a), "--out", str(again)]) == 0
    assert len(pd.read_csv(again / "runs.csv")) == 6
    assert set(json.loads((again / "meta.json").read_text())["git_commit"]) >= {"c1", "c2"}
    assert "c1, c2" in (again / "summary.md").read_text().split("commits ", 1)[1].splitlines()[0]
