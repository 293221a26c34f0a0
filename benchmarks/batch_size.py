"""Forward-pass seconds on the CPU by batch size, and by layout: the figures behind
``core.models.graph.batch_for`` and ``ModelGraph.channels_last``.

    .venv/bin/python -m benchmarks.batch_size [--images 1000] [--rounds 6] [--layout]

For each shipped model (MNIST cnn and All-CNN, CIFAR-10 vgg11_slim), ``--images`` random inputs
run through the whole model in batches whose largest tensor is 2 to 64 MiB, and in batches of
1,024 (the fixed size used before), alternating within each round; the median of ``--rounds`` is
printed, with the batch :func:`core.models.graph.batch_for` picks marked.

``--layout``: instead, the inputs run through the graph's compiled part from the images to the
logits, in the batch the graph picks, once with the layout the graph chose (convolution outputs
channels-last where the model allows it) and once with every tensor channels-first, alternating
within each round; the medians are printed with the largest difference between the two answers.
Prints Markdown.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from core.models.checkpoints import load_checkpoint, shipped_checkpoint
from core.models.compute import set_threads
from core.models.graph import CPU_BATCH_BYTES, ModelGraph, batch_for, graph_of

MODELS = (("mnist", "cnn"), ("mnist", "allcnn"), ("cifar10", "vgg11_slim"))


def logits(graph: ModelGraph, model: torch.nn.Module, images: torch.Tensor, channels_last: bool,
           compiled: dict[bool, dict]) -> torch.Tensor:
    """The model's logits through the graph's compiled parts in the layout asked for (``compiled``:
    each layout's compiled parts, kept between calls so that no timed call compiles)."""
    chosen, held = graph.channels_last, graph._compiled
    graph.channels_last, graph._compiled = channels_last, compiled[channels_last]
    try:
        return graph.run_tail(model, (images,), graph.cut_after(graph.nodes[0]))
    finally:
        graph.channels_last, graph._compiled = chosen, held


def layouts(args) -> None:
    """The ``--layout`` table: each shipped model's seconds in either layout, alternating."""
    print(f"| model | channels-last chosen | seconds for {args.images} images, channels-first | channels-last | "
          "last / first | largest logit difference |\n|---|---|---|---|---|---|")
    for dataset, arch in MODELS:
        model, card = load_checkpoint(shipped_checkpoint(dataset, arch))
        graph = graph_of(model, tuple(card.input_shape))
        x = torch.randn(args.images, *card.input_shape, generator=torch.Generator().manual_seed(0))
        times: dict[bool, list[float]] = {False: [], True: []}
        compiled: dict[bool, dict] = {False: {}, True: {}}
        answers = {layout: logits(graph, model, x, layout, compiled) for layout in times}   # compiles, warms
        for _ in range(args.rounds):
            for layout in times:
                start = time.perf_counter()
                logits(graph, model, x, layout, compiled)
                times[layout].append(time.perf_counter() - start)
        first, last = statistics.median(times[False]), statistics.median(times[True])
        print(f"| {dataset} {arch} | {'yes' if graph.channels_last else 'no'} | {first:.3f} | {last:.3f} | "
              f"{last / first:.2f} | {float((answers[True] - answers[False]).abs().max()):.1e} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--layout", action="store_true", help="channels-last against channels-first, not batch sizes")
    args = parser.parse_args()
    set_threads()
    if args.layout:
        layouts(args)
        return
    print(f"| model | largest tensor per image | seconds for {args.images} images by batch (largest tensor a batch) "
          "| fixed 1,024 | picked / 1,024 |\n|---|---|---|---|---|")
    for dataset, arch in MODELS:
        model, card = load_checkpoint(shipped_checkpoint(dataset, arch))
        graph = graph_of(model, tuple(card.input_shape))
        per_image = graph.bytes_per_image()
        sizes = {f"{mib} MiB": batch_for(per_image) if mib * 2 ** 20 == CPU_BATCH_BYTES else
                 max(16, min(2048, 1 << (mib * 2 ** 20 // per_image).bit_length() - 1)) for mib in (2, 4, 8, 16, 32, 64)}
        sizes["1024"] = 1024
        x = torch.randn(args.images, *card.input_shape)
        times: dict[str, list[float]] = {key: [] for key in sizes}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for key, batch in sizes.items():
                    start = time.perf_counter()
                    for i in range(0, len(x), batch):
                        model(x[i:i + batch])
                    times[key].append(time.perf_counter() - start)
        median = {key: statistics.median(v) for key, v in times.items()}
        picked = next(key for key, b in sizes.items() if b == batch_for(per_image))
        cells = ", ".join(f"{'**' if key == picked else ''}{sizes[key]} ({key}): {median[key]:.3f}"
                          f"{'**' if key == picked else ''}" for key in sizes if key != "1024")
        print(f"| {dataset} {arch} | {per_image / 1e3:.0f} kB | {cells} | {median['1024']:.3f} | "
              f"{median[picked] / median['1024']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
