"""Make a "third-party" MNIST model: torchvision's MobileNetV3-Small, trained here, shipped as ONNX.

It writes ``--out`` (an ONNX file) and the project's model card beside it (same name, ``.json``).
The network is ``torchvision.models.mobilenet_v3_small(num_classes=10)`` -- torchvision's own class
and forward, unchanged -- with only the stem convolution ``features[0][0]`` swapped for a
1-input-channel one of the same settings (3x3, stride 2, padding 1, no bias), so that it takes
MNIST's (1, 28, 28) images as they are (the adaptive pooling absorbs the small size; no resizing;
stride 1 in the stem trained about 7x slower here and was not needed). After training, the
BatchNorm running statistics are recomputed over the training split (see recalibrate_batchnorm).

It deliberately avoids ``core.models`` (the project's architecture registry): the point is a model
whose structure the project did not define, to check that the dashboard and the unlearning
methods cope with a model built elsewhere and handed over as a file. Only the data loader
(``core.data``) and the training recipe (``core.models.train``: AdamW, one-cycle) are shared.

    python -m benchmarks.third_party_model --data-dir ../shared/data --out assets/mnist/mobilenet_v3_small.onnx
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import torchvision
from onnx2torch import convert
from torch import nn

from core.data.catalog import load_split
from core.data.sets import ImageSet
from core.models.train import recipe_for, tqdm_progress, train_model


ARCH = "mobilenet_v3_small"
DATASET = "mnist"
EPOCHS = 2


def build_model(num_classes: int) -> nn.Module:
    """torchvision's MobileNetV3-Small with a 1-channel stem conv (otherwise as torchvision makes it)."""
    model = torchvision.models.mobilenet_v3_small(num_classes=num_classes)
    stem = model.features[0][0]
    model.features[0][0] = nn.Conv2d(1, stem.out_channels, stem.kernel_size, stride=stem.stride,
                                     padding=stem.padding, bias=False)
    return model


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: ImageSet, batch_size: int = 500) -> None:
    """Replace every BatchNorm's running mean/variance by their average over ``data`` under the
    final weights (train-mode forward passes, no gradients, nothing else changes).

    torchvision builds MobileNetV3's BatchNorms with momentum 0.01, so after a short, fast
    one-cycle run their running statistics still mostly describe earlier weights: the eval-mode
    model scored about 10-20 % on MNIST while the train-mode one scored about 90 %."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None                      # cumulative average over the batches below
    model.train()
    for i in range(0, len(data), batch_size):
        model(data.images[i:i + batch_size])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def per_class_accuracy(model: nn.Module, data: ImageSet, batch_size: int = 500) -> tuple[list[float], float]:
    """(accuracy of each class, overall accuracy) on ``data``, in eval mode."""
    model.eval()
    preds = torch.cat([model(data.images[i:i + batch_size]).argmax(1)
                       for i in range(0, len(data), batch_size)])
    correct = preds == data.labels
    per_class = [float(correct[data.labels == c].float().mean()) for c in range(data.info.num_classes)]
    return per_class, float(correct.float().mean())


def export_onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    """The model as one self-contained ONNX file (legacy exporter, opset 17, dynamic batch)."""
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), buffer, dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    data = buffer.getvalue()
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto)
    external = [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise RuntimeError(f"the export refers to external data for {len(external)} tensors")
    with torch.no_grad():
        expected = model(example)
        got = convert(proto).eval()(example)
    diff = float((got - expected).abs().max())
    if not diff <= 1e-4:
        raise RuntimeError(f"onnx2torch's conversion differs from the model by {diff:.3g} (> 1e-4)")
    print(f"onnx2torch round trip: max abs diff {diff:.3g} on {len(example)} test images")
    return data


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default=f"assets/{DATASET}/{ARCH}.onnx")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    out = Path(args.out)
    card_path = out.with_suffix(".json")
    for path in (out, card_path):
        if path.exists():
            print(f"{path} already exists; remove it or choose another --out.", file=sys.stderr)
            return 2

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    train_set = load_split(DATASET, "train", args.data_dir)
    test_set = load_split(DATASET, "test", args.data_dir)
    info = train_set.info

    model = build_model(info.num_classes)
    # Parameter layout only (the forward is untouched): mkldnn's depthwise convolutions train
    # several times faster on the CPU with channels-last weights than with NCHW ones.
    model = model.to(memory_format=torch.channels_last)
    config = recipe_for(DATASET, epochs=args.epochs, seed=args.seed)
    progress, close = tqdm_progress(f"train {ARCH} on {DATASET}")
    start = time.perf_counter()
    try:
        train_model(model, train_set, config, progress)
    finally:
        close()
    recalibrate_batchnorm(model, train_set)
    train_seconds = time.perf_counter() - start
    model = model.to(memory_format=torch.contiguous_format).eval()

    per_class, accuracy = per_class_accuracy(model, test_set)
    print(f"test accuracy {accuracy:.4f} (lowest class {min(per_class):.4f}); "
          f"trained {train_seconds:.1f} s")

    data = export_onnx(model, test_set.images[:8])
    card = {
        "arch": ARCH,
        "dataset": DATASET,
        "classes": list(info.classes),
        "input_shape": list(info.input_shape),
        "mean": list(info.mean),
        "std": list(info.std),
        "seed": args.seed,
        "command": shlex.join(["python", "-m", "benchmarks.third_party_model", *argv]),
        "per_class_accuracy": [round(a, 4) for a in per_class],
        "test_accuracy": round(accuracy, 4),
        "created": datetime.date.today().isoformat(),
        "notes": {
            "format": "onnx",
            "exporter": "torch.onnx.export (legacy, opset 17)",
            "built_by": "torchvision.models.mobilenet_v3_small, not core.models",
            "train_config": config.to_dict(),
            "train_seconds": round(train_seconds, 1),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "onnx_sha256": hashlib.sha256(data).hexdigest(),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "xb") as f:
        f.write(data)
    with open(card_path, "x") as f:
        f.write(json.dumps(card, indent=2) + "\n")
    print(f"wrote {out} ({len(data) / 1e6:.2f} MB) and {card_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
