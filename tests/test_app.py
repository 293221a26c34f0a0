"""The dashboard's pages through Streamlit's AppTest, and the plain helpers they call (core/ui/).

Most tests use the shipped digits model (offline, seconds); one uses MNIST where ../shared/data has it.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT, require_shared_data

from core import ui
from core.errors import UserError
from core.models.checkpoints import file_checksum, load_checkpoint, shipped_checkpoint, state_checksum


APP = str(ROOT / "app.py")
TIMEOUT = 180


@pytest.fixture(autouse=True)
def _no_bench_override(monkeypatch):
    monkeypatch.delenv("UNLEARN_BENCH_DIRS", raising=False)


@pytest.fixture(autouse=True, scope="module")
def _no_background_work_left():
    """The app's background threads (warm-up, prefetch, imports) end with this module: left running
    into later modules, they allocate and free memory while those measure it (test_bench's peak
    memory of a block saw 8 MiB of its 64 once)."""
    yield
    from pages import common

    common.stop_prefetch()
    for thread in threading.enumerate():
        if thread.name.startswith(common.BACKGROUND):
            thread.join(timeout=120)


def new_app(page: str | None = None, **state):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    state.setdefault("model_key", ui.DEFAULT_MODEL)      # the digits model, also where MNIST's data is present
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at) -> list[dict]:
    """The Plotly figures on the page, as dicts."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def chart(at, title_part: str) -> dict:
    found = [c for c in charts(at) if title_part in c["layout"].get("title", {}).get("text", "")]
    assert found, f"no chart titled '*{title_part}*' in {[c['layout'].get('title') for c in charts(at)]}"
    return found[0]


def array(value):
    """A Plotly JSON array as numpy: plain lists, or typed arrays ({"dtype", "bdata", "shape"})."""
    import base64

    import numpy as np

    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return out.reshape([int(n) for n in str(value.get("shape", len(out))).split(",")])
    return np.asarray(value, dtype=float)


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def percent(text: str) -> float:
    return float(text.replace("%", "").strip())


def sidebar_text(at) -> str:
    return " ".join(m.value for m in at.sidebar.markdown)


def model_name(at) -> str:
    """The current model's name as the Model page's card heading shows it."""
    return [h.value for h in at.subheader if h.value.startswith("Model card: ")][0]


# ----------------------------------------------------------------------------- app shell and Model page
def test_model_page_zoo_card_and_sidebar():
    at = new_app()
    assert at.title[0].value == "Model"
    side = sidebar_text(at)
    assert "digits / cnn" in side and "Test accuracy" in side and "Device" in side
    at.run()                                                            # the sidebar survives reruns
    assert sidebar_text(at) == side
    assert [p.label for p in at.sidebar.get("page_link")] == ["Change model"]
    use = [b for b in at.button if b.label == "Use this model"]
    assert len(use) == len(ui.shipped_checkpoints())
    assert any(b.disabled for b in use)                         # the model in use
    assert at.selectbox(key="train_dataset").value == "digits"
    assert at.number_input(key="train_epochs_digits").value == ui.default_epochs("digits")
    assert len(at.get("file_uploader")) == 1
    card = chart(at, "Per-class accuracy")
    assert card["data"][0]["type"] == "bar" and len(card["data"][0]["y"]) == 10
    assert max(card["data"][0]["y"]) <= 100 and min(card["data"][0]["y"]) > 80
    layers = at.dataframe[0].value
    assert list(layers.columns) == ["layer", "type", "output shape", "parameters"]
    assert layers["parameters"].sum() == sum(p.numel() for p in load_checkpoint(shipped_checkpoint("digits", "cnn"))[0].parameters())


def test_the_streamlit_workaround_still_has_what_it_relies_on():
    """pages/common.py switches Streamlit's legacy pages-directory mode off through the private
    ``PagesManager.uses_pages_directory`` (requirements.txt pins the tested minor version). Fail
    loudly when an upgrade removes the attribute or stops honouring it: a page URL opened directly
    must still run through app.py's navigation, with its sidebar."""
    from streamlit.runtime.pages_manager import PagesManager

    assert "uses_pages_directory" in vars(PagesManager)       # a class attribute (None until the first run)
    at = new_app("4_unlearn")
    assert PagesManager.uses_pages_directory is False
    assert "Current model" in sidebar_text(at) and at.title[0].value == "Unlearn a class"


def test_train_from_page_keeps_model_in_session_and_writes_nothing():
    shipped = ROOT / "assets" / "digits"
    before = {p: file_checksum(p) for p in shipped.rglob("*") if p.is_file()}
    at = new_app()
    at.selectbox(key="train_arch").set_value("mlp")
    at.number_input(key="train_epochs_digits").set_value(2)
    at.button(key="train_button").click().run()
    assert not at.exception and not at.error
    assert at.session_state["model_key"].startswith("trained:")
    assert "digits / mlp (trained" in model_name(at) and "digits / mlp (trained" in sidebar_text(at)
    assert any("Trained digits / mlp" in s.value for s in at.success)
    after = {p: file_checksum(p) for p in shipped.rglob("*") if p.is_file()}
    assert after == before


def test_bad_upload_shows_one_error_and_keeps_the_model():
    at = new_app()
    key = at.session_state["model_key"]
    at.file_uploader(key="upload_file").set_value(("broken.safetensors", b"\x00\x01not a checkpoint", "application/octet-stream"))
    at.run()
    at.button(key="upload_button").click().run()
    assert len(at.error) == 1
    assert "broken.safetensors" in at.error[0].value and "safetensors" in at.error[0].value
    assert at.session_state["model_key"] == key
    assert model_name(at) == "Model card: digits / cnn"


def test_upload_of_bare_weights_for_the_wrong_architecture_is_refused_then_a_good_one_is_used(tmp_path):
    model, _ = load_checkpoint(shipped_checkpoint("digits", "cnn"))
    torch.save(model.state_dict(), tmp_path / "digits-cnn.pt")          # weights without a card
    data = (tmp_path / "digits-cnn.pt").read_bytes()
    at = new_app()
    at.selectbox(key="upload_arch").set_value("mlp")
    at.file_uploader(key="upload_file").set_value([("digits-cnn.pt", data, "application/octet-stream")])
    at.run()
    at.button(key="upload_button").click().run()
    assert len(at.error) == 1 and "does not fit this architecture" in at.error[0].value
    assert "is it a mlp trained on digits?" in at.error[0].value
    assert at.session_state["model_key"] == ui.DEFAULT_MODEL
    at.selectbox(key="upload_arch").set_value("cnn").run()
    at.button(key="upload_button").click().run()
    assert not at.error
    assert at.session_state["model_key"].startswith("uploaded:")
    assert "uploaded digits-cnn.pt" in model_name(at)
    assert "uploaded digits-cnn.pt" in sidebar_text(at)


