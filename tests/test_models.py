"""Architectures, checkpoints and shipped models: accuracy as promised, bad files refused clearly."""
from __future__ import annotations

import json

import pytest
import torch

from core.data.catalog import load_split
from core.errors import UserError
from core.metrics.evaluate import evaluate
from core.models.cards import ModelCard, shipped_checkpoints
from core.models.checkpoints import load_checkpoint, save_checkpoint, shipped_checkpoint, state_checksum
from core.models.registry import ARCHITECTURES, build_model, layer_table


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_builds_and_runs(arch):
    shape = (1, 28, 28) if arch in ("mlp", "cnn", "allcnn") else (3, 32, 32)
    model = build_model(arch, 10, shape)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)
    rows = layer_table(model, shape)
    assert rows[-1]["output_shape"] == (10,)
    assert sum(r["parameters"] for r in rows) == sum(p.numel() for p in model.parameters())


def test_torchvision_model_by_name_and_unknown_name():
    assert build_model("squeezenet1_0", 5, (3, 64, 64))(torch.zeros(1, 3, 64, 64)).shape == (1, 5)
    with pytest.raises(UserError, match="Unknown architecture"):
        build_model("not_a_net", 10, (1, 8, 8))


def test_shipped_checkpoints_meet_accuracy(shared_data):
    floors = {"digits": 0.97, "mnist": 0.99, "cifar10": 0.80}
    shipped = shipped_checkpoints()
    assert {(p.parent.name, p.stem) for p, _ in shipped} >= {("digits", "cnn"), ("mnist", "cnn"), ("mnist", "allcnn")}
    for path, card in shipped:
        assert card.command.startswith(("python -m core train", "python -m benchmarks.third_party_model"))
        assert len(card.per_class_accuracy) == card.num_classes
        if card.dataset in ("digits", "mnist"):   # CIFAR-10 is checked from its card (decoding takes a while)
            model, _ = load_checkpoint(path)
            measured = evaluate(model, load_split(card.dataset, "test", str(shared_data))).overall
            assert abs(measured - card.test_accuracy) < 1e-3
        third_party = card.command.startswith("python -m benchmarks.third_party_model")   # 2 CPU epochs
        assert card.test_accuracy >= (0.97 if third_party else floors[card.dataset]), (path, card.test_accuracy)


def test_roundtrip_and_never_overwrite(tmp_path, digits_model):
    model, card = digits_model
    path = save_checkpoint(model, card, tmp_path / "m.safetensors")
    loaded, card2 = load_checkpoint(path)
    assert state_checksum(loaded) == state_checksum(model) and card2 == card
    with pytest.raises(UserError, match="already exists"):
        save_checkpoint(model, card, path)
    (tmp_path / "m.json").unlink()                 # card from the safetensors metadata alone
    assert load_checkpoint(path)[1].arch == "cnn"


def test_state_dict_file_needs_weights_only(tmp_path, digits_model):
    model, card = digits_model
    good = tmp_path / "sd.pt"
    torch.save(model.state_dict(), good)
    loaded, _ = load_checkpoint(good, card)
    assert state_checksum(loaded) == state_checksum(model)
    evil = tmp_path / "evil.pt"
    torch.save({"weights": model.state_dict(), "fn": print}, evil)   # a pickle that is not plain tensors
    with pytest.raises(UserError):
        load_checkpoint(evil, card)


def test_bad_checkpoints_give_one_sentence(tmp_path, digits_model):
    model, card = digits_model
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(UserError, match="not a readable safetensors"):
        load_checkpoint(corrupt, card)
    wrong_arch = ModelCard(**{**card.__dict__, "arch": "mlp"})
    bare = tmp_path / "bare.pt"                     # no card of its own: the named architecture is used
    torch.save(model.state_dict(), bare)
    with pytest.raises(UserError, match="does not fit this architecture"):
        load_checkpoint(bare, wrong_arch)
    path = save_checkpoint(model, card, tmp_path / "cnn.safetensors")
    assert load_checkpoint(path, wrong_arch)[1].arch == "cnn"     # the file's own card comes first
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["fc2.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(UserError, match="non-finite"):
        load_checkpoint(tmp_path / "nan.pt", card)
    state = dict(model.state_dict())
    state["fc2.weight"] = torch.zeros(3, 128)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(UserError, match="shape"):
        load_checkpoint(tmp_path / "shape.pt", card)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors", card)


def test_card_records_reproduction_facts():
    card = json.loads(shipped_checkpoint("digits", "cnn").with_suffix(".json").read_text())
    for key in ("arch", "dataset", "classes", "mean", "std", "seed", "command", "per_class_accuracy", "test_accuracy"):
        assert key in card


# --------------------------------------------------------------------------- property-based: any card, a valid card or one sentence
from hypothesis import given, settings, strategies as st

CARD_QUICK = settings(max_examples=200, deadline=None, database=None)
ODD_NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-2 ** 90, max_value=2 ** 90),
                        st.sampled_from([0, 1, -1, 2 ** 63, 2 ** 64, 1e308, -0.0, 5e-324]))
JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), ODD_NUMBERS, st.text(max_size=6)),
                       lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner,
                                                                                            max_size=3)),
                       max_leaves=10)
SHAPES = st.one_of(st.lists(st.one_of(st.integers(min_value=-2, max_value=2 ** 33), ODD_NUMBERS), max_size=4),
                   st.lists(st.integers(min_value=1, max_value=64), min_size=3, max_size=3), JSONISH)
FIELDS = {
    "arch": st.one_of(st.sampled_from(["cnn", "mlp", ""]), st.text(max_size=6), JSONISH),
    "dataset": st.one_of(st.sampled_from(["digits", "mnist"]), JSONISH),
    "classes": st.one_of(st.lists(st.text(max_size=3), max_size=12), JSONISH),
    "input_shape": SHAPES,
    "mean": st.one_of(st.lists(ODD_NUMBERS, min_size=1, max_size=3), st.lists(st.floats(0, 1), min_size=1, max_size=3),
                      JSONISH),
    "std": st.one_of(st.lists(ODD_NUMBERS, min_size=1, max_size=3), st.lists(st.floats(0.01, 1), min_size=1, max_size=3),
                     JSONISH),
    "seed": st.one_of(st.integers(min_value=0, max_value=10), ODD_NUMBERS, JSONISH),
    "per_class_accuracy": st.one_of(st.lists(st.one_of(st.none(), st.floats(0, 1), ODD_NUMBERS), max_size=12), JSONISH),
    "test_accuracy": st.one_of(st.none(), st.floats(0, 1), ODD_NUMBERS, JSONISH),
    "command": st.one_of(st.text(max_size=8), JSONISH),
    "notes": st.one_of(st.dictionaries(st.text(max_size=4), JSONISH, max_size=3), JSONISH),
}
GOOD = {"arch": "cnn", "dataset": "digits", "classes": list("0123456789"), "input_shape": [1, 8, 8], "mean": [0.3],
        "std": [0.4]}


def _valid_or_one_sentence(make):
    """``make()`` gives a card that survives its own strict JSON, or raises one UserError sentence."""
    import math

    from core.models.cards import MAX_VALUES, parse_card

    try:
        card = make()
    except UserError as exc:
        assert str(exc).strip() and "\n" not in str(exc), str(exc)
        return None
    c, h, w = card.input_shape
    assert c * h * w <= MAX_VALUES and len(card.mean) == len(card.std) == c
    assert all(math.isfinite(v) for v in card.mean + card.std) and min(card.std) > 0
    assert parse_card(card.to_json()) == card                       # strict JSON, same card back
    return card


@CARD_QUICK
@given(fields=st.fixed_dictionaries({}, optional=FIELDS), base=st.booleans())
def test_card_fields_give_a_valid_card_or_one_sentence(fields, base):
    import json

    from core.models.cards import parse_card

    data = {**(GOOD if base else {}), **fields}
    _valid_or_one_sentence(lambda: ModelCard.from_dict(data))
    _valid_or_one_sentence(lambda: parse_card(json.dumps(data).encode()))       # NaN / Infinity literals refused


@CARD_QUICK
@given(blob=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode),
                      JSONISH.map(lambda v: __import__("json").dumps(v).encode())))
def test_card_bytes_give_a_valid_card_or_one_sentence(blob):
    from core.models.cards import parse_card

    _valid_or_one_sentence(lambda: parse_card(blob, "The model card 'x.json'"))
