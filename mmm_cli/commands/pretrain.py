"""``mmm pretrain``: a ResNet pretrained on a disjoint synthetic identity set.

What the weights have and have not seen: `mmm_core.engine.pretrain`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from mmm_cli.errors import UsageError

HELP = "pretrain a ResNet on a disjoint synthetic identity set (an ImageNet stand-in)"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from mmm_core.engine.pretrain import ARCHS

    parser.add_argument("--out", required=True, help="weights file to write (.pt)")
    parser.add_argument(
        "--data",
        help="SYSU-layout dataset whose visible training images to learn from; default: "
        "generate one next to --out from --ids/--world-seed/--preset",
    )
    parser.add_argument("--ids", type=int, default=200, help="identities to generate [200]")
    parser.add_argument(
        "--world-seed",
        type=int,
        default=1000,
        help="synthetic world seed of the generated set; keep it different from the target "
        "dataset's (configs use 0) so that no person is shared [1000]",
    )
    parser.add_argument("--preset", default="tiny", help="synthetic preset [tiny]")
    parser.add_argument("--arch", default="resnet18", choices=ARCHS)
    parser.add_argument(
        "--model-width",
        type=int,
        default=64,
        help="the ResNet's base channel count, = model.width of the runs that load it [64]",
    )
    parser.add_argument("--height", type=int, default=None, help="input height [preset's]")
    parser.add_argument("--width", type=int, default=None, help="input width [preset's]")
    parser.add_argument("--iters", type=int, default=600, help="optimiser steps [600]")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--gray-prob", type=float, default=0.3, help="probability of a grayscale image [0.3]"
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed [0]")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N [cpu]")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    import sys

    import torch

    from mmm_core.data import synthetic, sysu
    from mmm_core.engine.pretrain import PretrainResult, pretrain_classifier

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    preset = synthetic.PRESETS.get(args.preset)
    if preset is None:
        known = tuple(synthetic.PRESETS)
        raise UsageError(f"--preset {args.preset!r} is unknown; expected one of {known}")
    if args.data:
        root = Path(args.data)
    else:
        root = out.parent / f"pretrain-data-{args.preset}-{args.ids}ids-seed{args.world_seed}"
        made = synthetic.ensure_generated(
            root, "sysu", args.ids, args.world_seed, preset, progress=not args.no_progress
        )
        if made is not None:  # new, or written by an older world version / other arguments
            why = "" if made == "new" else f" ({made})"
            print(f"generated {args.ids} identities (world seed {args.world_seed}) at {root}{why}")
    visible = sysu.train_manifest(root).modality("visible")
    paths, labels = visible.full_paths(), visible.pids
    height = args.height or preset.height
    width = args.width or preset.width
    print(f"pretraining {args.arch} on {len(paths)} visible images of {len(set(labels))} ids")
    state, result = pretrain_classifier(
        paths,
        labels,
        arch=args.arch,
        model_width=args.model_width,
        height=height,
        width=width,
        iterations=args.iters,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress and sys.stderr.isatty(),
        gray_prob=args.gray_prob,
    )
    result = PretrainResult(**{**asdict(result), "source": str(root)})
    torch.save(state, out)
    Path(f"{out}.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(
        f"wrote {out} ({result.iterations} steps in {result.seconds:.0f} s, "
        f"train loss {result.final_loss:.3f}, accuracy {result.final_accuracy:.2f})"
    )
    return 0