def test_upload_reads_the_card_first_and_takes_its_dataset():
    """A shipped MNIST checkpoint (card in its metadata) uploaded while "digits" is selected: the
    card names the dataset, the architecture picker is not needed."""
    shared = require_shared_data()
    data = shipped_checkpoint("mnist", "cnn").read_bytes()
    at = new_app()
    at.selectbox(key="upload_dataset").set_value("digits")
    at.selectbox(key="upload_arch").set_value("mlp")
    at.file_uploader(key="upload_file").set_value([("mine.safetensors", data, "application/octet-stream")])
    at.run()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARN_DATA_DIR", str(shared))
        at.button(key="upload_button").click().run()
    assert not at.error, [e.value for e in at.error]
    assert at.session_state["model_key"].startswith("uploaded:")
    assert "mnist / cnn (uploaded mine.safetensors)" in model_name(at)
    assert any("trained on mnist" in s.value for s in at.success)


def test_upload_of_an_onnx_model_with_its_card_then_unlearn(lenet_files, monkeypatch, shared_data):
    """A user's LeNet exported to ONNX, uploaded with a model card beside it: it becomes the current
    model, the layer table shows its own module names, and the Unlearn page forgets the class."""
    from core.data.catalog import dataset_info

    monkeypatch.setenv("UNLEARN_DATA_DIR", str(shared_data))
    info = dataset_info("mnist", str(shared_data))
    card = {"arch": "my-lenet", "dataset": "mnist", "classes": list(info.classes), "input_shape": [1, 28, 28],
            "mean": list(info.mean), "std": list(info.std)}
    source = lenet_files["legacy"]
    checksum = file_checksum(source)
    at = new_app()
    at.file_uploader(key="upload_file").set_value([("lenet.onnx", source.read_bytes(), "application/octet-stream"),
                                                   ("lenet.json", json.dumps(card).encode(), "application/json")])
    at.run()
    at.button(key="upload_button").click().run()
    assert not at.error, [e.value for e in at.error]
    assert "mnist / ONNX model (uploaded lenet.onnx)" in model_name(at)
    layers = next(d.value for d in at.dataframe if "layer" in d.value.columns)["layer"].tolist()
    assert "head.fc" in layers and "out" in layers
    at.session_state["cfg_forget"] = 4
    at.switch_page("pages/4_unlearn.py").run()
    assert not at.exception, [e.value for e in at.exception]
    report = at.session_state["unlearn_report"]
    assert report["forget_acc_after"] < report["forget_acc_before"] - 0.3     # the path alone, on the slider
    assert any("Moving the slider re-runs" in c.value for c in at.caption)
    at.button(key="unl_erase").click().run()              # the rest of the library default: erase, relabel
    assert not at.exception, [e.value for e in at.exception]
    erasure = at.session_state["unlearn_report"]["erasure"]
    final = erasure.get("repaired", erasure.get("relabelled", erasure["erased"]))   # each runs only where it helps
    assert final["forget_acc"] < 0.05
    assert final["retain_acc"] >= erasure["original"]["retain_acc"] - 0.01
    assert file_checksum(source) == checksum


def test_read_uploaded_checkpoint_checks_size_kind_and_fit(tmp_path):
    data = shipped_checkpoint("digits", "cnn").read_bytes()
    with pytest.raises(UserError, match="upload limit is 1 MB"):
        ui.read_uploaded_checkpoint(b"x" * (2 * 2 ** 20), "big.safetensors", "cnn", "digits", max_mb=1)
    with pytest.raises(UserError, match="is empty"):
        ui.read_uploaded_checkpoint(b"", "empty.pt", "cnn", "digits")
    with pytest.raises(UserError, match="not a model file"):
        ui.read_uploaded_checkpoint(data, "weights.txt", "cnn", "digits")
    with pytest.raises(UserError, match="'garbage.pt' is not a readable torch file"):
        ui.read_uploaded_checkpoint(b"garbage" * 10, "garbage.pt", "cnn", "digits")
    state = tmp_path / "state.pt"
    model, _ = load_checkpoint(shipped_checkpoint("digits", "cnn"))
    torch.save(model.state_dict(), state)
    loaded = ui.read_uploaded_checkpoint(state.read_bytes(), "state.pt", "cnn", "digits")
    assert loaded.checksum == state_checksum(model) and loaded.card.arch == "cnn"


# ----------------------------------------------------------------------------- Relevance page
def test_relevance_page_heatmaps_follow_class_and_polarity():
    at = new_app("2_relevance")
    assert at.selectbox(key="rel_class").value == 3
    assert at.selectbox(key="rel_rule").value == "epsilon"
    assert at.multiselect(key="rel_layers").value == ["relu1", "relu2", "relu3"]
    grid = chart(at, "Input relevance")
    heat = [d for d in grid["data"] if d["type"] == "heatmap" and d.get("colorscale") != "gray"
            and d.get("zmid") == 0]
    assert len(heat) == 3                                               # three images by default
    assert all(d["zmin"] == -1 and d["zmax"] == 1 for d in heat)
    assert len([c for c in charts(at) if "most relevant" in c["layout"]["title"]["text"]]) == 3
    first = array(heat[0]["z"])
    assert first.shape == (8, 8) and first.min() < 0 < first.max() and abs(first).max() <= 1
    at.selectbox(key="rel_class").set_value(5).run()
    assert not at.exception
    assert "class 5" in chart(at, "Input relevance")["layout"]["title"]["text"]
    assert not (array(chart(at, "Input relevance")["data"][1]["z"]) == first).all()
    at.radio(key="rel_polarity").set_value("positive").run()
    heat = [d for d in chart(at, "Input relevance")["data"] if d.get("zmid") == 0]
    assert all(array(d["z"]).min() >= 0 for d in heat) and any(array(d["z"]).max() > 0 for d in heat)


