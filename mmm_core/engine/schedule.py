"""A run's schedule: the stage each round belongs to and the seed of each purpose.

Pure functions of the config, importable without torch (the cluster step needs them).
"""

from __future__ import annotations

import numpy as np

from mmm_core.config import Config

__all__ = ["derive_seed", "stage_of_round"]


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed for one purpose (round, stream, rank) derived from the run seed."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0] & 0x7FFFFFFF)


def stage_of_round(cfg: Config, round_index: int) -> int:
    return 1 if round_index < cfg.train.stage1_rounds else 2
