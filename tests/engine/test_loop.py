"""The whole method in one process on generated data: metrics, determinism, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmm_core.engine import loop
from mmm_core.engine.checkpoint import load_checkpoint
from mmm_core.engine.loop import run_training
from mmm_core.evaluation.visualize import save_round_curves

DIAGNOSTICS = ("n_clusters_visible", "n_clusters_infrared", "ari_visible", "ari_infrared")


@pytest.mark.slow
def test_metrics_file_determinism_and_resume(
    tmp_path: Path, micro_config, row_keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[Path] = []

    def counting_plot(runs, path):
        drawn.append(Path(path))
        return save_round_curves(runs, path)

    monkeypatch.setattr(loop, "save_round_curves", counting_plot)
    lines: list[str] = []
    rows = run_training(micro_config, tmp_path / "a", echo=lines.append)
    assert drawn == [tmp_path / "a" / "rounds.png"] * 2  # the first round's, the last's
    assert [r["round"] for r in rows] == [0, 1] and [r["stage"] for r in rows] == [1, 2]
    written = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert written == json.loads(json.dumps(rows))
    for row in written:
        assert set(row) >= row_keys, row_keys - set(row)
        assert 0.0 <= row["mAP"] <= 1.0 and 0.0 <= row["rank1"] <= 1.0
    assert "loss_cmc" in written[0] and {"loss_cross", "loss_sca"} <= set(written[1])
    assert written[1]["correspondence_accuracy"] is not None
    assert (tmp_path / "a" / "config.yaml").is_file()
    assert (tmp_path / "a" / "rounds.png").stat().st_size > 1000
    assert lines[0].startswith("round") and len(lines) == 3

    # Same seed -> identical pseudo-labels and metrics on CPU.
    again = run_training(micro_config, tmp_path / "b")
    for first, second in zip(rows, again, strict=True):
        for key in (*DIAGNOSTICS, "rank1", "mAP", "mINP", "loss"):
            assert first[key] == second[key], key

    # One round, then resume for the second: the same rows and the same final weights.
    short = micro_config.replace(**{"train.stage2_rounds": 0})
    run_training(short, tmp_path / "c")
    resumed = run_training(micro_config, tmp_path / "c", resume=True)
    assert [r["round"] for r in resumed] == [0, 1]
    for key in (*DIAGNOSTICS, "rank1", "mAP", "loss"):
        assert resumed[1][key] == rows[1][key], key
    final_a = load_checkpoint(tmp_path / "a" / "checkpoint.pt").model
    final_c = load_checkpoint(tmp_path / "c" / "checkpoint.pt").model
    for name, tensor in final_a.items():
        assert torch.equal(tensor, final_c[name]), name


def test_rounds_plot_is_redrawn_at_most_once_an_interval() -> None:
    interval = loop.PLOT_INTERVAL_S
    assert loop.plot_due(0, 12, None, 5.0)  # the first round's drawing
    assert not loop.plot_due(1, 12, 5.0, 5.0 + interval / 2)
    assert loop.plot_due(2, 12, 5.0, 5.0 + interval)
    assert loop.plot_due(11, 12, 5.0, 5.1)  # the last round's, always
