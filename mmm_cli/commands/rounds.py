"""``mmm rounds``: the per-round curves of one or more runs in one picture.

Options and behaviour: `mmm_core.engine.rounds` (``mmm rounds RUN... --out PNG``).
"""

from __future__ import annotations

import argparse

HELP = "plot the per-round curves of one or more runs"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from mmm_core.engine import rounds

    rounds.configure_parser(parser)


def main(args: argparse.Namespace) -> int:
    from mmm_core.engine import rounds

    return rounds.main(args)
