"""Training-step time on CPU: network width, input size, precision, and the data path.

Two tables, each measured side by side in one run (the figures of a row are interleaved
iteration by iteration after warm-up, and medians are compared), torch on one thread:

``network``
    One optimiser step of the two-stream ResNet-18 layout alone (forward of 96 images, 64
    visible views + 32 infrared, a trivial loss on the BN-neck feature, backward, Adam) at
    base widths 64 / 32 / 16 and inputs 48x24, 64x32, 96x48, in float32 and under bfloat16
    autocast. Ratios: each width against width 64 at the same input and precision, and
    bf16 / fp32 at the same width and input.
``layout``
    The same optimiser step, and an extraction batch (128 images, eval mode, no gradients),
    with the network's weights in the default (NCHW) layout and in channels-last (NHWC), the
    layout `engine.build.build_network` uses. Ratio: channels-last / default.
``data``
    The engine's whole training iteration (`Trainer.train_round` with one iteration, batches
    drawn by the real sampler and tensor transforms from a generated dataset: stage-1 cluster
    NCE losses, backward, Adam, memory update) with images decoded once into the RAM cache,
    and the same with every image decoded from disk at every use (``data.cache_mb=0``),
    against the network's own step on a batch of the same shape. Overhead = (step -
    network) / step.

Usage::

    PYTHONPATH=. .venv/bin/python -m benchmarks.step_time [--quick] [--iters N]

Writes ``benchmarks/results/step_time.json`` and ``step_time.md`` (the tables for the
README). ``--quick`` (a few seconds) runs one width and one size with 2 iterations.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
VISIBLE_IMAGES, INFRARED_IMAGES = 32, 32  # visible images give two views: 96 images a step


def _network(width: int, channels_last: bool) -> torch.nn.Module:
    from mmm_core.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", "none", width=width)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _network_step(
    width: int,
    height: int,
    image_width: int,
    dtype: torch.dtype | None,
    channels_last: bool = True,
) -> Callable[[], None]:
    model = _network(width, channels_last)
    model.train()
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-4)
    images = torch.randn(2 * VISIBLE_IMAGES + INFRARED_IMAGES, 3, height, image_width)
    modality = torch.cat([torch.zeros(2 * VISIBLE_IMAGES), torch.ones(INFRARED_IMAGES)]).long()

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            output = model(images, modality)
        loss = output.neck.float().square().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return step


def interleaved(steps: dict[str, Callable[[], object]], warmup: int, iters: int) -> dict:
    """Median seconds of each step, run in turn (order rotated every iteration)."""
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for iteration in range(warmup + iters):
        shift = iteration % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            steps[name]()
            if iteration >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: {"median_s": float(np.median(t)), "times_s": t} for name, t in times.items()}


def _extract_step(
    width: int, height: int, image_width: int, channels_last: bool
) -> Callable[[], None]:
    model = _network(width, channels_last).eval()
    images = torch.randn(128, 3, height, image_width)

    def step() -> None:
        with torch.inference_mode():
            model(images, "visible")

    return step


def layout_table(
    widths: Sequence[int], height: int, image_width: int, warmup: int, iters: int
) -> list[dict]:
    """Training step and extraction batch, default layout against channels-last (fp32)."""
    steps: dict[str, Callable[[], object]] = {}
    for width in widths:
        for layout in ("contiguous", "channels_last"):
            last = layout == "channels_last"
            steps[f"{width}/train/{layout}"] = _network_step(width, height, image_width, None, last)
            steps[f"{width}/extract/{layout}"] = _extract_step(width, height, image_width, last)
    timed = interleaved(steps, warmup, iters)
    rows = []
    for width in widths:
        for kind in ("train", "extract"):
            default = timed[f"{width}/{kind}/contiguous"]["median_s"]
            nhwc = timed[f"{width}/{kind}/channels_last"]["median_s"]
            rows.append(
                {
                    "width": width,
                    "input": f"{height}x{image_width}",
                    "step": kind,
                    "contiguous_s": default,
                    "channels_last_s": nhwc,
                    "channels_last_vs_contiguous": nhwc / default,
                }
            )
    print(f"  layout {height}x{image_width}: done", flush=True)
    return rows


def network_table(
    widths: Sequence[int],
    sizes: Sequence[tuple[int, int]],
    warmup: int,
    iters: int,
    precisions: Sequence[str] = ("fp32", "bf16"),
) -> list[dict]:
    dtypes = {"fp32": None, "bf16": torch.bfloat16}
    rows = []
    for height, image_width in sizes:
        steps = {}
        for width in widths:
            for precision in precisions:
                steps[f"{width}/{precision}"] = _network_step(
                    width, height, image_width, dtypes[precision]
                )
        timed = interleaved(steps, warmup, iters)
        for width in widths:
            for precision in precisions:
                median = timed[f"{width}/{precision}"]["median_s"]
                rows.append(
                    {
                        "width": width,
                        "input": f"{height}x{image_width}",
                        "precision": precision,
                        "median_s": median,
                        "vs_width64": median / timed[f"{widths[0]}/{precision}"]["median_s"]
                        if widths[0] == 64
                        else None,
                        "bf16_vs_fp32": timed[f"{width}/bf16"]["median_s"]
                        / timed[f"{width}/fp32"]["median_s"]
                        if "bf16" in precisions
                        else None,
                    }
                )
        print(f"  network {height}x{image_width}: done", flush=True)
    return rows


def data_table(width: int, height: int, image_width: int, warmup: int, iters: int) -> dict:
    """The engine's iteration with the decoded-image cache, without it, and the network."""
    from mmm_core.data import train_manifest
    from mmm_core.data.cache import ImageCache
    from mmm_core.data.datasets import train_loader
    from mmm_core.data.synthetic import generate_sysu
    from mmm_core.data.transforms import train_transforms
    from mmm_core.engine.targets import Stage1Targets
    from mmm_core.engine.trainer import Trainer

    folder = Path(tempfile.mkdtemp(prefix="mmm-step-time-"))
    root = folder / "sysu"
    generate_sysu(root, ids=24, seed=0, preset="bench")
    manifest = train_manifest("sysu", root)
    views = train_transforms(height, image_width, pad=4)
    cached = ImageCache(height, image_width, 1024)
    uncached = ImageCache(height, image_width, 0)
    subsets = [manifest.modality("visible"), manifest.modality("infrared")]
    for subset in subsets:
        cached.fill(subset.full_paths())
    model = _network(width, channels_last=True)  # as engine.build.build_network lays it out
    dim = model.feature_dim
    labels = [np.unique(s.pids, return_inverse=True)[1].astype(np.int64) for s in subsets]
    rng = np.random.default_rng(0)

    def centres(count: int) -> np.ndarray:
        vectors = rng.standard_normal((count, dim)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    targets = Stage1Targets(
        labels_visible=labels[0],
        labels_infrared=labels[1],
        centres_visible=centres(int(labels[0].max()) + 1),
        centres_infrared=centres(int(labels[1].max()) + 1),
    )
    trainer = Trainer(model, torch.device("cpu"))
    trainer.start_stage(1)
    trainer.start_round(targets)
    total = warmup + iters

    def loaders(images: ImageCache) -> tuple:
        made = []
        for subset, subset_labels, view_names in (
            (subsets[0], labels[0], ["visible", "visible_exchange"]),
            (subsets[1], labels[1], ["infrared"]),
        ):
            made.append(
                iter(
                    train_loader(
                        subset.full_paths(),
                        subset_labels,
                        subset.camids,
                        [views[name] for name in view_names],
                        images,
                        num_ids=4,
                        num_instances=8,
                        num_batches=total * 2,
                        seed=0,
                    )
                )
            )
        return tuple(made)

    streams = {"cached": loaders(cached), "from_disk": loaders(uncached)}

    def engine_step(kind: str) -> Callable[[], object]:
        visible, infrared = streams[kind]
        return lambda: trainer.train_round(visible, infrared, iters=1)

    optimiser = trainer.optimizer
    assert optimiser is not None
    images = torch.randn(2 * VISIBLE_IMAGES + INFRARED_IMAGES, 3, height, image_width)
    modality = torch.cat([torch.zeros(2 * VISIBLE_IMAGES), torch.ones(INFRARED_IMAGES)]).long()

    def network() -> None:
        output = model(images, modality)
        loss = output.neck.float().square().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    model.train()
    timed = interleaved(
        {
            "network": network,
            "engine_cached": engine_step("cached"),
            "engine_from_disk": engine_step("from_disk"),
        },
        warmup,
        iters,
    )
    net = timed["network"]["median_s"]
    return {
        "width": width,
        "input": f"{height}x{image_width}",
        "images": len(manifest.paths),
        **{f"{k}_median_s": v["median_s"] for k, v in timed.items()},
        "overhead_cached": (timed["engine_cached"]["median_s"] - net)
        / timed["engine_cached"]["median_s"],
        "overhead_from_disk": (timed["engine_from_disk"]["median_s"] - net)
        / timed["engine_from_disk"]["median_s"],
    }


def markdown(network: list[dict], layout: list[dict], data: dict, meta: dict) -> str:
    lines = [
        f"One thread, batch of 96 images; medians of {meta['iters']} interleaved iterations "
        f"after {meta['warmup']} warm-up; load average at the end {meta['load_average']}.",
        "",
        "| width | input | fp32 s | bf16 s | bf16 / fp32 | fp32 vs width 64 | bf16 vs width 64 |",
        "|---|---|---|---|---|---|---|",
    ]
    by_key = {(r["width"], r["input"], r["precision"]): r for r in network}
    missing = {"median_s": float("nan"), "vs_width64": None, "bf16_vs_fp32": None}

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for width, size in dict.fromkeys((r["width"], r["input"]) for r in network):
        fp32 = by_key[width, size, "fp32"]
        bf16 = by_key.get((width, size, "bf16"), missing)
        bf16_time = "-" if bf16 is missing else f"{bf16['median_s']:.3f}"
        lines.append(
            f"| {width} | {size} | {fp32['median_s']:.3f} | {bf16_time} | "
            f"{ratio(fp32['bf16_vs_fp32'])} | {ratio(fp32['vs_width64'])} | "
            f"{ratio(bf16['vs_width64'])} |"
        )
    if meta["bf16_native"] is False:
        lines += [
            "",
            f"This CPU has no native bf16 ({meta['cpu_capability']}): bf16 autocast is emulated; "
            "it was timed at the smallest setting only (the row with a bf16 figure), and "
            "`train.amp: auto` runs float32 here.",
        ]
    lines += [
        "",
        "Weight layout (fp32; train = the optimiser step above, extract = 128 images in eval "
        "mode):",
        "",
        "| width | input | step | default (NCHW) s | channels-last s | channels-last / default |",
        "|---|---|---|---|---|---|",
    ]
    for row in layout:
        lines.append(
            f"| {row['width']} | {row['input']} | {row['step']} | {row['contiguous_s']:.3f} | "
            f"{row['channels_last_s']:.3f} | {row['channels_last_vs_contiguous']:.2f} |"
        )
    lines += [
        "",
        f"Engine iteration (width {data['width']}, {data['input']}, fp32, stage 1, real "
        f"sampler and transforms over {data['images']} generated images):",
        "",
        "| step | median s | outside the network |",
        "|---|---|---|",
        f"| network alone | {data['network_median_s']:.3f} | - |",
        f"| engine, images decoded once (cache) | {data['engine_cached_median_s']:.3f} | "
        f"{100 * data['overhead_cached']:.1f} % |",
        f"| engine, decoded from disk every use | {data['engine_from_disk_median_s']:.3f} | "
        f"{100 * data['overhead_from_disk']:.1f} % |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one width and size, 2 iterations")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per figure [5]")
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    from mmm_core.engine.features import bf16_supported

    torch.set_num_threads(1)
    if args.quick:
        widths, sizes, iters = (64, 16), [(32, 16)], 2
    else:
        widths, sizes, iters = (64, 32, 16), [(48, 24), (64, 32), (96, 48)], args.iters
    native = bf16_supported(torch.device("cpu"))
    started = time.perf_counter()
    if native:
        network = network_table(widths, sizes, args.warmup, iters)
    else:  # emulated bf16 is tens of times slower: time it once, at the smallest setting
        network = network_table(widths, sizes, args.warmup, iters, ("fp32",))
        probe = network_table((widths[-1],), sizes[:1], 0, 1)
        for row in network:
            if (row["width"], row["input"]) == (widths[-1], probe[0]["input"]):
                row["bf16_vs_fp32"] = probe[0]["bf16_vs_fp32"]  # both timed once, side by side
        network += [r for r in probe if r["precision"] == "bf16"]
    layout_size = sizes[-1] if args.quick else sizes[1]
    layout_widths = (16,) if args.quick else (64, 16)
    layout = layout_table(layout_widths, *layout_size, args.warmup, iters)
    data = data_table(
        32 if not args.quick else 16, *sizes[-1 if args.quick else 1], args.warmup, iters
    )
    meta = {
        "iters": iters,
        "warmup": args.warmup,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": native,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.perf_counter() - started, 1),
    }
    table = markdown(network, layout, data, meta)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "step_time-quick" if args.quick else "step_time"
    (RESULTS / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "network": network, "layout": layout, "data": data}, indent=2)
        + "\n"
    )
    (RESULTS / f"{stem}.md").write_text(table)
    print(f"wrote {RESULTS / stem}.json and .md ({meta['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
