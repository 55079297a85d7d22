"""The ``mmm`` entry point: the top-level parser, then one subcommand of `mmm_cli.commands`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from mmm_cli.commands import COMMANDS
from mmm_core.config import ConfigError
from mmm_core.data.manifest import DatasetError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmm",
        description="Multi-Memory Matching for unsupervised visible-infrared person re-ID.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.HELP, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    known, rest = top.parse_known_args(argv)
    if known.command is None:
        top.print_help()
        return 2
    command = COMMANDS[known.command]
    parser = argparse.ArgumentParser(prog=f"mmm {known.command}", description=command.HELP)
    command.configure_parser(parser)
    args = parser.parse_args(rest)
    logging.basicConfig(
        level=logging.DEBUG if known.verbose > 1 else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(command.main(args) or 0)
    except (ConfigError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