# ----------------------------------------------------------------------------- Neuron paths page
def test_paths_page_draws_the_perturbed_path_into_the_outputs_and_shows_a_unit():
    at = new_app("3_paths")
    graph = chart(at, "The path perturbed to forget class 3")
    units = [d for d in graph["data"] if d.get("name") == "units"][0]
    outputs = [d for d in graph["data"] if d.get("name") == "outputs"][0]
    assert len(outputs["x"]) == 10 and outputs["text"][3] == "3"                # ends in the output classes
    unlearn = new_app("4_unlearn")                                               # the Unlearn page's own path
    path = unlearn.session_state["unlearn_report"]["selected_units"]
    assert [int(u) for u in units["text"]] == path["relu3"][:8]
    assert units["marker"]["opacity"] == pytest.approx(0.2)                      # faded at strength 1
    assert any(d.get("mode") == "lines" for d in graph["data"])                  # weights into the outputs
    at.slider(key="path_shown").set_value(4).run()
    at.session_state["path_unit"] = ["relu3", path["relu3"][0]]
    at.run()
    pool, _ = ui.heldout_data("digits")
    detail = chart(at, f"relu3 unit {path['relu3'][0]}: its 8 top-activating pool images (of {len(pool)})")
    assert len([d for d in detail["data"] if d["type"] == "heatmap"]) == 9
    at.toggle(key="path_overlap_on").set_value(True).run()
    z = array(chart(at, "Overlap")["data"][0]["z"])
    assert z.shape == (1, 10) and z[0, 3] == 1.0 and ((0 <= z) & (z <= 1)).all()


def test_one_selection_for_both_pages_and_the_url_round_trip():
    """K changed on Neuron paths is Unlearn's K; the URL carries the settings and restores them."""
    at = new_app("3_paths")
    at.slider(key="w_cfg_k").set_value(20.0).run()
    at.switch_page("pages/4_unlearn.py")
    at.run()
    assert at.slider(key="w_cfg_k").value == 20.0
    assert at.session_state["unlearn_report"]["config"]["selection"]["k"] == pytest.approx(0.2)
    assert dict(at.query_params)["k"] == "20" and dict(at.query_params)["model"] == "digits/cnn"

    from streamlit.testing.v1 import AppTest

    link = AppTest.from_file(APP, default_timeout=TIMEOUT)
    link.query_params.update({"model": "digits/cnn", "forget": "7", "strength": "0.9", "method": "gaussian",
                              "target": "out", "k": "15", "h": "25"})
    link.run()
    link.switch_page("pages/4_unlearn.py")
    link.run()
    assert not link.exception
    report = link.session_state["unlearn_report"]
    assert (report["forget_class"], report["strength"], report["method"]) == (7, 0.9, "gaussian")
    assert report["config"]["selection"]["k"] == pytest.approx(0.15)
    assert report["config"]["selection"]["h"] == pytest.approx(0.25)
    assert report["config"]["perturbation"]["target"] == "out"
    assert dict(link.query_params)["strength"] == "0.90"


def test_read_params_ignores_what_it_cannot_use():
    keys = ["shipped:digits/cnn", "shipped:mnist/cnn"]
    got = ui.read_params({"model": "mnist/cnn", "forget": "7", "strength": "0.93", "k": "abc", "h": "calibrate",
                          "method": "sledgehammer"}, keys)
    assert got == {"model": "shipped:mnist/cnn", "forget": 7, "strength": 0.95, "h_mode": "calibrate"}
    assert ui.read_params({"model": "cifar10/allcnn", "strength": "nan", "h": "95"}, keys) == {}
    assert ui.read_params(ui.write_params({"model": "shipped:mnist/cnn", "forget": 2, "h_mode": "share", "h": 12.5,
                                           "k": 3.0}), keys) == {"model": "shipped:mnist/cnn", "forget": 2,
                                                                 "h_mode": "share", "h": 12.5, "k": 3.0}


def test_the_digits_model_is_the_default_only_without_mnist_data():
    entries = ui.model_zoo(None)
    assert ui.default_model_key([e for e in entries if e.card.dataset == "digits"]) == ui.DEFAULT_MODEL
    mnist = [e for e in entries if e.key == "shipped:mnist/cnn"]
    assert mnist
    from dataclasses import replace as dc_replace

    assert ui.default_model_key([dc_replace(e, available=True) for e in entries]) == "shipped:mnist/cnn"
    assert ui.default_model_key([dc_replace(e, available=e.card.dataset == "digits") for e in entries]) == ui.DEFAULT_MODEL


# ----------------------------------------------------------------------------- Unlearn page
def test_unlearn_page_slider_changes_the_results():
    at = new_app("4_unlearn")
    assert at.selectbox(key="w_cfg_forget").value == 3
    assert at.selectbox(key="w_cfg_target").value == "auto"            # the library's default
    assert at.selectbox(key="w_cfg_rule").value == "epsilon"
    assert at.multiselect(key="w_cfg_layers").value == ["relu3"]
    assert at.radio(key="w_cfg_method").value == "zero"
    assert at.selectbox(key="w_cfg_h_mode").value == "calibrate"
    slider = at.slider(key="w_cfg_strength")
    assert slider.value == 1.0
    full = metrics(at)
    forget_label = "Forget (class 3)"
    assert percent(full[forget_label]) < 20
    bars_full = array(chart(at, "Per-class accuracy")["data"][1]["y"])

    at.slider(key="w_cfg_strength").set_value(0.0).run()
    none = metrics(at)
    report = at.session_state["unlearn_report"]
    assert report["per_class_after"] == report["per_class_before"]       # strength 0 = the original model
    assert percent(none[forget_label]) > 85
    bars_none = array(chart(at, "Per-class accuracy")["data"][1]["y"])
    assert bars_none[3] > bars_full[3] + 50
    sweep = chart(at, "across strengths")
    assert [shape["x0"] for shape in sweep["layout"]["shapes"]] == [0.0]   # the current setting is marked

    at.radio(key="w_cfg_method").set_value("gaussian").run()
    at.slider(key="w_cfg_strength").set_value(1.0).run()
    assert at.session_state["unlearn_report"]["method"] == "gaussian"
    assert [d.label for d in at.get("download_button")] == ["Weights", "Card", "Report"]


def test_unlearn_page_membership_inference_on_demand():
    at = new_app("4_unlearn")
    assert not [m for m in at.metric if "members" in m.label]
    at.button(key="unl_mia").click().run()
    assert not at.exception
    scores = at.session_state["unlearn_report"]["membership_inference"]
    assert 0 <= scores["before"] <= 1 and 0 <= scores["after"] <= 1
    assert [m for m in at.metric if "members" in m.label]


