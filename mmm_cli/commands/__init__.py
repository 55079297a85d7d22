"""The ``mmm`` subcommands, one module each.

Every module has ``HELP`` (one line), ``configure_parser(parser)`` and ``main(args) -> int``.
The modules import only the standard library at the top: what a command needs (torch,
`mmm_core`, `pipelines`, kfp) is imported inside its functions, so ``mmm --help`` stays
instant and a missing optional dependency (kfp, mlflow) only affects the commands that use it.
"""

from __future__ import annotations

from types import ModuleType

from mmm_cli.commands import (
    data,
    demo,
    evaluate,
    pretrain,
    rounds,
    run,
    schedule,
    step,
    sweep,
    synth,
    train,
)

__all__ = ["COMMANDS"]

# In the order `mmm --help` lists them.
COMMANDS: dict[str, ModuleType] = {
    "synth": synth,
    "data": data,
    "evaluate": evaluate,
    "train": train,
    "rounds": rounds,
    "run": run,
    "step": step,
    "sweep": sweep,
    "schedule": schedule,
    "pretrain": pretrain,
    "demo": demo,
}
