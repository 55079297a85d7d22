"""Command-line options shared by the ``mmm`` subcommands (argparse only; no other imports)."""

from __future__ import annotations

import argparse

__all__ = ["add_config_arguments"]

CONFIG_HELP = "config file; repeat to compose (later files win)"
SET_HELP = "override one field, e.g. --set cluster.eps=0.5 (repeatable)"


def add_config_arguments(
    parser: argparse.ArgumentParser,
    *,
    config: bool = True,
    config_help: str = CONFIG_HELP,
    set_help: str = SET_HELP,
) -> None:
    """``--config YAML`` (repeatable, composed in order; left out with ``config=False``) and
    ``--set key.path=value`` (repeatable), parsed into ``args.config`` and ``args.overrides``
    (lists of str, empty by default), the arguments of `mmm_core.config.load_config`."""
    if config:
        parser.add_argument(
            "--config", action="append", default=[], metavar="YAML", help=config_help
        )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=set_help,
    )