def test_unlearn_page_erases_the_class_direction_on_demand():
    from core.unlearning.erase import candidate_layers
    from core.models.graph import graph_of
    from core.models.checkpoints import load_checkpoint

    at = new_app("4_unlearn")
    at.button(key="unl_erase").click().run()
    assert not at.exception
    erasure = at.session_state["unlearn_report"]["erasure"]
    model, _ = load_checkpoint(shipped_checkpoint("digits", "cnn"))
    assert set(erasure["layers"]) <= set(candidate_layers(graph_of(model, (1, 8, 8))))
    assert erasure["original"]["forget_acc"] > 0.5 > erasure["perturbed"]["forget_acc"]
    assert erasure["erased"]["forget_acc"] <= erasure["perturbed"]["forget_acc"] + 0.05
    ran, repaired = erasure["relabelling"]["strength"] > 0, erasure["repair"]["strength"] > 0
    assert {"original", "perturbed", "erased"} | ({"relabelled"} if ran else set()) | (
        {"repaired"} if repaired else set()) == {row["model"] for row in at.dataframe[0].value.to_dict("records")}
    # the relabelled and repaired rows only where that step changed the model
    assert erasure["relabelling"]["reason"]     # digits: strength 0 with the reason, or the strength used
    if ran:
        assert erasure["relabelled"]["forget_acc"] <= erasure["erased"]["forget_acc"] + 0.02
    labels = [d.label for d in at.get("download_button")]
    assert labels == ["Weights", "Card", "Report"] * (2 + ran + repaired)     # the erased model too


def _digit_png(dark_on_light: bool = False, size: int = 96) -> bytes:
    """A hand-drawn-looking 1: a thick vertical stroke, as a PNG."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("L", (size, size), 255 if dark_on_light else 0)
    ImageDraw.Draw(image).line([(size // 2, size // 6), (size // 2, 5 * size // 6)], fill=0 if dark_on_light else 255,
                               width=size // 8)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_own_image_is_prepared_as_the_card_says_and_bad_files_get_one_sentence():
    from core.ui.own_image import from_drawing, from_upload, top_predictions

    model, card = load_checkpoint(shipped_checkpoint("digits", "cnn"))
    light, note = from_upload(_digit_png(), "one.png", card)
    dark, dark_note = from_upload(_digit_png(dark_on_light=True), "one.png", card)
    assert light.shape == (1, 8, 8) and "inverted" in dark_note and "inverted" not in note
    assert torch.allclose(light, dark, atol=0.05)                       # ink on paper reads as MNIST's white on black
    assert top_predictions(model, light)[0][0] == 1
    probs = [p for _, p in top_predictions(model, light)]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-9
    import numpy as np

    canvas = np.zeros((150, 150, 4), dtype=np.uint8)
    canvas[20:130, 70:85] = 255                                          # a white stroke on the black canvas
    drawn = from_drawing(canvas, card)
    assert drawn.shape == (1, 8, 8) and top_predictions(model, drawn)[0][0] == 1
    assert from_drawing(np.zeros((150, 150, 4), dtype=np.uint8), card) is None
    for data, name, words in [(b"\x89PNG not really", "broken.png", "not a readable PNG or JPEG"),
                              (b"", "empty.png", "is empty"), (b"GIF89a" + b"0" * 100, "anim.gif", "not a readable")]:
        with pytest.raises(UserError, match=words):
            from_upload(data, name, card)
    with pytest.raises(UserError, match="images up to 1 MB"):
        from_upload(b"0" * (2 * 2 ** 20), "huge.png", card, max_mb=1)


def test_unlearn_page_own_image_follows_the_slider_and_marks_collateral():
    at = new_app("4_unlearn")
    at.file_uploader(key="own_upload").upload("three.png", _digit_png(), "image/png").run()
    assert not at.exception, [e.value for e in at.exception]
    assert chart(at, "LRP of each model's answer")
    seen = at.session_state["own_image_result"]
    assert len(seen["before"]) == 3 and seen["before"][0][0] == 1
    at.slider(key="w_cfg_strength").set_value(0.0).run()
    assert at.session_state["own_image_result"]["after"] == at.session_state["own_image_result"]["before"]
    at.file_uploader(key="own_upload").upload("bad.png", b"not an image", "image/png").run()
    assert any("not a readable PNG or JPEG image" in e.value for e in at.error)
    # Gaussian noise on the path wrecks other classes: every retain class that lost > 2 points is marked
    at.radio(key="w_cfg_method").set_value("gaussian").run()
    at.slider(key="w_cfg_strength").set_value(1.0).run()
    report = at.session_state["unlearn_report"]
    lost = {c for c, (b, a) in enumerate(zip(report["per_class_before"], report["per_class_after"]))
            if c != 3 and b - a > 0.02}
    assert {int(c) for c in report["collateral"]} == lost and lost
    bars = chart(at, "Per-class accuracy")
    assert {a["x"] for a in bars["layout"]["annotations"] if a["text"].startswith("<b>-")} == {str(c) for c in lost}
    assert any("Collateral damage" in m.value for m in at.markdown)


def test_fast_erase_and_relabel_measures_what_the_full_evaluation_measures(digits_model):
    """The dashboard's erase summary (cached activations, probes shared) equals the plain one."""
    from core.ui.erasure import erase_and_relabel
    from core.ui.speed import EvalCaches, MemoAnalyzer, explorer_from
    from core.unlearning.config import default_config
    from core.unlearning.explorer import PerturbationExplorer
    from core.unlearning.pipeline import unlearn

    model, _ = digits_model
    pool, eval_set = ui.heldout_data("digits")
    config = default_config().override({"erasure": None, "relabel": None})
    analyzer = MemoAnalyzer(model, "epsilon")
    result = unlearn(model, pool, 7, config, analyzer=analyzer)
    assert unlearn(model, pool, 7, config, analyzer=analyzer).path.units == result.path.units   # from memory
    assert unlearn(model, pool, 7, config).path.units == result.path.units
    caches = EvalCaches(model, eval_set)
    fast = explorer_from(caches, result.path, result.config.perturbation)
    plain = PerturbationExplorer(model, result.path, eval_set, result.config.perturbation)
    for s in (0.4, 1.0):
        assert fast.evaluate(strength=s)[0].per_class == plain.evaluate(strength=s)[0].per_class
    variant = plain.evaluate(strength=1.0)[1]
    steps = []
    summary, models = erase_and_relabel(model, variant, pool, caches, 7, step=steps.append)
    slow = ui.erasure_summary(model, variant, pool, eval_set, 7)
    assert len(steps) == 5 and set(models) <= {"original", "perturbed", "erased", "relabelled", "repaired"}
    for name in models:
        for field in ("forget_acc", "retain_acc", "probe_recall", "forget_entropy"):
            assert summary[name][field] == pytest.approx(slow[name][field], abs=1e-6), (name, field)
    assert summary["layers"] == slow["layers"]


