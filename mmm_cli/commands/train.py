"""``mmm train``: the whole method in one process (extract, cluster, match, train, evaluate).

The options and the round table are those of `mmm_core.engine.cli` (in the engine until the
engine is split by role; issue 16).
"""

from __future__ import annotations

import argparse

HELP = "train the method in one process (extract, cluster, match, train, evaluate)"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from mmm_core.engine import cli

    cli.configure_parser(parser)


def main(args: argparse.Namespace) -> int:
    from mmm_core.engine import cli

    return cli.main(args)
