"""``mmm data``: check a dataset folder with the real readers and print its statistics."""

from __future__ import annotations

import argparse

HELP = "check a dataset folder and print its statistics"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from mmm_core.data import FORMATS

    parser.add_argument("--format", choices=FORMATS, required=True, help="dataset layout")
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--trial", type=int, default=1, help="RegDB trial (1..10)")


def main(args: argparse.Namespace) -> int:
    from mmm_core.data.inspect import dataset_statistics

    stats = dataset_statistics(args.format, args.root, args.trial)
    width = max(len(k) for k in stats)
    print(f"{args.format} dataset at {args.root}")
    for key, value in stats.items():
        print(f"  {key:<{width}}  {value:>7}")
    return 0
