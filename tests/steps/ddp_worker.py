"""The train step as one process of the DDP equality test (tests/steps/test_steps.py).

Runs `mmm_core.steps.train.run` (under torchrun or alone) and saves, per rank, to
``OUT/<tag>-rank<r>.pt``: the rank's trained parameters and memory banks at the end of the
round (taken just before `Trainer.end_round` drops them), with the round's losses; rank 0
also writes the step's checkpoint, ``OUT/<tag>.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from mmm_core.engine import distributed
from mmm_core.engine.trainer import Trainer
from mmm_core.steps import train


def main(config: str, manifest: str, checkpoint: str, targets: str, out: str, tag: str) -> None:
    banks: dict[str, torch.Tensor] = {}
    parameters: dict[str, torch.Tensor] = {}
    end_round = Trainer.end_round

    def keep_banks(self: Trainer) -> None:
        for name, value in self.model.named_parameters():
            parameters[name.removeprefix("module.")] = value.detach().clone()
        for name in ("visible", "infrared", "joint"):
            bank = getattr(self.memories, name, None)
            if bank is not None:
                banks[name] = bank.vectors.detach().clone()
        end_round(self)

    Trainer.end_round = keep_banks  # type: ignore[method-assign]
    try:
        losses = train.run(config, manifest, checkpoint, targets, 0, Path(out) / f"{tag}.pt")
        rank = distributed.rank()
    finally:
        distributed.shutdown()
    state = {
        "parameters": parameters,
        "banks": banks,
        "loss": losses["loss"],
        "world_size": losses["world_size"],
    }
    torch.save(state, Path(out) / f"{tag}-rank{rank}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:7])
