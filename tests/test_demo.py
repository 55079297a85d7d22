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


@pytest.mark.slow
def test_demo_prints_its_result_beside_the_reference_figures(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """--make-reference trains the baseline and the supervised bound of the same config and
    stores them by fingerprint; the demo then prints them beside its own result."""
    from mmm_cli.commands import demo

    monkeypatch.setattr(demo, "REFERENCE", tmp_path / "reference.json")
    changes = [
        "data.synthetic.ids=8",
        "train.stage1_rounds=1",
        "train.stage2_rounds=1",
        "train.iters_per_round=1",
        "eval.trials=1",
    ]
    argv = ["demo", "--out", str(tmp_path / "demo"), "--in-process"]
    for change in changes:
        argv += ["--set", change]
    assert main([*argv, "--make-reference"]) == 0
    stored = json.loads((tmp_path / "reference.json").read_text())
    (entry,) = stored.values()
    assert set(entry) >= {"baseline", "supervised", "chance", "fingerprint", "seed"}
    for name in ("baseline", "supervised", "chance"):
        assert 0 <= entry[name]["mAP"] <= 1 and 0 <= entry[name]["rank1"] <= 1
    baseline_rows = (tmp_path / "demo" / "reference" / "baseline" / "metrics.jsonl").read_text()
    assert [json.loads(line)["stage"] for line in baseline_rows.splitlines()] == [1, 1]
    supervised = (tmp_path / "demo" / "reference" / "supervised" / "config.yaml").read_text()
    assert "supervision: oracle" in supervised
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "supervised upper bound (seed 1)" in printed
    assert f"{100 * entry['supervised']['mAP']:6.2f}" in printed
    assert "chance (random features)" in printed
    # other method settings have no reference
    assert main([*argv, "--set", "loss.lambda_sca=0.25"]) == 0
    assert "no reference figures for these settings" in capsys.readouterr().out