def test_export_writes_a_loadable_checkpoint_and_leaves_the_model(digits_model, digits_split):
    from core.unlearning.config import default_config
    from core.unlearning.pipeline import unlearn

    model, card = digits_model
    checksum = state_checksum(model)
    pool, _ = digits_split
    result = unlearn(model, pool, 4, default_config())
    weights, card_json, report_json = ui.export_unlearned(result.model, card, 4, result.config.to_dict(),
                                                         {"forget_acc_after": 0.0, "per_class_after": [0.5] * 10},
                                                         "assets/digits/cnn.safetensors")
    assert state_checksum(model) == checksum
    assert json.loads(card_json)["notes"]["forget_class"] == 4
    assert json.loads(report_json)["forget_acc_after"] == 0.0
    from safetensors.torch import load as load_bytes

    tensors = load_bytes(weights)
    assert set(tensors) == set(model.state_dict())
    assert torch.equal(tensors["fc2.weight"], result.model.state_dict()["fc2.weight"])


def test_step_neighbours_are_one_slider_step_away_the_last_direction_first():
    values = {"k": 10.0, "h": 1.0, "h_mode": "share", "rule": "epsilon"}
    ranges = {"k": (1.0, 50.0), "h": (1.0, 90.0)}
    assert [(v["k"], v["h"]) for v in ui.step_neighbours(values, None, ranges)] == [(10.5, 1.0), (9.5, 1.0),
                                                                                   (10.0, 1.5)]   # 0.5 is out
    down = ui.step_neighbours(values, {**values, "k": 10.5}, ranges)
    assert [v["k"] for v in down[:2]] == [9.5, 10.5]          # K last moved down: the next step down first
    moved = ui.step_neighbours(values, {**values, "h": 1.5}, ranges)
    assert [(v["k"], v["h"]) for v in moved] == [(10.0, 1.5), (10.5, 1.0), (9.5, 1.0)]   # H moved: H first
    assert ui.step_neighbours({**values, "k": 50.0}, None, {"k": ranges["k"]}) == [{**values, "k": 49.5}]
    assert all(v["rule"] == "epsilon" and v["h_mode"] == "share" for v in down)


def _counted_unlearn(monkeypatch, record) -> list:
    """The unlearnings run from now on (the page's and its prefetch's), each as ``record(cls, config)``;
    an earlier test's prefetch is stopped and waited for first."""
    import core.unlearning.pipeline as pipeline
    from pages import common

    common.stop_prefetch()
    _wait_for_prefetch()
    calls, real = [], pipeline.unlearn

    def counting(model, pool, cls, config=None, **kwargs):
        calls.append(record(cls, config))
        return real(model, pool, cls, config, **kwargs)

    monkeypatch.setattr(pipeline, "unlearn", counting)
    return calls


def _wait_for_prefetch() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("unlearning-lab-prefetch"):
            thread.join(timeout=300)


def test_the_unlearn_page_prepares_the_next_k_step_in_the_background(monkeypatch):
    """After an answer, the settings a K step away and the other choices of weights to perturb are
    computed in the background, into the caches the page reads: the step itself then runs no
    unlearning."""
    calls = _counted_unlearn(monkeypatch, lambda cls, config: (cls, round(config.selection.k, 4),
                                                               "+".join(config.calibration.targets)))
    at = new_app("4_unlearn", cfg_forget=5, cfg_k=13.0)        # a class and K no other test asks for
    _wait_for_prefetch()
    assert calls == [(5, 0.13, "out+both"),                      # the page's own answer (target auto)
                     (5, 0.135, "out+both"),                     # K one step up
                     (5, 0.13, "in"), (5, 0.13, "out"), (5, 0.13, "both"),   # the other weights to perturb
                     (5, 0.125, "out+both")]                     # K one step down
    calls.clear()
    at.slider(key="w_cfg_k").set_value(13.5).run()
    assert not at.exception
    assert at.session_state["unlearn_report"]["config"]["selection"]["k"] == pytest.approx(0.135)
    _wait_for_prefetch()
    assert (5, 0.135, "out+both") not in calls                       # found in the cache
    assert (5, 0.14, "out+both") in calls                            # and the next step up prepared


def test_with_h_a_share_of_each_layer_the_page_prepares_the_next_h_step_first(monkeypatch):
    """In share mode (no calibration) the settings an H step away are prepared first (the next step
    up, the other weights to perturb, the step down), then those a K step away: an H step then runs
    no unlearning."""
    calls = _counted_unlearn(monkeypatch, lambda cls, config: (cls, round(config.selection.k, 4),
                                                               round(config.selection.h, 4),
                                                               config.perturbation.target))
    at = new_app("4_unlearn", cfg_forget=6, cfg_k=11.0, cfg_h_mode="share", cfg_h=7.0)
    _wait_for_prefetch()
    assert calls == [(6, 0.11, 0.07, "both"),                          # the page's own answer (auto: both)
                     (6, 0.11, 0.075, "both"),                         # H one step up, first
                     (6, 0.11, 0.07, "in"), (6, 0.11, 0.07, "out"),    # the other weights to perturb
                     (6, 0.11, 0.065, "both"),                         # H one step down
                     (6, 0.115, 0.07, "both"), (6, 0.105, 0.07, "both")]   # then K
    calls.clear()
    at.slider(key="w_cfg_h").set_value(7.5).run()
    assert not at.exception
    assert at.session_state["unlearn_report"]["config"]["selection"]["h"] == pytest.approx(0.075)
    _wait_for_prefetch()
    assert (6, 0.11, 0.075, "both") not in calls                       # found in the cache
    assert calls[0] == (6, 0.11, 0.08, "both")                          # the direction it moved, first


def test_a_page_run_of_another_session_stops_the_prefetch(monkeypatch):
    """One prefetch at a time in the app: any session's next page run (here a second visitor's Model
    page) stops it, so a session left behind by a reload cannot keep the machine busy."""
    from pages import common

    calls = _counted_unlearn(monkeypatch, lambda cls, config: (cls, round(config.selection.k, 4)))
    monkeypatch.setattr(common, "PREFETCH_DELAY", 30.0)          # the thread waits: nothing done before the stop
    new_app("4_unlearn", cfg_forget=2, cfg_k=17.0)
    threads = [t for t in threading.enumerate() if t.name.startswith("unlearning-lab-prefetch")]
    assert threads and calls == [(2, 0.17)]                       # the page's answer; the prefetch is waiting
    new_app("1_model")                                            # another session
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert calls == [(2, 0.17)]                                   # stopped before it prepared anything


