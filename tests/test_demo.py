"""`mmm demo` end to end in one process on a very small dataset (`make demo` runs the pipeline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmm_cli.main import main


@pytest.mark.slow
def test_demo_in_process_prints_results_and_draws_curves(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--in-process"]
    for change in (
        "data.synthetic.ids=8",
        "train.stage1_rounds=1",
        "train.stage2_rounds=0",
        "train.iters_per_round=1",
        "eval.trials=1",
    ):
        argv += ["--set", change]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "generating a synthetic SYSU-MM01-layout dataset" in printed
    assert "training 1 rounds in one process" in printed
    assert "final model (last round" in printed and "mAP" in printed
    assert f"per-round curves: {out / 'rounds.png'}" in printed
    assert (out / "rounds.png").stat().st_size > 1000
    meta = json.loads((out / "data" / "sysu" / "synthetic.json").read_text())
    assert meta["ids"] == 8 and meta["preset"] == "tiny"
