"""The command line as a user runs it: JSON report, saving, and one-sentence errors with exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


REPORT_KEYS = {"forget_class", "dataset", "arch", "model", "per_class_before", "per_class_after", "forget_acc_before",
               "forget_acc_after", "retain_acc_before", "retain_acc_after", "selected_units", "target_used",
               "erased_layers", "relabelling", "repair", "seconds_unlearn", "seconds_breakdown",
               "seconds_loading_libraries", "analysis_size", "analysis_images_used", "eval_split", "eval_size", "seed", "device", "config"}


def test_unlearn_digits_json():
    proc = run_cli("unlearn", "--dataset", "digits", "--arch", "cnn", "--forget", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) == REPORT_KEYS
    for key in ("forget_class", "per_class_before", "per_class_after", "forget_acc_before", "forget_acc_after",
                "retain_acc_before", "retain_acc_after", "selected_units", "seconds_unlearn", "analysis_size",
                "eval_size", "seed", "device"):
        assert key in report
    assert report["forget_acc_after"] < report["forget_acc_before"] - 0.5
    assert report["retain_acc_after"] > report["retain_acc_before"] - 0.05
    assert all(0 <= a <= 1 for a in report["per_class_after"])
    off = json.loads(run_cli("unlearn", "--dataset", "digits", "--arch", "cnn", "--forget", "3", "--json",
                             "--relabel", "none").stdout)
    assert off["relabelling"] is None and off["config"]["relabel"] is None


def test_unlearn_mnist_table_and_save(tmp_path, shared_data):
    out = tmp_path / "forgot3.safetensors"
    proc = run_cli("unlearn", "--dataset", "mnist", "--arch", "cnn", "--forget", "3", "--data-dir", str(shared_data),
                   "--save", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "forget accuracy" in proc.stdout and "<- forget" in proc.stdout
    assert "second-choice relabelling: skipped: " in proc.stdout      # MNIST: too few wrong answers to compare with
    assert "loading the libraries (" in proc.stdout and "evaluation not included" in proc.stdout
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["notes"]["forget_class"] == 3 and len(card["notes"]["source_sha256"]) == 64
    assert card["notes"]["relabelling"]["strength"] == 0 and card["notes"]["parameters"]["relabel"] == {"budget": 0.02, "min_wrong": 20, "shrinkage": 0.1}
    again = run_cli("unlearn", "--dataset", "mnist", "--arch", "cnn", "--forget", "3", "--data-dir", str(shared_data),
                    "--save", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr


FIRST_CALL = """
import sys
from core.data.catalog import load_split
from core.data.sets import split_heldout
from core.models.checkpoints import load_checkpoint, shipped_checkpoint
from core.unlearning.pipeline import load_libraries, unlearn
model, _ = load_checkpoint(shipped_checkpoint("digits", "cnn"))
pool, _ = split_heldout(load_split("digits", "test", None), 20, seed=3)
if sys.argv[1] == "load":
    load_libraries()