def test_a_sweep_that_gives_way_is_not_kept():
    """A prefetch's sweep stopped between two strengths raises Stopped and leaves nothing in the cache:
    the page's own call then computes every strength."""
    from pages import common

    class Counting:
        def __init__(self):
            self.strengths = []

        def evaluate(self, strength, method):
            self.strengths.append(strength)
            return SimpleNamespace(forget_acc=1 - strength, retain_acc=0.9), None

    explorer, asked = Counting(), []
    key = f"test-sweep-{time.time()}"
    with pytest.raises(common.Stopped):
        common.sweep(key, explorer, "zero", _stop=lambda: asked.append(1) or len(asked) > 3)
    assert len(explorer.strengths) == 3
    curve = common.sweep(key, explorer, "zero")                   # the 8 strengths not yet evaluated
    assert curve["forget"] == pytest.approx([1 - x for x in curve["x"]]) and len(curve["x"]) == 11
    assert sorted(explorer.strengths) == sorted(curve["x"])
    assert common.sweep(key, explorer, "zero") == curve and len(explorer.strengths) == 11     # now kept


def test_two_sessions_share_the_cache_but_not_their_state():
    """Two page sessions on the same cached model, interleaved: each keeps its own class and strength,
    and the shared model is never changed. (AppTest itself is not thread-safe: it swaps a global
    runtime per run, so real concurrency is tested below on the cached functions the page calls, and
    in test_browser with two browser sessions.)"""
    from pages import common

    shared = common.shipped_model(str(shipped_checkpoint("digits", "cnn")))
    checksum = state_checksum(shared.model)
    a = new_app("4_unlearn", cfg_forget=3)
    b = new_app("4_unlearn", cfg_forget=7)
    a.slider(key="w_cfg_strength").set_value(0.9).run()
    b.slider(key="w_cfg_strength").set_value(0.5).run()
    a.run()
    ra, rb = a.session_state["unlearn_report"], b.session_state["unlearn_report"]
    assert (ra["forget_class"], ra["strength"]) == (3, 0.9) and (rb["forget_class"], rb["strength"]) == (7, 0.5)
    assert "Forget (class 3)" in metrics(a) and "Forget (class 7)" in metrics(b)
    assert common.shipped_model(str(shipped_checkpoint("digits", "cnn"))) is shared
    assert state_checksum(shared.model) == checksum


def test_two_threads_unlearn_different_classes_at_once():
    """What two sessions' script threads do, at the same time, on the shared cached model: each
    gets exactly what a lone sequential run gives for its class, and the model stays unchanged."""
    import streamlit as st

    from core.metrics.evaluate import evaluate
    from core.unlearning.perturb import perturb
    from core.unlearning.config import default_config
    from core.unlearning.pipeline import unlearn
    from pages import common

    st.cache_resource.clear()
    st.cache_data.clear()
    shared = common.shipped_model(str(shipped_checkpoint("digits", "cnn")))
    checksum = state_checksum(shared.model)
    pool, eval_set = common.heldout("digits", None)
    config = common.selection_config(default_config().override({"selection.layers": ("relu3",)}))
    strengths = (0.3, 0.6, 0.9, 1.0)
    barrier, results, errors = threading.Barrier(2), {}, []

    def session(cls: int) -> None:
        try:
            barrier.wait()
            result, explorer = common.unlearned(shared.checksum, shared, cls, repr(config), config)
            key = f"{shared.checksum}|{cls}|{config!r}"
            evals = [common.perturbed(key, explorer, s, "zero")[0] for s in strengths]
            variant = common.perturbed(key, explorer, 1.0, "zero")[1]
            position = int((eval_set.labels == cls).nonzero()[0])
            heat = common.heatmap_of(f"{key}|1.0|zero", variant, position, "digits", cls)
            results[cls] = (result.path.units, evals, heat)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(c,)) for c in (3, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert state_checksum(shared.model) == checksum
    from core.ui.analysis import image_relevance

    for cls in (3, 7):
        units, evals, heat = results[cls]
        alone = unlearn(shared.model, pool, cls, config)
        assert units == alone.path.units
        for s, got in zip(strengths, evals):
            variant = perturb(shared.model, alone.path.units, cls, replace(alone.config.perturbation, strength=s),
                              eval_set.info.input_shape)
            assert got.forget_class == cls and got.per_class == pytest.approx(evaluate(variant, eval_set, cls).per_class)
        position = int((eval_set.labels == cls).nonzero()[0])
        assert heat == pytest.approx(image_relevance(variant, eval_set.images[position], cls), abs=1e-5)
        assert evals[-1].forget_acc < evals[0].forget_acc
    assert state_checksum(shared.model) == checksum


def test_unlearn_page_on_mnist(monkeypatch):
    data = require_shared_data()
    monkeypatch.setenv("UNLEARN_DATA_DIR", str(data))
    at = new_app("4_unlearn", model_key="shipped:mnist/cnn")
    assert "mnist / cnn" in sidebar_text(at)
    report = at.session_state["unlearn_report"]
    assert report["dataset"] == "mnist" and report["eval_size"] == 9000
    assert report["forget_acc_before"] > 0.98
    assert report["forget_acc_after"] < 0.10
    assert report["retain_acc_after"] > report["retain_acc_before"] - 0.02


# ----------------------------------------------------------------------------- Compare page
def test_compare_page_without_results_says_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_BENCH_DIRS", str(tmp_path))
    at = new_app("5_compare")
    assert len(at.info) == 1 and "python -m core bench --profile quick" in at.info[0].value
    assert [c["layout"]["title"]["text"] for c in charts(at)] == ["Predictions per class, before and after unlearning"]


def _write_runs(folder: Path, rows: list[dict]) -> Path:
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "runs.csv", index=False)
    return folder / "runs.csv"


def _runs(methods: dict[str, tuple[float, float, float, float]]) -> list[dict]:
    rows = []
    for method, (forget, retain, mia, seconds) in methods.items():
        for seed in (0, 1):
            rows.append({"profile": "quick", "dataset": "digits", "arch": "cnn", "method": method, "forget_class": 3,
                         "seed": seed, "forget_acc": forget, "retain_acc": retain, "mia_entropy": mia,
                         "mia_loss_gap": 0.0, "seconds": seconds * (1 + seed / 10), "peak_mem_mb": 10.0,
                         "relearn_steps": 5, "probe_recall": 0.1, "probe_auc": 0.5,
                         "uses_training_data": method == "retrain"})
    return rows


