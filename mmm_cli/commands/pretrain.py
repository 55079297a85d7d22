"""``mmm pretrain``: a ResNet pretrained on a disjoint synthetic identity set.

Options and behaviour: `mmm_core.engine.pretrain`.
"""

from __future__ import annotations

import argparse

HELP = "pretrain a ResNet on a disjoint synthetic identity set (an ImageNet stand-in)"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from mmm_core.engine import pretrain

    pretrain.configure_parser(parser)


def main(args: argparse.Namespace) -> int:
    from mmm_core.engine import pretrain

    return pretrain.main(args)
