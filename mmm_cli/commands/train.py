"""``mmm train``: the whole method in one process (extract, cluster, match, train, evaluate),
with the round table on the terminal."""

from __future__ import annotations

import argparse
import sys
import time

from mmm_core.arguments import add_config_arguments

HELP = "train the method in one process (extract, cluster, match, train, evaluate)"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, help="run folder (metrics, config, checkpoint)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    from mmm_core.config import load_config
    from mmm_core.engine.loop import run_training

    cfg = load_config(args.config, args.overrides)
    started = time.perf_counter()
    rows = run_training(
        cfg,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress and sys.stderr.isatty(),
        echo=print,
    )
    final = next((r for r in reversed(rows) if "rank1" in r), None)
    print(f"finished {len(rows)} rounds in {time.perf_counter() - started:.1f} s -> {args.out}")
    if final is not None:
        print(
            f"final ({'last round'}): R1 {100 * final['rank1']:.2f}  mAP {100 * final['mAP']:.2f}"
            f"  mINP {100 * final['mINP']:.2f}"
        )
    return 0