def test_compare_page_reads_the_newest_runs(tmp_path, monkeypatch):
    user, shipped = tmp_path / "bench-results", tmp_path / "assets-bench"
    _write_runs(shipped / "quick", _runs({"retrain": (0.0, 0.98, 0.1, 20.0), "lra_npp": (0.5, 0.5, 0.5, 1.0)}))
    _write_runs(user / "quick", _runs({"retrain": (0.0, 0.97, 0.1, 30.0), "lra_npp": (0.01, 0.96, 0.2, 0.5),
                                       "original": (0.99, 0.98, 0.9, 0.0)}))
    monkeypatch.setenv("UNLEARN_BENCH_DIRS", f"{user}{__import__('os').pathsep}{shipped}")
    assert ui.bench_run_files()[0] == user / "quick" / "runs.csv"
    at = new_app("5_compare")
    assert not at.info and not at.warning
    tradeoff = chart(at, "Forget vs retain")
    names = [d["name"] for d in tradeoff["data"] if d.get("showlegend") is not False]
    assert names[-1] == "retrain" and "lra_npp" in names                   # retrain drawn last: on top
    lra = [d for d in tradeoff["data"] if d["name"] == "lra_npp" and d.get("showlegend") is not False][0]
    assert list(array(lra["x"])) == [pytest.approx(1.0)] and list(array(lra["y"])) == [pytest.approx(96.0)]
    times = chart(at, "Seconds to unlearn")
    assert times["layout"]["yaxis"]["type"] == "log" and "original" not in [d["name"] for d in times["data"]]
    assert chart(at, "Membership inference")
    table = at.dataframe[0].value
    assert list(table["method"])[:2] == ["retrain", "original"]
    assert table.set_index("method")["uses training data"].to_dict() == {"retrain": True, "original": False,
                                                                         "lra_npp": False}
    assert all(table["what it does"].str.len() > 10)                       # each method explained in one line
    at.selectbox(key="cmp_file").set_value(shipped / "quick" / "runs.csv").run()
    lra = [d for d in chart(at, "Forget vs retain")["data"] if d["name"] == "lra_npp"][-1]
    assert list(array(lra["x"])) == [pytest.approx(50.0)]


def test_compare_page_on_stored_runs_starts_at_the_current_model_and_ticks_training_data(tmp_path, monkeypatch):
    """Real rows from assets/bench/quick (digits and MNIST, the training data stored as text labels)."""
    import shutil

    shutil.copytree(ROOT / "assets" / "bench" / "quick", tmp_path / "quick")
    monkeypatch.setenv("UNLEARN_BENCH_DIRS", str(tmp_path))
    at = new_app("5_compare")
    assert at.selectbox(key="cmp_combo").value == ("digits", "cnn")           # the current model
    table = at.dataframe[0].value.set_index("method")
    ticked = {m for m, used in table["uses training data"].items() if used}
    assert ticked == {"retrain", "finetune", "gradient_ascent", "random_labels", "ssd"}
    assert table.loc["retrain", "training data"] == "retain train"
    at.selectbox(key="cmp_combo").set_value(("mnist", "cnn")).run()
    assert not at.exception and "mnist" in str(at.dataframe[1].value["dataset"].unique())