before = set(sys.modules)
unlearn(model, pool, 3)
print(" ".join(sorted(set(sys.modules) - before)))
"""


def test_the_cli_s_one_timed_call_loads_no_library():
    """The CLI reports one call's seconds, in a fresh process: after ``load_libraries`` the first
    ``unlearn`` imports no module at all, so the figure is the unlearning's; without it, that call
    imports zennit, torchvision and torch._dynamo."""
    def imported(mode: str) -> set[str]:
        done = subprocess.run([sys.executable, "-c", FIRST_CALL, mode], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        return set(done.stdout.split())

    assert {"zennit", "torchvision", "torch._dynamo"} <= imported("skip")
    assert imported("load") == set()


@pytest.mark.parametrize("args, message", [
    (["--forget", "12"], "out of range"),
    (["--forget", "3", "--k", "5000"], "out of range"),
    (["--forget", "3", "--dataset", "nosuchset"], "Unknown dataset"),
    (["--forget", "3", "--arch", "nosucharch"], "No shipped checkpoint"),
    (["--forget", "3", "--model", "missing.safetensors"], "does not exist"),
])
def test_bad_input_exits_2_with_one_sentence(args, message, tmp_path):
    base = ["unlearn", "--dataset", "digits", "--arch", "cnn"]
    proc = run_cli(*base, *args, "--save", str(tmp_path / "x.safetensors"))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_train_writes_card_and_refuses_overwrite(tmp_path):
    out = tmp_path / "mlp.safetensors"
    proc = run_cli("train", "--dataset", "digits", "--arch", "mlp", "--epochs", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["command"].startswith("python -m core train") and card["seed"] == 0
    assert card["test_accuracy"] > 0.5
    again = run_cli("train", "--dataset", "digits", "--arch", "mlp", "--epochs", "1", "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("kind", ["legacy", "dynamo", "pt2"])
def test_unlearn_a_model_the_user_brings(kind, lenet_files, tmp_path, shared_data):
    """A LeNet made outside core.models, exported by either ONNX exporter or torch.export: the same
    JSON report as the shipped models, the class forgotten, the others kept, the source file untouched,
    and the unlearned model written in the format it came in."""
    from core.models.checkpoints import file_checksum, load_checkpoint

    source = lenet_files[kind]
    before = file_checksum(source)
    out = tmp_path / f"forgot4{source.suffix}"
    proc = run_cli("unlearn", "--dataset", "mnist", "--data-dir", str(shared_data), "--model", str(source),
                   "--forget", "4", "--json", "--save", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) - {"saved"} == REPORT_KEYS
    assert report["forget_acc_before"] > 0.95 and report["forget_acc_after"] < 0.05
    assert report["retain_acc_after"] >= report["retain_acc_before"] - 0.01
    assert file_checksum(source) == before
    model, card = load_checkpoint(out)                     # written as .onnx / .pt2 with its card beside it
    assert card.dataset == "mnist" and card.notes["source_sha256"] == before and card.notes["forget_class"] == 4
    assert card.notes["format"] == source.suffix.lstrip(".")
    from core.data.catalog import load_split
    from core.data.sets import split_heldout
    from core.metrics.evaluate import evaluate

    _, eval_set = split_heldout(load_split("mnist", "test", str(shared_data)), 100, 0)
    assert evaluate(model, eval_set, 4).per_class == pytest.approx(report["per_class_after"], abs=1e-9)


@pytest.mark.parametrize("kind, message", [
    ("torchscript", "is a TorchScript archive, which can run code when loaded; export it with torch.onnx.export"),
    ("pickled", "is a pickled whole model, which can run code when loaded; export it with torch.onnx.export"),
    ("truncated", "is not a valid ONNX model"),
    ("wrong_dataset", "expects images of 1 x 28 x 28 but digits has 1 x 8 x 8"),
])
def test_bad_model_files_exit_2_with_one_sentence(kind, message, lenet_files, tmp_path, shared_data):
    from core.models.checkpoints import file_checksum

    if kind == "truncated":
        source = tmp_path / "broken.onnx"
        source.write_bytes(lenet_files["legacy"].read_bytes()[:300])
    else:
        source = lenet_files["legacy" if kind == "wrong_dataset" else kind]
    before = file_checksum(source)
    out = tmp_path / "out" / "x.onnx"
    proc = run_cli("unlearn", "--dataset", "digits" if kind == "wrong_dataset" else "mnist", "--data-dir",
                   str(shared_data), "--model", str(source), "--forget", "4", "--save", str(out))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.parent.exists() and file_checksum(source) == before


def test_unlearn_the_shipped_third_party_onnx_model(shared_data):
    """torchvision's MobileNetV3 (squeeze-excitation gates, hardswish, residual sums), trained on
    MNIST outside core.models and shipped as ONNX: forgotten through its card, file untouched."""
    from core.models.checkpoints import file_checksum

    source = ROOT / "assets" / "mnist" / "mobilenet_v3_small.onnx"
    before = file_checksum(source)
    proc = run_cli("unlearn", "--dataset", "mnist", "--data-dir", str(shared_data), "--model", str(source),
                   "--forget", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["arch"] == "mobilenet_v3_small" and report["forget_acc_before"] > 0.95
    assert report["forget_acc_after"] < 0.05 and report["retain_acc_after"] >= report["retain_acc_before"] - 0.01
    assert file_checksum(source) == before


@pytest.mark.parametrize("args, message", [
    (["--k", "nan"], "--k nan is out of range"),
    (["--k", "inf"], "--k inf is out of range"),
    (["--k", "1.5"], "--k 1.5 is out of range; use a whole count"),
    (["--k", "many"], "--k 'many' is not a number"),
    (["--h", "-3"], "--h -3 is out of range"),
    (["--recipe", "paper", "--h", "auto"], "H 'auto' covers a share of the class-contrast score"),
    (["--recipe", "paper", "--target", "auto"], "--target auto is chosen during calibration"),
    (["--seed", str(2 ** 70)], "is out of range; use a whole number from 0 to 2^63 - 1"),
    (["--pool-per-class", "1"], "--pool-per-class 1 is out of range"),
    (["--device", "tpu"], "--device 'tpu' is not a device"),
    (["--device", ""], "--device '' is not a device"),
    (["--strength", "nan"], "--strength nan is out of range"),
    (["--save", "out.txt"], "must end in .safetensors, .onnx, .pt2"),
])
def test_bad_settings_exit_2_before_any_work(args, message, capsys):
    """In-process (``core.cli.main``), so that every value costs no interpreter start."""
    from core.cli import main

    assert main(["unlearn", "--dataset", "digits", "--arch", "cnn", "--forget", "3", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs 0 is out of range"),
    (["--batch-size", "0"], "--batch-size 0 is out of range"),
    (["--lr", "nan"], "--lr nan is out of range"),
    (["--lr", "1e6"], "--lr 1000000.0 is out of range"),
])
def test_bad_training_settings_exit_2_and_write_nothing(args, message, tmp_path, capsys):
    from core.cli import main

    assert main(["train", "--dataset", "digits", "--arch", "mlp", "--out", str(tmp_path / "m.safetensors"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- property-based: any value, a config or one sentence
from hypothesis import HealthCheck, given, settings, strategies as st

QUICK = settings(max_examples=120, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ODD_TEXT = st.sampled_from(["", " ", "nan", "NaN", "-inf", "inf", "1e309", "-0", "0x10", "1_000", "１２", "٣",
                            "auto", "calibrate", "none", "default", "1.5", "0.5", "3", " 3 ", "1e-320", "true",
                            "[1, 2]", "{}", "None", "\x00", "é", "🙂"])
VALUES = st.one_of(ODD_TEXT, st.text(max_size=12),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.integers(min_value=-2 ** 90, max_value=2 ** 90).map(str))
NUMBERS = st.one_of(st.integers(min_value=0, max_value=3000).map(str), st.floats(min_value=0, max_value=1).map(repr))


def option(plausible):
    """Left out (half the time), a plausible value, or anything."""
    return st.one_of(st.none(), st.none(), st.none(), plausible, plausible, VALUES)


INTS = option(st.integers(min_value=0, max_value=300).map(str))
SHARES = option(st.floats(min_value=0, max_value=1.2).map(repr))
COUNTS = option(st.one_of(st.integers(min_value=1, max_value=3000).map(str),
                          st.floats(min_value=0, max_value=1.5).map(repr), st.sampled_from(["auto", "calibrate"])))
DEVICES = option(st.sampled_from(["auto", "cpu", "cuda", "cuda:7", "mps", "tpu", ""]))
SETTING_VALUES = st.one_of(NUMBERS, st.sampled_from(["none", "default", "in", "out", "both", "zero", "gaussian",
                                                     "epsilon", "contrast", "fc1", "fc1,conv2", "true", "false"]),
                           VALUES)


def _one_sentence(exc: Exception) -> None:
    text = str(exc)
    assert text.strip() and "\n" not in text and "Traceback" not in text, text


def _parse(argv: list[str]):
    """argparse's own refusal (a value that is not an int for an int option) is exit 2 too."""
    from core.cli import build_parser

    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2
        return None


