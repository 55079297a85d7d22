"""``mmm synth``: a synthetic dataset in the SYSU-MM01 or RegDB layout
(`mmm_core.data.synthetic`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmm_cli.errors import UsageError

HELP = "generate a synthetic dataset in SYSU-MM01 or RegDB layout"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from mmm_core.data.synthetic import PRESETS

    parser.add_argument(
        "--format", choices=("sysu", "regdb"), required=True, help="dataset layout to write"
    )
    parser.add_argument("--out", type=Path, required=True, help="dataset root (new or empty)")
    parser.add_argument(
        "--ids",
        type=int,
        default=None,
        help="number of identities (default: the preset's, tiny 24, bench 200)",
    )
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default="tiny",
        help="tiny: 64x32 crops, few images; bench: 128x64, many images",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a dataset already generated in --out"
    )


def main(args: argparse.Namespace) -> int:
    """Generate, then print a short summary. Returns the exit code."""
    from mmm_core.data.synthetic import PRESETS, generate_regdb, generate_sysu

    preset = PRESETS[args.preset]
    ids = preset.default_ids if args.ids is None else args.ids
    generate = generate_sysu if args.format == "sysu" else generate_regdb
    try:
        summary = generate(
            args.out, ids, args.seed, preset, overwrite=args.overwrite, progress=True
        )
    except ValueError as error:  # arguments the generator cannot use (too few ids, ...)
        raise UsageError(str(error)) from None
    for line in summary.lines():
        print(line)
    return 0
