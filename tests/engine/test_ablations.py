"""Every rung of the ablation ladder runs from the same code by config."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmm_core.config import load_config
from mmm_core.engine.loop import run_training

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LADDER = sorted(p.name for p in (CONFIGS / "ablation").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", LADDER)
def test_ablation_runs(tmp_path: Path, micro_dataset: Path, micro_overrides, name: str) -> None:
    files = [CONFIGS / "synthetic-tiny.yaml", CONFIGS / "ablation" / name]
    has_stage2 = load_config(files).train.stage2_rounds > 0
    cfg = load_config(
        files,
        [
            f"data.root={micro_dataset}",
            *micro_overrides,
            "train.stage1_rounds=1",
            f"train.stage2_rounds={int(has_stage2)}",
            "train.iters_per_round=1",
            "eval.every=0",
            "eval.trials=1",
        ],
    )
    assert cfg.train.supervision == ("oracle" if name == "supervised.yaml" else "pseudo")
    rows = run_training(cfg, tmp_path)
    total = cfg.train.stage1_rounds + cfg.train.stage2_rounds
    assert len(rows) == total and "mAP" in rows[-1]
    stage2 = [r for r in rows if r["stage"] == 2]
    stage1 = [r for r in rows if r["stage"] == 1]
    if name in ("baseline.yaml", "cmc.yaml", "cmc-released.yaml"):
        assert not stage2
        assert all(("loss_cmc" in r) == (name != "baseline.yaml") for r in stage1)
    else:
        assert stage2
        assert all(("loss_sca" in r) == (cfg.loss.lambda_sca > 0) for r in stage2)
        assert all("loss_cross" in r for r in stage2)
