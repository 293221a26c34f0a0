"""The nested unlearning configuration: parts owned by their stages, rules checked at construction,
overrides by dotted name (the CLI's --set), and the authors' protocol on the command line."""
from __future__ import annotations

import json

import pytest

from core.attribution.paths import Selection
from core.errors import UserError
from core.unlearning.calibration import Calibration
from core.unlearning.config import OURS_CONFIG, PAPER_CONFIG, RECIPES, UnlearnConfig
from core.unlearning.erase import Erasure


def test_the_two_recipes_are_named_values():
    assert RECIPES == {"ours": OURS_CONFIG, "paper": PAPER_CONFIG}
    assert PAPER_CONFIG.calibration is None and PAPER_CONFIG.erasure is None and PAPER_CONFIG.relabel is None
    assert PAPER_CONFIG.perturbation.keep_bias and PAPER_CONFIG.selection.method == "frequency"
    assert OURS_CONFIG.selection.h is None and OURS_CONFIG.targets() == ("out", "both")
    assert json.loads(json.dumps(OURS_CONFIG.to_dict()))["erasure"]["budget"] == OURS_CONFIG.erasure.budget


def test_override_by_dotted_name_reads_text_by_type():
    config = OURS_CONFIG.override({"erasure.budget": "0.01", "relabel": "none", "selection.n_images": "64",
                                   "calibration.targets": "out", "seed": "7"})
    assert config.erasure.budget == 0.01 and config.relabel is None and config.selection.n_images == 64
    assert config.calibration.targets == ("out",) and config.seed == 7 and config.perturbation.seed == 7
    assert OURS_CONFIG.erasure.budget == 0.005                     # frozen: the recipe itself never changes
    on = PAPER_CONFIG.override({"erasure.budget": 0.02})             # a field of a skipped stage turns it on
    assert on.erasure == Erasure(budget=0.02)
    assert set(OURS_CONFIG.flat()) >= {"erasure.budget", "calibration.retain_budget", "lrp.rule", "seed"}


@pytest.mark.parametrize("changes, message", [
    ({"selection.h": 0.1}, "Calibration chooses H"),                    # the coupling the issue found
    ({"calibration": None}, "selection.h is unset, so H must be calibrated"),
    ({"selection.h": "auto"}, "Calibration chooses H"),
    ({"erase": "auto"}, "Unknown setting 'erase'"),
    ({"erasure.budgets": 1}, "erasure has max_layers"),
    ({"erasure.budget": "nan"}, "erasure.budget must be a finite number"),
    ({"erasure.budget": 2}, "erasure.budget must be a share in [0, 1]"),
    ({"selection.k": "1.5"}, "K must be a unit count"),
    ({"selection.method": "magic"}, "Unknown selection 'magic'"),
    ({"lrp.rule": "zplus"}, "Unknown LRP rule 'zplus'"),
    ({"perturbation.strength": 1.5}, "Strength 1.5 is out of range"),
    ({"calibration.targets": "sideways"}, "calibration.targets must list targets"),
    ({"seed": -1}, "The seed must be a whole number"),
    ({"validation_fraction": 1.0}, "validation_fraction must be a share in (0, 1)"),
    ({"lrp": None}, "'lrp' cannot be skipped"),
])
def test_bad_settings_are_one_sentence_at_construction(changes, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        OURS_CONFIG.override(changes)


def test_paper_recipe_with_h_auto_is_refused_before_any_work(capsys):
    """The crash the code-shape issue reported: --recipe paper --h auto (frequency selection)."""
    from core.cli import main

    assert main(["unlearn", "--recipe", "paper", "--h", "auto", "--forget", "3"]) == 2
    assert "needs selection 'contrast'" in capsys.readouterr().err
    assert UnlearnConfig(selection=Selection(method="contrast", h="auto")).selection.h == "auto"
    assert UnlearnConfig(selection=Selection(h=None), calibration=Calibration()).calibration is not None


def test_cli_set_and_shortcuts_build_the_config():
    from core.cli import build_parser, config_from_args

    def config(*argv):
        return config_from_args(build_parser().parse_args(["unlearn", "--forget", "3", *argv]))

    assert config("--h", "0.2").calibration is None and config("--h", "0.2").selection.h == 0.2
    assert config("--recipe", "paper", "--h", "calibrate").calibration == Calibration()
    assert config("--target", "in").targets() == ("in",)
    assert config("--erase", "none", "--set", "relabel.min_wrong=5").erasure is None
    assert config("--set", "relabel.min_wrong=5").relabel.min_wrong == 5
    with pytest.raises(UserError, match="write NAME=VALUE"):
        config("--set", "relabel")
    with pytest.raises(UserError, match="add --h calibrate"):
        config("--recipe", "paper", "--target", "auto")


def test_settings_command_lists_every_name(capsys):
    from core.cli import main

    assert main(["settings", "--recipe", "paper"]) == 0
    out = capsys.readouterr().out
    assert "perturbation.keep_bias = true" in out and "calibration = null" in out


def test_eval_split_train_measures_on_the_training_images(capsys):
    """The authors' protocol: accuracy on the training split, said in the report."""
    from core.cli import main

    assert main(["unlearn", "--forget", "3", "--recipe", "paper", "--eval-split", "train", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["eval_split"] == "train" and report["eval_size"] == 1257      # digits' fixed training part
    assert report["forget_acc_after"] < report["forget_acc_before"]


def test_worst_class_drop_is_the_largest_retain_class_loss():
    import torch

    from core.metrics.evaluate import summarize, worst_class_drop

    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    perfect = torch.nn.functional.one_hot(labels, 3).float()
    worse = perfect.clone()
    worse[2] = torch.tensor([1.0, 0.0, 0.0])        # one image of class 1 now wrong: class 1 loses 50 points
    worse[0] = torch.tensor([0.0, 0.0, 1.0])        # the forget class (0) losing images does not count
    assert worst_class_drop(summarize(perfect, labels, 0), summarize(worse, labels, 0)) == 0.5
    assert OURS_CONFIG.calibration.class_budget == 0.02
    with pytest.raises(UserError, match="calibration.class_budget must be a share"):
        OURS_CONFIG.override({"calibration.class_budget": "3"})
