"""``mmm data``: check a dataset folder with the real readers and print its statistics."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmm_core.data import FORMATS, regdb, sysu, train_manifest

__all__ = ["configure_parser", "dataset_statistics", "main"]


def dataset_statistics(format: str, root: str | Path, trial: int = 1) -> dict[str, int]:
    """Counts of the training set and of the test sets, read exactly as training reads them."""
    stats = {f"train_{k}": v for k, v in train_manifest(format, root, trial).summary().items()}
    if format == "sysu":
        query_paths, query_pids, _ = sysu.query_set(root, "all")
        stats["test_query_images"] = len(query_paths)
        stats["test_ids"] = len(set(query_pids.tolist()))
        for mode in sysu.MODES:
            gallery_paths, _, _ = sysu.gallery_set(root, mode, trial=0)
            stats[f"test_gallery_{mode}_single_shot"] = len(gallery_paths)
    else:
        for modality in regdb.MODALITY_NAMES:
            paths, pids = regdb.test_set(root, trial, modality)
            stats[f"test_{modality}_images"] = len(paths)
            stats[f"test_{modality}_ids"] = len(set(pids.tolist()))
    return stats


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, required=True, help="dataset layout")
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--trial", type=int, default=1, help="RegDB trial (1..10)")


def main(args: argparse.Namespace) -> int:
    stats = dataset_statistics(args.format, args.root, args.trial)
    width = max(len(k) for k in stats)
    print(f"{args.format} dataset at {args.root}")
    for key, value in stats.items():
        print(f"  {key:<{width}}  {value:>7}")
    return 0
