"""The benchmark folder and its executors on a tiny digits grid (class 3, one seed, the original
model, the output mask and ours): Ray gives the in-process rows, a failing case is stored and the rest complete, a rerun
skips what is stored, a killed run keeps its rows, commits and settings are not mixed, and one
retrain key is trained once by two Ray workers at the same time."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from core.bench.executors import RayExecutor, run_grid
from core.bench.plan import CaseSpec, make_plan
from core.bench.runner import CaseJob, run_bench
from core.bench.store import load_cases
from core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
GRID = dict(profile="quick", methods=["output_mask", "ours"], datasets=["digits"], seeds=1, progress=False,
            use_cache=False)
TIMING = ["seconds", "peak_mem_mb", "eval_seconds", "details"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def one_thread(tmp_path_factory):
    """One torch thread per case in both executors, and a private cache folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARN_BENCH_THREADS", "1")
        mp.setenv("UNLEARN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray with two CPUs for the whole module (its start-up is the slow part)."""
    import ray
    from ray import cloudpickle

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    cloudpickle.register_pickle_by_value(sys.modules[__name__])     # the jobs below, for the workers
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def inprocess_folder(one_thread, tmp_path_factory) -> Path:
    return run_bench(**GRID, classes=[3], out=tmp_path_factory.mktemp("inprocess") / "bench", command="a")


class FailingJob(CaseJob):
    """The output mask of class 3 raises; everything else as usual."""

    def row(self, spec):
        if spec.method == "output_mask" and spec.forget_class == 3:
            raise RuntimeError("injected failure")
        return super().row(spec)


class NeverJob(CaseJob):
    def row(self, spec):
        raise AssertionError(f"{spec.label()} ran although it was stored")


def _comparable(folder: Path) -> pd.DataFrame:
    runs = pd.read_csv(folder / "runs.csv")
    details = runs["details"].map(lambda d: {k: v for k, v in json.loads(d).items() if k != "engine_seconds"})
    return runs.drop(columns=TIMING).assign(details=details.map(json.dumps))


def test_ray_gives_the_rows_of_the_inprocess_executor(inprocess_folder, ray_session, tmp_path):
    out = run_bench(**GRID, classes=[3], out=tmp_path / "ray", executor=RayExecutor())
    ours, theirs = _comparable(inprocess_folder), _comparable(out)
    assert list(ours["method"]) == ["original", "output_mask", "ours"]
    pd.testing.assert_frame_equal(ours, theirs)
    assert not ours["forget_acc"].isna().any() and ours["forget_acc"].iloc[0] > 0.5
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["executor"]["executor"] == "ray"
    assert meta["executor"]["cases_at_once"] == 2 and meta["executor"]["cpus_per_case"] == 1
    assert {r["executor"] for r in load_cases(out).values()} == {"ray"}


def test_a_failing_case_is_stored_and_the_rest_complete(inprocess_folder, ray_session, tmp_path, capfd):
    out = tmp_path / "failing"
    run_bench(**GRID, classes=[3], out=out, executor=RayExecutor(), job=FailingJob(use_cache=False, threads=1))
    records = load_cases(out)
    failed = [r for r in records.values() if r["status"] == "failed"]
    assert len(records) == 3 and [tuple(r["key"]) for r in failed] == [("digits", "cnn", "output_mask", 3, 0)]
    assert failed[0]["error"] == "RuntimeError: injected failure" and "row" in failed[0]["traceback"]
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["method"]) == ["original", "ours"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "partial" and meta["failed_cases"][0]["error"] == "RuntimeError: injected failure"
    assert "## Failed cases" in (out / "summary.md").read_text()
    # the rerun (in this process) runs only the failed case and gives the in-process numbers
    capfd.readouterr()
    run_bench(**GRID, classes=[3], out=out)
    assert "skipped 2 finished case(s)" in capfd.readouterr().err
    assert json.loads((out / "meta.json").read_text())["status"] == "complete"
    expected = _comparable(inprocess_folder)
    pd.testing.assert_frame_equal(_comparable(out), expected)


def test_a_rerun_skips_everything(inprocess_folder, tmp_path, capfd):
    out = tmp_path / "again"
    shutil.copytree(inprocess_folder, out)
    before = {k: r["finished"] for k, r in load_cases(out).items()}
    capfd.readouterr()
    run_bench(**GRID, classes=[3], out=out, job=NeverJob())
    assert "skipped 3 finished case(s)" in capfd.readouterr().err
    assert {k: r["finished"] for k, r in load_cases(out).items()} == before
    assert json.loads((out / "meta.json").read_text())["status"] == "complete"
    pd.testing.assert_frame_equal(_comparable(out), _comparable(inprocess_folder))
    assert (out / "figures.html").is_file()


def test_a_killed_run_keeps_its_rows_and_no_stale_figures(inprocess_folder, tmp_path):
    """A complete 3-row folder extended by class 5, the process killed (os._exit) in its second case."""
    out = tmp_path / "killed"
    shutil.copytree(inprocess_folder, out)
    script = textwrap.dedent(f"""
        import os
        from core.bench.runner import CaseJob, run_bench

        class Dies(CaseJob):
            def row(self, spec):
                if spec.forget_class == 5 and spec.method == "output_mask":
                    os._exit(9)
                return super().row(spec)

        run_bench(**{GRID!r}, classes=[3, 5], out={str(out)!r}, job=Dies())
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs["forget_class"]) == [3, 3, 3, 5] and list(runs["method"])[-1] == "original"
    pd.testing.assert_frame_equal(_comparable(out).iloc[:3], _comparable(inprocess_folder))
    assert not (out / "figures.html").exists() and not list((out / "figures").glob("*.json"))
    assert json.loads((out / "meta.json").read_text())["status"] == "running"
    run_bench(**GRID, classes=[3, 5], out=out)
    assert len(pd.read_csv(out / "runs.csv")) == 6 and (out / "figures" / "seconds.json").is_file()
    assert json.loads((out / "meta.json").read_text())["status"] == "complete"


def test_commits_and_settings_are_not_mixed(inprocess_folder, tmp_path, capsys):
    from core.cli import main

    out = tmp_path / "other-commit"
    shutil.copytree(inprocess_folder, out)
    for path in (out / "cases").glob("*.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "git_commit": "f" * 40}))
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "git_commit": "f" * 40}))
    args = ["bench", "--datasets", "digits", "--methods", "output_mask", "ours", "--seeds", "1", "--classes", "3",
            "--out", str(out)]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "commit ffffffffff" in err and "--resume" in err and err.count("\n") == 1
    run_bench(**GRID, classes=[3], out=out, job=NeverJob(), resume=True)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["git_commit"][0] == "f" * 40 and len(meta["git_commit"]) == 2
    with pytest.raises(UserError, match="other settings"):
        run_bench(**{**GRID, "profile": "full"}, classes=[3], out=inprocess_folder)
    old = tmp_path / "old"
    old.mkdir()
    (old / "runs.csv").write_text("profile,dataset\n")
    with pytest.raises(UserError, match="without per-case files"):
        run_bench(**GRID, classes=[3], out=old)
    assert main(args[:-1] + [str(tmp_path / "fresh"), "--workers", "2"]) == 2
    assert "need --executor ray" in capsys.readouterr().err and not (tmp_path / "fresh").exists()


def test_two_workers_train_one_retrain_key_once(ray_session, tmp_path):
    """The same retrain case twice at once on two Ray workers: the retrain cache's lock makes the
    second wait and read the first's model (1-epoch recipe to keep it cheap)."""
    plan = make_plan("quick", methods=["retrain"], datasets=["digits"], seeds=1, classes=[3])
    target = plan.targets[0]
    target = dataclasses.replace(target, budget=dataclasses.replace(target.budget, retrain_epochs=1))
    spec = CaseSpec(plan.profile, target, 0, 3, "retrain")
    job = CaseJob(use_cache=True, threads=1, env=(("UNLEARN_CACHE_DIR", str(tmp_path / "cache")),))
    results = run_grid([spec, spec], RayExecutor(), job, progress=False)
    assert all(r.ok for r in results), [r.trace for r in results]
    assert sorted(r.row["cached"] for r in results) == [False, True]
    first, second = (r.row for r in results)
    assert first["forget_acc"] == second["forget_acc"] == 0.0 and first["retain_acc"] == second["retain_acc"]
    assert len(list((tmp_path / "cache" / "bench" / "retrain").glob("*.safetensors"))) == 1
