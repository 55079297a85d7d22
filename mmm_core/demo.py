"""``mmm demo``: a small synthetic dataset, then the method on it, with the results printed."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["configure_parser", "main"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    parser.add_argument("--ids", type=int, default=24, help="synthetic identities")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")


def main(args: argparse.Namespace) -> int:
    from mmm_core.data.inspect import dataset_statistics
    from mmm_core.data.synthetic import generate_sysu

    out = Path(args.out)
    root = out / "data" / "sysu"
    if not root.exists():
        print(f"generating a synthetic SYSU-MM01-layout dataset in {root} ...")
        generate_sysu(root, ids=args.ids, seed=args.seed, preset="tiny")
    stats = dataset_statistics("sysu", root)
    width = max(len(k) for k in stats)
    print(f"dataset {root}:")
    for key, value in stats.items():
        print(f"  {key:<{width}}  {value:>7}")
    return 0
