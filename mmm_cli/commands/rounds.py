"""``mmm rounds``: the per-round curves of one or more runs in one picture.

Reads ``RUN/metrics.jsonl`` of each run (as written by ``mmm train``) and draws pseudo-label
ARI, cross-modality accuracies and test R1 / mAP per round (`visualize.save_round_curves`);
``mmm train`` already redraws ``RUN/rounds.png`` for its own run after every round.

Usage::

    mmm rounds runs/seed1 runs/seed2 --out runs/compare.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmm_cli.errors import UsageError

HELP = "plot the per-round curves of one or more runs"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders or metrics.jsonl files")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        help="legend name per run, in order (default: the run folder's name)",
    )


def main(args: argparse.Namespace) -> int:
    from mmm_core.engine.lifecycle import read_rows
    from mmm_core.evaluation.visualize import save_round_curves

    if args.label and len(args.label) != len(args.runs):
        raise UsageError(f"{len(args.label)} --label for {len(args.runs)} runs")
    runs = {}
    for index, run in enumerate(args.runs):
        path = Path(run)
        name = args.label[index] if args.label else (path.parent if path.is_file() else path).name
        if name in runs:
            name = f"{name} ({index + 1})"
        runs[name] = read_rows(path)
    out = save_round_curves(runs, args.out)
    print(f"wrote {out} ({len(runs)} run(s))")
    return 0
