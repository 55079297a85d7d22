"""One rank of the DDP test (launched by torchrun from tests/steps/test_steps.py).

It trains one round exactly as the train step does (`build_network`, DDP wrapper,
`build_trainer`, `train_one_round`) and saves what the rank holds at the end of the round:
its model parameters and its memory banks (taken just before `Trainer.end_round` drops
them), to ``OUT/rank<r>.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from mmm_core.data import Manifest
from mmm_core.engine import distributed
from mmm_core.engine.build import build_network, build_trainer, dataset_root, stage_of_round
from mmm_core.engine.checkpoint import load_checkpoint
from mmm_core.engine.lifecycle import restore_state
from mmm_core.engine.phases import RoundContext, train_one_round
from mmm_core.engine.targets import load_targets
from mmm_core.engine.trainer import Trainer
from mmm_core.steps.common import read_config


def main(config: str, manifest: str, checkpoint: str, targets: str, out: str) -> None:
    distributed.init_from_environment("cpu")
    cfg = read_config(config)
    root = dataset_root(cfg)
    device = torch.device("cpu")
    model = build_network(cfg.replace(**{"model.pretrained": "none"}), device)
    trainer = build_trainer(cfg, DistributedDataParallel(model), device)
    restore_state(trainer, model, load_checkpoint(checkpoint), stage_of_round(cfg, 0))
    banks: dict[str, torch.Tensor] = {}
    end_round = Trainer.end_round

    def keep_banks(self: Trainer) -> None:
        for name in ("visible", "infrared", "joint"):
            bank = getattr(self.memories, name, None)
            if bank is not None:
                banks[name] = bank.vectors.detach().clone()
        end_round(self)

    Trainer.end_round = keep_banks
    ctx = RoundContext(cfg, root, Manifest.read(manifest, root), model, trainer, device)
    losses = train_one_round(ctx, 0, load_targets(targets))
    state = {
        "parameters": {k: v.detach().clone() for k, v in model.named_parameters()},
        "banks": banks,
        "loss": losses["loss"],
        "world_size": losses["world_size"],
    }
    torch.save(state, Path(out) / f"rank{distributed.rank()}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:6])
