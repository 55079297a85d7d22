"""``mmm data``: check a dataset folder with the real readers, decode every image, and print
its statistics."""

from __future__ import annotations

import argparse
import sys

from mmm_core.data import DatasetError

HELP = "check a dataset folder (decoding every image) and print its statistics"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from mmm_core.data import FORMATS

    parser.add_argument("--format", choices=FORMATS, required=True, help="dataset layout")
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--trial", type=int, default=1, help="RegDB trial (1..10)")
    parser.add_argument(
        "--no-decode",
        action="store_true",
        help="read the layout and the index files only; do not decode the images",
    )


def main(args: argparse.Namespace) -> int:
    from mmm_core.data.check import run_images, unreadable_images
    from mmm_core.data.inspect import dataset_statistics

    stats = dataset_statistics(args.format, args.root, args.trial)
    width = max(len(k) for k in stats)
    print(f"{args.format} dataset at {args.root}")
    for key, value in stats.items():
        print(f"  {key:<{width}}  {value:>7}")
    if args.no_decode:
        return 0
    paths = run_images(args.format, args.root, args.trial)
    bad = unreadable_images(paths, progress=sys.stderr.isatty(), desc="decode images")
    for path, reason in bad:
        print(f"unreadable: {path}: {reason}")
    if bad:
        raise DatasetError(
            args.root,
            f"{len(bad)} of {len(paths)} images cannot be read (listed above); replace or "
            "delete them (and take deleted ones out of the index files)",
        )
    print(f"  {'images decoded':<{width}}  {len(paths):>7}  (all readable)")
    return 0
