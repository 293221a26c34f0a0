"""Command line: ``python -m core train | unlearn | bench | bench-merge | info``.

Every user mistake ends with one sentence on stderr and exit code 2, with nothing written.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from pathlib import Path

from core import strict_json
from core.errors import UserError


def _command_line() -> str:
    return "python -m core " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def parse_count(value: str, option: str, words: tuple[str, ...] = ()) -> int | float | str:
    """K/H on the command line: a whole count (>= 1), a share in (0, 1), or one of ``words``;
    anything else (NaN, infinities, 0, negatives, 1.5) is one sentence."""
    import math

    if value in words:
        return value
    allowed = "a whole count of units (1, 2, ...) or a share of the layer in (0, 1)" + \
        (f", or {' / '.join(words)}" if words else "")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{option} {value!r} is not a number; use {allowed}.") from None
    if not math.isfinite(number) or number <= 0 or (number >= 1 and not number.is_integer()):
        raise UserError(f"{option} {value} is out of range; use {allowed}.")
    return int(number) if number >= 1 else number


def check_device(preference: str) -> str:
    """auto, cpu, cuda, cuda:N or mps, and only one this machine has."""
    import re

    import torch

    if preference in ("auto", "cpu"):
        return preference
    if re.fullmatch(r"cuda(:\d+)?", preference or ""):
        if not torch.cuda.is_available():
            raise UserError(f"--device {preference}: CUDA is not available on this machine; use --device cpu or auto.")
        index = int(preference.split(":")[1]) if ":" in preference else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {preference}: this machine has {torch.cuda.device_count()} CUDA device(s).")
        return preference
    if preference == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError("--device mps: Apple's MPS is not available on this machine; use --device cpu or auto.")
        return preference
    raise UserError(f"--device {preference!r} is not a device; use auto, cpu, cuda, cuda:N or mps.")


def check_arguments(args) -> None:
    """Every value the command line gives, checked before any work starts (one sentence, exit 2)."""
    import math

    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed < 2 ** 63:
        raise UserError(f"--seed {seed} is out of range; use a whole number from 0 to 2^63 - 1.")
    if getattr(args, "device", None) is not None:
        check_device(args.device)
    if getattr(args, "k", None) is not None:
        args.k = parse_count(args.k, "--k")
    if getattr(args, "h", None) is not None:
        args.h = parse_count(args.h, "--h", ("auto", "calibrate"))
    strength = getattr(args, "strength", None)
    if strength is not None and not (math.isfinite(strength) and 0 <= strength <= 1):
        raise UserError(f"--strength {strength} is out of range; use a value in [0, 1].")
    pool = getattr(args, "pool_per_class", None)
    if pool is not None and not 4 <= pool <= 1_000_000:
        raise UserError(f"--pool-per-class {pool} is out of range; use at least 4 (the pool is halved into an "
                        "analysis and a validation part, per class).")
    for name, low in (("epochs", 1), ("batch_size", 1)):
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise UserError(f"--{name.replace('_', '-')} {value} is out of range; use a whole number of at least {low}.")
    lr = getattr(args, "lr", None)
    if lr is not None and not (math.isfinite(lr) and 0 < lr <= 1):
        raise UserError(f"--lr {lr} is out of range; use a learning rate in (0, 1].")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="digits", help="digits, mnist, fashion_mnist, cifar10, cifar100 or imagefolder:PATH")
    parser.add_argument("--arch", default="cnn", help="mlp, cnn, allcnn, vgg11, vgg16, resnet18, resnet50 (the project's), or a torchvision "
                             "classifier by name, e.g. torchvision:resnet18 for torchvision's own class and forward")
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset (else $UNLEARN_DATA_DIR, else download)")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    parser.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Unlearning Lab: zero-shot class unlearning with LRP.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model and write a checkpoint with its model card")
    _common(train)
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--out", default=None, help="checkpoint path (.safetensors); never overwritten")

    un = sub.add_parser("unlearn", help="forget one class and report per-class accuracy before and after")
    _common(un)
    un.add_argument("--forget", type=int, required=True, help="the class to forget")
    un.add_argument("--model", default=None,
                    help="your model: a whole model (.onnx, .pt2 from torch.export.save) or weights for --arch "
                         "(.safetensors, a state_dict); its card (<stem>.json or embedded) names its dataset")
    un.add_argument("--k", default=None, help="top-K units per image (count, or share of the layer width)")
    un.add_argument("--h", default=None,
                    help="H units kept per layer: count, share, auto (cover half the contrast score) or calibrate "
                         "(on the pool's validation part)")
    un.add_argument("--layers", nargs="+", default=None, help="stages whose output units are analysed")
    un.add_argument("--rule", default=None, help="LRP rule: epsilon, epsilon-plus-flat, alpha1-beta0, alpha2-beta1, gamma")
    un.add_argument("--selection", default=None, choices=["frequency", "contrast"])
    un.add_argument("--method", default=None, choices=["zero", "gaussian", "laplace"])
    un.add_argument("--target", default=None, choices=["in", "out", "both", "auto"])
    un.add_argument("--strength", type=float, default=None)
    un.add_argument("--erase", default=None, choices=["none", "auto"],
                    help="erase the class direction from the layers before the classifier (ours: auto)")
    un.add_argument("--relabel", default=None, choices=["none", "auto"],
                    help="teach the class's images their second choice, as surely as the model's wrong answers (ours: auto)")
    un.add_argument("--recipe", default="ours", choices=["ours", "paper"], help="defaults to start from")
    un.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="any setting by its dotted name, after the options above; repeatable, e.g. "
                         "--set erasure.budget=0.01 --set relabel=none (python -m core settings lists them)")
    un.add_argument("--pool-per-class", type=int, default=100, help="held-out images per class in the analysis pool")
    un.add_argument("--eval-split", default="heldout", choices=["heldout", "train"],
                    help="where accuracy is measured: the held-out evaluation set (default), or the training split "
                         "as the authors' runner does")
    un.add_argument("--save", default=None,
                    help="write the unlearned model here: .safetensors, .onnx or .pt2 (never overwrites)")
    un.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    bench = sub.add_parser("bench", help="compare unlearning methods with retraining")
    bench.add_argument("--profile", default="quick", choices=["quick", "full"])
    bench.add_argument("--methods", nargs="+", default=None)
    bench.add_argument("--datasets", nargs="+", default=None)
    bench.add_argument("--seeds", type=int, default=None)
    bench.add_argument("--classes", type=int, nargs="+", default=None, help="forget classes (default: per profile)")
    bench.add_argument("--archs", nargs="+", default=None,
                       help="only the targets of these architectures (e.g. cnn allcnn vgg11_slim)")
    bench.add_argument("--first-seed", type=int, default=0,
                       help="run seeds FIRST_SEED .. FIRST_SEED+SEEDS-1 (to split a run over processes)")
    bench.add_argument("--data-dir", default=None)
    bench.add_argument("--device", default="auto")
    bench.add_argument("--out", default=None,
                       help="folder for the cases, CSV, summary and figures (default bench-results/PROFILE); a rerun "
                            "into the same folder skips the cases it finished")
    bench.add_argument("--resume", action="store_true",
                       help="continue a folder whose cases were made by another commit (otherwise refused)")
    bench.add_argument("--executor", default="inprocess", choices=["inprocess", "ray"],
                       help="run the cases in this process (default) or as Ray tasks")
    bench.add_argument("--ray-address", default=None,
                       help="join this Ray cluster (else $RAY_ADDRESS, else start a local Ray); with --executor ray")
    bench.add_argument("--workers", type=int, default=None,
                       help="cases at once on the local Ray (default: one per CPU); with --executor ray")

    merge = sub.add_parser("bench-merge", help="merge bench folders (e.g. from two clusters) into one")
    merge.add_argument("parts", nargs="+", metavar="DIR", help="bench folders with runs.csv and meta.json")
    merge.add_argument("--out", required=True, help="folder for the merged CSV, summary and figures")

    sub.add_parser("info", help="list datasets, architectures and shipped checkpoints")
    settings = sub.add_parser("settings", help="list every unlearning setting of a recipe, as --set takes them")
    settings.add_argument("--recipe", default="ours", choices=["ours", "paper"])
    return parser


# ----------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    import torch

    from core.models.compute import pick_device, set_threads
    from core.data.catalog import load_split
    from core.metrics.evaluate import evaluate
    from core.models.cards import ModelCard
    from core.models.checkpoints import save_checkpoint
    from core.models.registry import build_model
    from core.models.train import recipe_for, tqdm_progress, train_model

    set_threads()
    default = f"models/{args.dataset.replace(':', '_').replace('/', '_')}-{args.arch}-seed{args.seed}.safetensors"
    out = check_output_path(default if args.out is None else args.out, "--out", (".safetensors",))
    train_set = load_split(args.dataset, "train", args.data_dir)
    test_set = load_split(args.dataset, "test", args.data_dir)
    info = train_set.info
    config = recipe_for(args.dataset.split(":")[0], epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    device = pick_device(args.device)
    model = build_model(args.arch, info.num_classes, info.input_shape, seed=args.seed).to(device)
    update, close = tqdm_progress(f"train {args.arch} on {args.dataset}")
    start = dt.datetime.now()
    train_model(model, train_set, config, update)
    close()
    model = model.cpu().eval()
    result = evaluate(model, test_set)
    card = ModelCard(arch=args.arch, dataset=args.dataset, classes=list(info.classes), input_shape=list(info.input_shape),
                     mean=list(info.mean), std=list(info.std), seed=args.seed, command=_command_line(),
                     per_class_accuracy=[round(a, 4) for a in result.per_class], test_accuracy=round(result.overall, 4),
                     created=start.strftime("%Y-%m-%d"),
                     notes={"train_config": config.to_dict(), "device": str(device), "torch": torch.__version__,
                            "train_seconds": round((dt.datetime.now() - start).total_seconds(), 1)})
    save_checkpoint(model, card, out)
    print(f"test accuracy {result.overall:.4f}; wrote {out} and {out.with_suffix('.json')}")
    return 0


# ----------------------------------------------------------------------------- unlearn
def load_model_for(args):
    """The model and card to unlearn: ``--model`` (a whole model as .onnx / .pt2, or weights for
    --arch; the card from the file's sidecar or metadata, else built from --dataset), else the
    shipped checkpoint for --dataset/--arch."""
    from core.data.catalog import dataset_info
    from core.models.cards import ModelCard
    from core.models.checkpoints import load_checkpoint, model_format, shipped_checkpoint

    if args.model:
        path = Path(args.model)
        kind = model_format(path)          # missing, empty, TorchScript, pickled model: one sentence here
        info = dataset_info(args.dataset, args.data_dir)
        fallback = ModelCard(arch=path.stem if kind != "weights" else args.arch, dataset=args.dataset,
                             classes=list(info.classes), input_shape=list(info.input_shape), mean=list(info.mean),
                             std=list(info.std), notes={"format": kind})
        return load_checkpoint(path, fallback) + (path,)
    path = shipped_checkpoint(args.dataset, args.arch)
    if not path.is_file():
        raise UserError(f"No shipped checkpoint for {args.dataset}/{args.arch}; train one with "
                        f"'python -m core train --dataset {args.dataset} --arch {args.arch}' and pass it with --model.")
    return load_checkpoint(path) + (path,)


def config_from_args(args):
    """The recipe's settings with every option the user gave: the shortcuts (``--k``, ``--h``, ...)
    first, then each ``--set NAME=VALUE`` in order. Checked as a whole before any work."""
    from core.unlearning.config import RECIPES

    base = RECIPES[args.recipe]
    changes: dict[str, object] = {}
    if args.h == "calibrate":
        changes.update({"selection.h": None, "calibration": "default"})
    elif args.h is not None:
        changes.update({"selection.h": args.h, "calibration": None})
    if args.target == "auto":
        if base.calibration is None and args.h != "calibrate":
            raise UserError("--target auto is chosen during calibration on the pool's validation part; "
                            "add --h calibrate.")
        changes["calibration.targets"] = ("out", "both")
    elif args.target is not None:
        changes["perturbation.target"] = args.target
        if base.calibration is not None or args.h == "calibrate":
            changes["calibration.targets"] = None
    shortcuts = {"selection.k": args.k, "selection.layers": tuple(args.layers) if args.layers else None,
                 "lrp.rule": args.rule, "selection.method": args.selection, "perturbation.method": args.method,
                 "perturbation.strength": args.strength, "seed": args.seed}
    changes.update({k: v for k, v in shortcuts.items() if v is not None})
    for flag in ("erase", "relabel"):
        value = getattr(args, flag)
        if value is not None:
            changes["erasure" if flag == "erase" else "relabel"] = None if value == "none" else "default"
    config = base.override(changes)
    for item in args.set or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--set {item!r}: write NAME=VALUE, e.g. --set erasure.budget=0.01 "
                            "(python -m core settings lists every name).")
        config = config.override({name.strip(): value})
    return config


def cmd_settings(args) -> int:
    """Every setting of a recipe, by the dotted name ``--set`` takes."""
    from core.unlearning.config import RECIPES

    for name, value in RECIPES[args.recipe].flat().items():
        print(f"{name} = {json.dumps(value)}")
    return 0


def cmd_unlearn(args) -> int:
    from core.models.compute import pick_device, set_threads
    from core.data.catalog import load_split
    from core.data.sets import split_heldout
    from core.metrics.evaluate import evaluate
    from core.models.cards import ModelCard
    from core.models.checkpoints import file_checksum
    from core.unlearning.pipeline import check_class, load_libraries, unlearn

    from core.data.catalog import dataset_info

    set_threads()
    dataset_info(args.dataset, args.data_dir)          # an unknown dataset name fails first, clearly
    config = config_from_args(args)                    # and so do settings that do not go together
    save = check_save_path(args.save)
    model, card, source = load_model_for(args)
    if card.dataset != args.dataset and args.model is None:
        raise UserError(f"The checkpoint was trained on {card.dataset}, not {args.dataset}.")
    check_class(args.forget, card.num_classes)
    device = pick_device(args.device)
    test = load_split(card.dataset, "test", args.data_dir)
    if test.info.num_classes != card.num_classes:
        raise UserError(f"The checkpoint has {card.num_classes} classes but {card.dataset} has {test.info.num_classes}.")
    pool, eval_set = split_heldout(test, args.pool_per_class, args.seed)
    if args.eval_split == "train":                     # the authors' protocol: accuracy on the training images
        eval_set = load_split(card.dataset, "train", args.data_dir)
    model = model.to(device)
    before = evaluate(model, eval_set, args.forget)
    libraries = load_libraries()                       # imports are not the unlearning's time
    result = unlearn(model, pool, args.forget, config)
    after = evaluate(result.model, eval_set, args.forget)
    report = {
        "forget_class": args.forget, "dataset": card.dataset, "arch": card.arch, "model": str(source),
        "per_class_before": before.per_class, "per_class_after": after.per_class,
        "forget_acc_before": before.forget_acc, "forget_acc_after": after.forget_acc,
        "retain_acc_before": before.retain_acc, "retain_acc_after": after.retain_acc,
        "selected_units": result.path.units, "target_used": result.config.perturbation.target, "erased_layers": result.erased_layers,
        "relabelling": result.relabelling.to_dict() if result.relabelling else None,
        "repair": result.repairing.to_dict() if result.repairing else None,
        "seconds_unlearn": result.seconds_unlearn,
        "seconds_breakdown": result.seconds, "seconds_loading_libraries": round(libraries, 3), "analysis_size": len(pool), "analysis_images_used": result.path.settings["n_images"],
        "eval_split": args.eval_split, "eval_size": len(eval_set), "seed": args.seed, "device": str(device), "config": config.to_dict(),
    }
    if save is not None:
        new_card = ModelCard(**{**card.__dict__, "per_class_accuracy": [round(a, 4) for a in after.per_class],
                                "test_accuracy": None, "command": _command_line(),
                                "created": dt.date.today().isoformat(),
                                "notes": {"unlearned_from": str(source), "source_sha256": file_checksum(source),
                                          "source_format": card.notes.get("format", "weights"),
                                          "format": save.suffix.lstrip("."),
                                          "forget_class": args.forget, "parameters": config.to_dict(),
                                          "target_used": result.config.perturbation.target,
                                          "erased_layers": result.erased_layers,
                                          "relabelling": report["relabelling"], "repair": report["repair"],
                                          "metrics": {k: report[k] for k in ("forget_acc_before", "forget_acc_after",
                                                                             "retain_acc_before", "retain_acc_after",
                                                                             "seconds_unlearn", "eval_size")},
                                          "accuracy_on": ("the training split (the authors' protocol)"
                                                          if args.eval_split == "train" else
                                                          "evaluation set (held-out, disjoint from the analysis pool)")}})
        save_model(result.model.cpu(), new_card, save)
        report["saved"] = str(save)
    print(strict_json.dumps(report) if args.json else format_report(report, card.classes))
    return 0


SAVE_SUFFIXES = (".safetensors", ".onnx", ".pt2")


def check_output_path(value: str | None, option: str = "--save", suffixes: tuple[str, ...] = SAVE_SUFFIXES) -> Path | None:
    """An output path, checked before any work: not empty, a known format, neither it nor its card
    exists, every existing folder above it is a folder, and the nearest one can be written (tried
    with a temporary file, so read-only folders and file systems are found, whoever runs it)."""
    import os
    import tempfile

    if value is None:
        return None
    if not str(value).strip():
        raise UserError(f"{option} is empty; give a file path ending in {', '.join(suffixes)}.")
    if "\x00" in str(value):
        raise UserError(f"{option} {value!r} holds a NUL character, which no file name may hold.")
    save = Path(value).expanduser()
    if save.suffix.lower() not in suffixes:
        raise UserError(f"{option} {str(save)!r} must end in {', '.join(suffixes)} (the format to write).")
    for target in (save, save.with_suffix(".json")):
        if target.exists() or target.is_symlink():
            raise UserError(f"'{target}' already exists; choose another {option} path (existing files are never overwritten).")
    folder = save.parent
    while not folder.exists() and folder != folder.parent:
        if folder.is_symlink():
            raise UserError(f"{option} '{save}': '{folder}' is a broken link, not a folder.")
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{option} '{save}': '{folder}' is a file, not a folder; choose a path inside a folder.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".unlearning-lab-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{option} '{save}': the folder '{folder}' cannot be written ({exc.strerror or exc}); "
                        "choose a writable folder.") from None
    return save


def check_save_path(value: str | None) -> Path | None:
    """The unlearn command's --save path (:func:`check_output_path`)."""
    return check_output_path(value, "--save", SAVE_SUFFIXES)


def save_model(model, card, save: Path) -> None:
    """Write the unlearned model in the format ``save`` names (safetensors with its card inside, or
    ONNX / .pt2 with the card beside it); the card is written last, and the model file is removed
    again if that fails, so nothing is left half-written."""
    from core.models.formats.writing import save_exported, save_onnx
    from core.models.cards import card_path
    from core.models.checkpoints import save_checkpoint, write_card

    suffix = save.suffix.lower()
    if suffix == ".safetensors":
        save_checkpoint(model, card, save)
        return
    (save_onnx if suffix == ".onnx" else save_exported)(model, save, tuple(card.input_shape))
    try:
        write_card(card, card_path(save))
    except BaseException:
        save.unlink(missing_ok=True)
        raise


def _relabelling_line(relabelling: dict | None) -> str:
    if not relabelling:
        return "off"
    if not relabelling["strength"]:
        return relabelling["reason"]
    return (f"strength {relabelling['strength']:.2f} ({relabelling['reason']}; forget-image entropy "
            f"{relabelling['forget_entropy']:.2f} nats, wrong answers {relabelling['wrong_entropy']:.2f})")


def _repair_line(repair: dict | None) -> str:
    if not repair:
        return "off"
    if not repair["strength"]:
        return (f"not applied (no strength did better on the validation part: retain {repair['retain_before']:.1%}, "
                f"worst single class {100 * repair['worst_class_before']:.1f} points below the original)")
    return (f"strength {repair['strength']:.2f} (validation retain {repair['retain_before']:.1%} -> "
            f"{repair['retain_after']:.1%}, worst single class {100 * repair['worst_class_before']:.1f} -> "
            f"{100 * repair['worst_class_after']:.1f} points below the original)")


def format_report(report: dict, classes: list[str]) -> str:
    lines = [f"Forgetting class {report['forget_class']} ({classes[report['forget_class']]}) of "
             f"{report['dataset']}/{report['arch']} on {report['device']}",
             f"analysis pool {report['analysis_size']} held-out images ({report['analysis_images_used']} of the forget class used), "
             + (f"accuracy on the training split ({report['eval_size']} images, the authors' protocol)"
                if report.get("eval_split") == "train" else f"evaluation set {report['eval_size']} images"), "",
             f"{'class':<14}{'before':>8}{'after':>8}"]
    for c, (b, a) in enumerate(zip(report["per_class_before"], report["per_class_after"])):
        mark = "  <- forget" if c == report["forget_class"] else ""
        lines.append(f"{classes[c][:13]:<14}{b:>8.1%}{a:>8.1%}{mark}")
    lines += ["", f"forget accuracy {report['forget_acc_before']:.1%} -> {report['forget_acc_after']:.1%}",
              f"retain accuracy {report['retain_acc_before']:.1%} -> {report['retain_acc_after']:.1%}",
              f"unlearning took {report['seconds_unlearn']:.3f} s "
              f"(relevance and selection {report['seconds_breakdown']['relevance_and_selection']:.3f} s, "
              f"perturbation {report['seconds_breakdown']['perturbation']:.3f} s, "
              f"erasure {report['seconds_breakdown'].get('erasure', 0.0):.3f} s, "
              f"relabelling {report['seconds_breakdown'].get('relabelling', 0.0):.3f} s, "
              f"repair {report['seconds_breakdown'].get('repair', 0.0):.3f} s; "
              f"loading the libraries ({report['seconds_loading_libraries']:.1f} s) and evaluation not included)",
              "selected units: " + "; ".join(f"{k}: {len(v)}" for k, v in report["selected_units"].items())
              + f" (weights perturbed: {report['target_used']})",
              "class direction erased at: " + (", ".join(report["erased_layers"]) or "no layer"),
              "second-choice relabelling: " + _relabelling_line(report.get("relabelling")),
              "retain repair: " + _repair_line(report.get("repair"))]
    if "saved" in report:
        lines.append(f"wrote {report['saved']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- bench / info
def cmd_bench(args) -> int:
    from core.bench.runner import run_bench_cli

    return run_bench_cli(args)


def cmd_bench_merge(args) -> int:
    from core.bench.store import merge_bench

    runs, meta = merge_bench(args.parts, args.out, command=_command_line())
    partial = meta["partial_parts"]
    print(f"merged {len(runs)} rows from {len(args.parts)} folders into {args.out} (status {meta['status']}"
          + (f"; partial: {', '.join(partial)}" if partial else "") + ")")
    return 0


def cmd_info(args) -> int:
    from core.data.info import DATASETS
    from core.models.cards import shipped_checkpoints
    from core.models.registry import ARCHITECTURES
    from core.attribution.rules import RULES

    print("datasets:", ", ".join(DATASETS), "imagefolder:PATH")
    print("architectures:", ", ".join(ARCHITECTURES), "+ torchvision names")
    print("LRP rules:", ", ".join(RULES))
    for path, card in shipped_checkpoints():
        print(f"shipped: {path.parent.name}/{path.stem}  test accuracy {card.test_accuracy}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_arguments(args)
        return {"train": cmd_train, "unlearn": cmd_unlearn, "bench": cmd_bench, "bench-merge": cmd_bench_merge,
                "info": cmd_info, "settings": cmd_settings}[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