def test_compare_page_shows_the_confusion_matrices_before_and_after(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_BENCH_DIRS", str(tmp_path))
    at = new_app("5_compare")
    fig = chart(at, "Predictions per class")
    before, after = (array(d["z"]) for d in fig["data"])
    cls = at.selectbox(key="cmp_class").value
    assert before.shape == after.shape == (10, 10)
    assert before[cls, cls] > 80 and after[cls, cls] < 20                    # the forget class's own column empties
    others = [c for c in range(10) if c != cls]
    assert after[others, others].mean() > 80                                 # the rest stays on the diagonal
    assert before.sum(1) == pytest.approx(100, abs=0.5) and after.sum(1) == pytest.approx(100, abs=0.5)
    at.selectbox(key="cmp_class").set_value(7).run()
    after7 = array(chart(at, "Predictions per class")["data"][1]["z"])
    assert after7[7, 7] < 20 and after7[3, 3] > 80


def test_load_runs_refuses_a_file_without_the_columns(tmp_path):
    bad = tmp_path / "runs.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="lacks the columns method, forget_acc"):
        ui.load_runs(bad)


# ----------------------------------------------------------------------------- helpers
def test_zoo_offers_the_third_party_onnx_model(monkeypatch, shared_data):
    """The shipped torchvision MobileNetV3 (ONNX, not from core.models) is chosen from the zoo like any
    other: its card names MNIST and its layer table shows torchvision's module paths (unlearning it is
    tested through the CLI, test_cli.py)."""
    monkeypatch.setenv("UNLEARN_DATA_DIR", str(shared_data))
    at = new_app()
    at.button(key="use_shipped:mnist/mobilenet_v3_small").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["model_key"] == "shipped:mnist/mobilenet_v3_small"
    assert "mnist / mobilenet_v3_small" in sidebar_text(at)
    layers = next(d.value for d in at.dataframe if "layer" in d.value.columns)["layer"].tolist()
    assert "classifier.0" in layers and any(name.startswith("features.") for name in layers)


def test_zoo_marks_models_without_data_as_unavailable(tmp_path, monkeypatch):
    """With no data folder and an empty cache, only digits is offered; the others say what they need."""
    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("UNLEARN_CACHE_DIR", str(tmp_path / "cache"))
    zoo = {e.key: e for e in ui.model_zoo()}
    assert zoo[ui.DEFAULT_MODEL].available and zoo[ui.DEFAULT_MODEL].reason == ""
    others = [e for key, e in zoo.items() if key != ui.DEFAULT_MODEL]
    assert others and all(not e.available and "UNLEARN_DATA_DIR" in e.reason for e in others)
    at = new_app()
    assert at.session_state["model_key"] == ui.DEFAULT_MODEL
    assert len([m for m in at.markdown if m.value.startswith(":orange[Not available:]")]) == len(others)
    assert all(b.disabled for b in at.button if b.label == "Use this model")
    assert at.selectbox(key="train_dataset").options == ["digits"]


def test_path_overlap_is_jaccard():
    from core.attribution.paths import LayerSelection, NeuronPath

    def path(c, units):
        return NeuronPath(c, {"a": LayerSelection("a", units, [1.0] * len(units), [1.0] * len(units), 10, 2, len(units))})

    layers, classes, matrix = ui.path_overlap({0: path(0, [1, 2, 3]), 1: path(1, [3, 4]), 2: path(2, [7])}, 0)
    assert layers == ["a"] and classes == [0, 1, 2]
    assert matrix.tolist() == [[1.0, 0.25, 0.0]]
    assert ui.jaccard([], []) == 1.0


def test_session_helpers_never_move_or_change_a_shared_model(digits_model):
    model, card = digits_model
    checksum = state_checksum(model)
    rows = ui.layer_rows(model, card)
    assert rows[0]["layer"] == "conv1" and rows[0]["output shape"] == "32 x 8 x 8"
    assert ui.analysable_layers(model, card) == ["relu1", "relu2", "relu3"]
    assert ui.unit_word(model, card, "relu1") == "channel" and ui.unit_word(model, card, "relu3") == "unit"
    pool, _ = ui.heldout_data("digits")
    rel = ui.class_relevance(model, card, pool, 1, "epsilon", ["relu3"])
    assert rel.heatmaps.shape[1:] == (8, 8) and rel.layers["relu3"].shape[1] == 512
    assert state_checksum(model) == checksum and next(model.parameters()).device.type == "cpu"


def test_the_dashboard_exports_an_imported_model_in_its_own_format(lenet_files, tmp_path):
    """The Unlearn page's download of an ONNX model is an ONNX file (its card beside it names the
    format), and it loads back to the same outputs."""
    from core.models.formats.onnx_graph import load_onnx
    from core.models.cards import ModelCard

    card = ModelCard(arch="lenet", dataset="mnist", classes=[str(c) for c in range(10)], input_shape=[1, 28, 28],
                     mean=[0.1307], std=[0.3081], notes={"format": "onnx"})
    model, card = load_checkpoint(lenet_files["legacy"], card)
    lm = ui.LoadedModel("uploaded:x", "lenet", model, card, "uploaded", "x", extra={"format": "onnx"})
    assert ui.model_file_format(lm) == "onnx"
    data, card_json, _ = ui.export_unlearned(model, lm.card, 4, {}, {"per_class_after": [1.0] * 10}, "uploaded", "onnx")
    (tmp_path / "out.onnx").write_bytes(data)
    back = load_onnx(tmp_path / "out.onnx")
    x = torch.randn(5, 1, 28, 28)
    assert torch.allclose(back(x), model(x), atol=1e-4)
    assert json.loads(card_json)["notes"]["format"] == "onnx"


def test_the_zoo_is_listed_before_torch_is_imported(shared_data):
    """What app.py and the Model page run before the zoo's buttons are drawn (the URL's settings
    read against the zoo and the LRP rule names, the current model's key, the zoo with each
    dataset's availability) imports no torch, which takes 2.5 s of a cold start on this machine.
    Run in a fresh interpreter, as a server's first script run is."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import streamlit\n"
            "from pages import common\n"
            "from core import ui\n"
            "from core.attribution.rules import RULES\n"
            "entries = ui.model_zoo(sys.argv[1])\n"
            "params = ui.read_params({'model': 'mnist/cnn', 'rule': 'gamma'}, [e.key for e in entries if e.available], RULES)\n"
            "print(ui.default_model_key(entries), params['model'], params['rule'], 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(shared_data)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "shipped:mnist/cnn shipped:mnist/cnn gamma False", out.stdout


def test_the_model_page_imports_neither_lrp_nor_torchvision():
    """The first page a visitor sees imports only the model store: zennit and torchvision (about 2 s,
    since zennit imports torchvision and torchvision torch._dynamo) and scikit-learn wait for the
    pages that use them. Run in a fresh interpreter, as a server's first script run is."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import pandas, streamlit\n"
            "from pages import common\n"
            "from core import ui\n"
            "from core.ui import figures\n"
            "from core.models.registry import ARCHITECTURES\n"
            "from core.data.info import DATASETS\n"
            "from core.unlearning.config import default_config\n"
            "from core.attribution.relevance import RULES\n"
            "entries = ui.model_zoo(None)\n"
            "lm = ui.load_shipped(str(entries[[e.key for e in entries].index(ui.DEFAULT_MODEL)].path))\n"
            "ui.layer_rows(lm.model, lm.card); default_config()\n"
            "print(sorted(m for m in ('zennit', 'torchvision', 'sklearn', 'onnx', 'onnx2torch') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_the_warm_up_readies_the_first_answer_and_leaves_scikit_learn_for_later(shared_data):
    """After the warm-up a model's first Unlearn answer needs no import and no pass over the
    evaluation set: zennit is imported and the evaluation set's tensors before the default layer and
    at the classifier are held (reading them runs no part of the model). scikit-learn, which only the
    erase button needs, is not imported there: beside the first visit it held the interpreter for
    the page's answer; the prefetch imports it first. A fresh interpreter, as a server's is."""
    import os
    import subprocess
    import sys

    code = ("import sys, logging\n"
            "logging.disable(logging.WARNING)\n"
            "from pages import common\n"
            "from core import ui\n"
            "from core.models.graph import ModelGraph\n"
            "entries = ui.model_zoo(common.data_dir())\n"
            "lm = ui.load_shipped(str(entries[[e.key for e in entries].index(ui.PREFERRED_MODEL)].path))\n"
            "common.warm_up(lm.checksum, lm).join(240)\n"
            "print(sorted(m for m in ('zennit', 'torchvision', 'sklearn') if m in sys.modules))\n"
            "caches = common.eval_caches(lm.checksum, lm)\n"
            "def refuse(*args, **kwargs): raise AssertionError('the model ran')\n"
            "ModelGraph.run_probe = ModelGraph.run_segment = refuse\n"
            "layer = ui.analysable_layers(lm.model, lm.card)[-1]\n"
            "held = [caches.at(cut).activations[0].shape[0] for cut in (caches.layer_cut(layer), caches.classifier_cut())]\n"
            "print(held == [len(caches.eval_set)] * 2, len(caches.eval_set))\n"
            "common.import_erase_libraries()\n"
            "print('sklearn' in sys.modules)\n")
    env = dict(os.environ, UNLEARN_DATA_DIR=str(shared_data))   # MNIST: the digits model's data is read by scikit-learn
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()[-3:]
    assert lines[0] == "['torchvision', 'zennit']", out.stdout
    assert lines[1].split()[0] == "True" and int(lines[1].split()[1]) > 0, out.stdout
    assert lines[2] == "True", out.stdout