@QUICK
@given(k=COUNTS, h=COUNTS, seed=INTS, strength=SHARES, pool=INTS, device=DEVICES,
       sets=st.lists(st.tuples(st.one_of(st.sampled_from(sorted(__import__("core.unlearning.config", fromlist=["x"])
                                                                       .OURS_CONFIG.flat())), st.text(max_size=8)),
                               SETTING_VALUES), max_size=2),
       recipe=st.sampled_from(["ours", "paper"]))
def test_unlearn_arguments_give_a_valid_config_or_one_sentence(k, h, seed, strength, pool, device, sets, recipe):
    import json as strict

    from core.cli import check_arguments, config_from_args
    from core.errors import UserError
    from core.unlearning.config import UnlearnConfig

    given_options = {"--k": k, "--h": h, "--seed": seed, "--strength": strength, "--pool-per-class": pool,
                     "--device": device}
    argv = ["unlearn", "--dataset", "digits", "--forget", "3", "--recipe", recipe]
    argv += [f"{option}={value}" for option, value in given_options.items() if value is not None]
    argv += [f"--set={name}={value}" for name, value in sets]
    args = _parse(argv)
    if args is None:
        return
    try:
        check_arguments(args)
        config = config_from_args(args)
    except UserError as exc:
        _one_sentence(exc)
        return
    assert isinstance(config, UnlearnConfig)
    strict.dumps(config.to_dict(), allow_nan=False)          # nothing non-finite got in
    assert 0 <= config.seed < 2 ** 63 and 4 <= args.pool_per_class


@QUICK
@given(epochs=INTS, batch=INTS, lr=SHARES, seed=INTS)
def test_train_arguments_are_in_range_or_one_sentence(epochs, batch, lr, seed):
    import math

    from core.cli import check_arguments
    from core.errors import UserError

    options = {"--epochs": epochs, "--batch-size": batch, "--lr": lr, "--seed": seed}
    args = _parse(["train"] + [f"{option}={value}" for option, value in options.items() if value is not None])
    if args is None:
        return
    try:
        check_arguments(args)
    except UserError as exc:
        _one_sentence(exc)
        return
    assert args.epochs is None or args.epochs >= 1
    assert args.batch_size is None or args.batch_size >= 1
    assert args.lr is None or math.isfinite(args.lr) and 0 < args.lr <= 1


@QUICK
@given(value=st.one_of(VALUES, st.just(None)))
def test_save_path_is_a_path_or_one_sentence(value, tmp_path_factory):
    from core.cli import check_save_path
    from core.errors import UserError

    folder = tmp_path_factory.getbasetemp()
    try:
        path = check_save_path(None if value is None else str(folder / "out" / value) if value.strip() else value)
    except UserError as exc:
        _one_sentence(exc)
        return
    assert value is None or (path.suffix.lower() in (".safetensors", ".onnx", ".pt2") and not path.exists())
