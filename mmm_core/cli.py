"""The ``mmm`` command.

Each subcommand lives in a module exposing ``configure_parser(parser)`` and ``main(args) -> int``;
the modules are imported only when their subcommand runs, so ``mmm --help`` stays instant
and a broken optional dependency only affects the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from mmm_core.config import ConfigError
from mmm_core.data.manifest import DatasetError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": (
        "mmm_core.data.synthetic",
        "generate a synthetic dataset in SYSU-MM01 or RegDB layout",
    ),
    "data": ("mmm_core.data.inspect", "check a dataset folder and print its statistics"),
    "evaluate": ("mmm_core.evaluation.cli", "evaluate saved features or a checkpoint"),
    "train": (
        "mmm_core.engine.cli",
        "train the method in one process (extract, cluster, match, train, evaluate)",
    ),
    "rounds": ("mmm_core.engine.rounds", "plot the per-round curves of one or more runs"),
    "run": ("pipelines.local", "run the KFP training pipeline locally (no cluster, no servers)"),
    "step": ("mmm_core.steps.cli", "run one pipeline step over files"),
    "sweep": ("mmm_core.sweep", "run a hyperparameter grid as parallel pipeline runs"),
    "schedule": ("pipelines.schedule", "create a KFP recurring run of the retraining pipeline"),
    "pretrain": (
        "mmm_core.engine.pretrain",
        "pretrain a ResNet on a disjoint synthetic identity set (an ImageNet stand-in)",
    ),
    "demo": ("mmm_core.demo", "set up a small synthetic dataset and run the method on it"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmm",
        description="Multi-Memory Matching for unsupervised visible-infrared person re-ID.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    known, rest = top.parse_known_args(argv)
    if known.command is None:
        top.print_help()
        return 2
    module_name, help_text = COMMANDS[known.command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"mmm {known.command}", description=help_text)
    module.configure_parser(parser)
    args = parser.parse_args(rest)
    logging.basicConfig(
        level=logging.DEBUG if known.verbose > 1 else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(module.main(args) or 0)
    except (ConfigError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
