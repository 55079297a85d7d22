"""benchmarks.cmc_joint: the joint clusters of a checkpoint, per expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import cmc_joint


@pytest.mark.slow
def test_joint_summary_of_a_trained_run(tmp_path: Path, micro_config, capsys) -> None:
    from mmm_core.engine.loop import run_training

    cfg = micro_config.replace(**{"train.stage2_rounds": 0, "cluster.joint": True})
    run_training(cfg, tmp_path / "run")
    lines = cmc_joint.joint_summary(tmp_path / "run")
    assert [line["expansion"] for line in lines] == ["balanced", "released"]
    for line in lines:
        assert 0 <= line["both_modalities"] <= line["clusters"]
        assert 0.0 <= line["noise"] <= 1.0 and 0.0 < line["largest_share"] <= 1.0
        assert line["largest"] >= line["median_size"]
        if line["both_modalities"]:
            assert 0.0 < line["purity_both"] <= 1.0 and -1.0 <= line["unified_ari"] <= 1.0
        else:
            assert line["unified_ari"] is None and line["in_joint_memory"] == 0.0
    assert cmc_joint.main([str(tmp_path / "missing")]) == 2
    assert "RUN_FOLDER" in capsys.readouterr().err
