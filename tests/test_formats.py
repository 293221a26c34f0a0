"""Whole-model files (ONNX from both exporters, torch.export .pt2) load into the standard form,
match their source to 1e-4 at any batch size, save back, and unsafe or broken files are refused."""
from __future__ import annotations

import copy
import hashlib
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from core.models import formats
from core.errors import UserError


TOL = 1e-4


class LeNet(nn.Module):
    """Nested modules (ModuleDict of Sequentials), BatchNorm, and functional ops in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.blocks = nn.ModuleDict({"b": nn.Sequential(OrderedDict(
            [("conv", nn.Conv2d(4, 6, 3, bias=False)), ("bn", nn.BatchNorm2d(6)), ("act", nn.ReLU())]))})
        self.head = nn.Sequential(nn.Linear(6 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.bn1(self.c1(x))), 2)
        x = F.max_pool2d(self.blocks["b"](x), 2)
        return self.head(torch.flatten(x, 1))


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so folding or dropping a BatchNorm would show."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def build_lenet() -> nn.Module:
    torch.manual_seed(0)
    return _randomise_bn(LeNet())


def build_resnet18() -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(1, 64, 3, stride=1, padding=1, bias=False)
    return _randomise_bn(net)


def build_mobilenet() -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return _randomise_bn(torchvision.models.mobilenet_v3_small(num_classes=10))


MODELS = {"lenet": (build_lenet, (1, 28, 28)), "resnet18": (build_resnet18, (1, 28, 28)),
          "mobilenet_v3_small": (build_mobilenet, (3, 32, 32))}
FORMATS = ["onnx_torchscript", "onnx_dynamo", "pt2"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes())
    data = Path(str(path) + ".data")
    if data.exists():
        digest.update(data.read_bytes())
    return digest.hexdigest()


def export(model: nn.Module, shape, fmt: str, folder: Path) -> Path:
    x = torch.randn(2, *shape)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if fmt == "pt2":
            path = folder / "model.pt2"
            torch.export.save(torch.export.export(model, (x,)), str(path))
        else:
            path = folder / "model.onnx"
            torch.onnx.export(model, (x,), str(path), dynamo=fmt == "onnx_dynamo", verbose=False)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small convolutions (depthwise ones above all) run far slower with several intra-op
    threads on a busy 2-core machine; one thread keeps this module well inside its time budget."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sources():
    return {name: build() for name, (build, _) in MODELS.items()}


@pytest.fixture(scope="module")
def loaded(sources, tmp_path_factory):
    """(name, fmt) -> (file, sha256 before loading, standard-form model), built on first use."""
    cache: dict = {}

    def get(name: str, fmt: str):
        if (name, fmt) not in cache:
            folder = tmp_path_factory.mktemp(f"{name}_{fmt}")
            path = export(sources[name], MODELS[name][1], fmt, folder)
            digest = sha256(path)
            cache[name, fmt] = (path, digest, formats.load_model_file(path))
        return cache[name, fmt]

    return get


def assert_same(model_a, model_b, shape, batches=(1, 5)) -> None:
    torch.manual_seed(1)
    for n in batches:
        x = torch.randn(n, *shape)
        with torch.no_grad():
            a, b = model_a(x), model_b(x)
        assert a.shape == b.shape == (n, 10)
        assert torch.allclose(a, b, atol=TOL, rtol=TOL), (n, float((a - b).abs().max()))


def assert_standard(gm: fx.GraphModule) -> None:
    assert isinstance(gm, fx.GraphModule) and not gm.training
    layers = {n: m for n, m in gm.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))}
    assert any(isinstance(m, nn.Conv2d) for m in layers.values())
    assert any(isinstance(m, nn.Linear) for m in layers.values())
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    assert set(layers) <= called, "every layer is called as a module"
    for name in [n for n, _ in gm.named_modules()] + list(gm.state_dict()):
        assert "/" not in name and ":" not in name, name
    assert all(k.rsplit(".", 1)[0] in dict(gm.named_modules()) for k in gm.state_dict())
    get_attrs = [n for n in gm.graph.nodes if n.op == "get_attr"]
    for node in get_attrs:
        assert node.target.startswith("constants."), node.target


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(MODELS))
def test_load_matches_source(name, fmt, sources, loaded):
    path, digest, gm = loaded(name, fmt)
    assert_standard(gm)
    assert_same(sources[name], gm, MODELS[name][1])
    assert formats.input_shape_of(gm) == MODELS[name][1]
    assert formats.input_shape_of(path) == MODELS[name][1]
    assert sha256(path) == digest, "the source file is never modified"


def test_module_names_follow_the_source(loaded):
    _, _, lenet = loaded("lenet", "pt2")
    assert {"c1", "bn1", "blocks.b.conv", "blocks.b.bn", "head.0", "head.2"} <= set(dict(lenet.named_modules()))
    assert isinstance(lenet.get_submodule("bn1"), nn.BatchNorm2d)
    assert "blocks.b.conv.weight" in lenet.state_dict() and "c1.bias" in lenet.state_dict()
    _, _, dyn = loaded("lenet", "onnx_dynamo")
    assert {"c1", "blocks.b.conv", "head.0", "head.2"} <= set(dict(dyn.named_modules()))
    _, _, resnet = loaded("resnet18", "onnx_torchscript")
    names = set(dict(resnet.named_modules()))
    assert {"conv1", "layer1.0.conv1", "layer4.1.conv2", "layer2.0.downsample.0", "fc"} <= names
    _, _, mobile = loaded("mobilenet_v3_small", "onnx_torchscript")
    assert "features.1.block.0.0" in dict(mobile.named_modules())
    assert {type(m) for m in mobile.modules()} >= {nn.Hardswish, nn.Hardsigmoid, nn.AdaptiveAvgPool2d}


@pytest.mark.parametrize("name", list(MODELS))
def test_save_round_trip_keeps_edits(name, loaded, tmp_path):
    _, _, gm = loaded(name, "pt2")
    shape = MODELS[name][1]
    edited = copy.deepcopy(gm)
    conv_name, conv = next((n, m) for n, m in edited.named_modules() if isinstance(m, nn.Conv2d) and m.bias is None)
    with torch.no_grad():
        conv.weight.mul_(0.5)
        conv.bias = nn.Parameter(torch.full((conv.out_channels,), 0.1))  # the engine may add a bias
        next(m for m in edited.modules() if isinstance(m, nn.Linear)).weight[0].zero_()
    onnx_path = formats.save_onnx(edited, tmp_path / "edited.onnx", shape)
    pt2_path = formats.save_exported(edited, tmp_path / "edited.pt2", shape)
    onnx_back, pt2_back = formats.load_model_file(onnx_path), formats.load_model_file(pt2_path)
    for back in (onnx_back, pt2_back):
        assert_standard(back)
        assert_same(edited, back, shape, batches=(1, 3))
        assert conv_name + ".bias" in back.state_dict()
    assert not torch.allclose(gm(torch.ones(1, *shape)), pt2_back(torch.ones(1, *shape)))
    assert set(pt2_back.state_dict()) == set(edited.state_dict())
    assert any(isinstance(m, nn.BatchNorm2d) for m in onnx_back.modules()), "BatchNorm is kept as its own layer"
    with pytest.raises(UserError, match="already exists"):
        formats.save_onnx(edited, onnx_path, shape)
    with pytest.raises(UserError, match="already exists"):
        formats.save_exported(edited, pt2_path, shape)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.onnx", "edited.pt2"]


def test_failed_save_leaves_nothing(tmp_path):
    class Bad(nn.Module):
        def forward(self, x):
            raise RuntimeError("cannot trace")

    for save, name in ((formats.save_onnx, "bad.onnx"), (formats.save_exported, "bad.pt2")):
        with pytest.raises(UserError, match="failed"):
            save(Bad(), tmp_path / name, (1, 4, 4))
    assert list(tmp_path.iterdir()) == []


def assert_one_sentence(message: str, *words: str) -> None:
    assert message.endswith(".") and "\n" not in message and "Traceback" not in message
    assert message.count(". ") == 0, message
    for word in words:
        assert word in message, message


def test_refuses_torchscript_and_pickled_models(tmp_path):
    model = build_lenet()
    script = tmp_path / "model.pt"
    torch.jit.script(model).save(str(script))
    pickled = tmp_path / "whole.pt"
    torch.save(model, str(pickled))
    for path in (script, pickled):
        before = sha256(path)
        assert formats.is_graph_file(path)
        with pytest.raises(UserError) as info:
            formats.load_model_file(path)
        assert_one_sentence(str(info.value), "torch.onnx.export", "torch.export.save")
        assert sha256(path) == before
    assert "TorchScript" in str(pytest.raises(UserError, formats.refuse_unsafe, script).value)
    assert "pickled whole model" in str(pytest.raises(UserError, formats.refuse_unsafe, pickled).value)


def test_weights_files_are_not_graph_files(tmp_path):
    from safetensors.torch import save_file

    state = tmp_path / "weights.pt"
    torch.save(build_lenet().state_dict(), str(state))
    safe = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in build_lenet().state_dict().items()}, str(safe))
    for path in (state, safe):
        assert not formats.is_graph_file(path)
        assert formats.file_kind(path) == "weights"
        with pytest.raises(UserError) as info:
            formats.load_model_file(path)
        assert_one_sentence(str(info.value), "checkpoint")


def test_refuses_pt2_with_pickled_parts(loaded, tmp_path):
    import zipfile

    source, _, _ = loaded("lenet", "pt2")
    crafted = tmp_path / "crafted.pt2"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(crafted, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("model_weights_config.json"):
                data = data.replace(b'"use_pickle": false', b'"use_pickle": true', 1)
            zout.writestr(item, data)
    with pytest.raises(UserError) as info:
        formats.load_model_file(crafted)
    assert_one_sentence(str(info.value), "pickled")


def test_bad_files(tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(UserError) as info:
        formats.load_model_file(missing)
    assert_one_sentence(str(info.value), "does not exist")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(UserError) as info:
        formats.load_model_file(empty)
    assert_one_sentence(str(info.value), "empty")
    good = export(build_lenet(), (1, 28, 28), "onnx_torchscript", tmp_path)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model\x00\xff" * 10)
    for path in (truncated, garbage):
        with pytest.raises(UserError) as info:
            formats.load_model_file(path)
        assert_one_sentence(str(info.value), "ONNX")
    broken_pt2 = tmp_path / "broken.pt2"
    broken_pt2.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserError) as info:
        formats.load_model_file(broken_pt2)
    assert_one_sentence(str(info.value))


def test_refuses_two_inputs(tmp_path):
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 10)

        def forward(self, x, y):
            return self.fc(torch.flatten(x + y, 1))

    path = tmp_path / "two.onnx"
    x = torch.randn(2, 1, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TwoInputs(), (x, x), str(path), dynamo=False)
    with pytest.raises(UserError) as info:
        formats.load_model_file(path)
    assert_one_sentence(str(info.value), "exactly one image input")
