"""benchmarks/accuracy.py: the shared-trunk shortcut equals training from scratch; summaries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from benchmarks import accuracy
from tests.conftest import MICRO_OVERRIDES

KEYS = ("mAP", "rank1", "ari_visible", "ari_infrared", "loss", "n_clusters_visible")


@pytest.fixture
def micro_base(tmp_path: Path, micro_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny config with the micro schedule as the benchmark's SYSU base config."""
    configs = Path(accuracy.__file__).resolve().parents[1] / "configs"
    data = yaml.safe_load((configs / "synthetic-tiny.yaml").read_text())
    for item in MICRO_OVERRIDES:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    base = tmp_path / "micro-base.yaml"
    base.write_text(yaml.safe_dump(data))
    monkeypatch.setitem(accuracy.BASE_CONFIGS, "sysu", base)
    return micro_dataset


@pytest.mark.slow
def test_parallel_units_equal_sequential_ones(micro_base: Path, tmp_path: Path) -> None:
    """--jobs 2: (layout, seed) units in worker processes give the in-process results.

    The base config travels in the plan (workers do not see this process's monkeypatch).
    """
    import os

    import torch

    plan = accuracy.Plan(
        formats=("sysu",), seeds=(1, 2), stage1_rounds=1, stage2_rounds=1, iters_per_round=2,
        pretrained="none", device="cpu", variants=("baseline",),
        base_configs={"sysu": str(accuracy.BASE_CONFIGS["sysu"])},
    )  # fmt: skip
    report = accuracy.run(plan, tmp_path / "parallel", jobs=2)
    assert sorted(report["rows"]["sysu"]) == ["1", "2"]
    tables = (tmp_path / "parallel" / "accuracy.md").read_text()
    # the final metrics, the per-round xmod, the calibration table's header
    assert tables.count("| baseline |") == 3
    assert "SYSU all-search: the calibration re-measured by the ladder" in tables
    assert "| baseline | xmod |" in tables
    data_root = tmp_path / "parallel" / "data" / "bench-sysu-24ids"
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # what each worker used
    try:
        for seed in (1, 2):
            alone = accuracy.run_layout_seed(
                "sysu", seed, plan, data_root, tmp_path / "sequential" / str(seed)
            )
            parallel = report["rows"]["sysu"][str(seed)]["baseline"]
            assert [r["loss"] for r in parallel] == [r["loss"] for r in alone["baseline"]]
            assert [r["mAP"] for r in parallel] == [r["mAP"] for r in alone["baseline"]]
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_branching_from_the_trunk_equals_training_from_scratch(
    micro_base: Path, tmp_path: Path
) -> None:
    plan = accuracy.Plan(
        formats=("sysu",), seeds=(5,), stage1_rounds=1, stage2_rounds=1, iters_per_round=2,
        pretrained="none", device="cpu", variants=("cmc", "mmlm-k1"),
    )  # fmt: skip
    branched = accuracy.run_layout_seed("sysu", 5, plan, micro_base, tmp_path / "bench")
    for variant in ("cmc", "mmlm-k1"):
        cfg = accuracy.variant_config("sysu", variant, 5, plan, micro_base)
        scratch = accuracy._train(cfg, tmp_path / f"scratch-{variant}")
        expected_stages = [1, 1] if variant == "cmc" else [1, 2]
        assert [r["stage"] for r in scratch] == expected_stages
        for a, b in zip(branched[variant], scratch, strict=True):
            for key in (
                "mAP",
                "rank1",
                "ari_visible",
                "ari_infrared",
                "loss",
                "n_clusters_visible",
            ):
                assert a[key] == b[key], (variant, a["round"], key)
    # A rerun reuses finished folders instead of training again.
    again = accuracy.run_layout_seed("sysu", 5, plan, micro_base, tmp_path / "bench")
    assert again == branched


def _rows(mAP: float, ari: float) -> list[dict]:
    row = {"ari_visible": ari, "ari_infrared": ari / 2, "correspondence_accuracy": None}
    row["mAP"] = mAP
    for key, _title in accuracy.SETTINGS["regdb"]:
        for measure in accuracy.MEASURES:
            row[f"{key}/{measure}"] = mAP
    return [{**row, "correspondence_accuracy": 0.5}, row]


def test_summary_means_spreads_and_paired_differences() -> None:
    results = {
        "regdb": {
            1: {"mmm": _rows(0.50, 0.8), "baseline": _rows(0.40, 0.6)},
            2: {"mmm": _rows(0.60, 0.6), "baseline": _rows(0.44, 0.6)},
        }
    }
    summary = accuracy.summarise(results)["regdb"]
    mean, std = summary["mmm"]["regdb/visible->thermal/mAP"]
    assert math.isclose(mean, 0.55) and math.isclose(std, math.sqrt(0.005))
    diff_mean, diff_std = summary["baseline"]["diff/regdb/visible->thermal/mAP"]
    assert math.isclose(diff_mean, -0.13) and math.isclose(diff_std, math.sqrt(0.0018))
    # Correspondence accuracy: the last round that has one.
    assert summary["baseline"]["correspondence_accuracy"] == (0.5, 0.0)
    assert summary["mmm"]["ari_visible"][0] == pytest.approx(0.7)
    table = accuracy.markdown_tables({"regdb": summary}, accuracy.Plan(seeds=(1, 2)))
    assert "| +SCA (MMM) | 55.0 ± 7.1 |" in table
    assert "baseline -13.0 ± 4.2" in table


def test_variant_configs_follow_the_ladder(tmp_path: Path) -> None:
    plan = accuracy.Plan(stage1_rounds=2, stage2_rounds=3, iters_per_round=7)
    configs = {v: accuracy.variant_config("sysu", v, 9, plan, tmp_path) for v in accuracy.VARIANTS}
    for variant, cfg in configs.items():
        assert cfg.seed == 9 and cfg.train.iters_per_round == 7
        assert cfg.train.stage1_rounds + cfg.train.stage2_rounds == 5, variant
    assert not configs["baseline"].cluster.joint and configs["cmc"].cluster.joint
    assert configs["mmlm-k1"].memory.num_memories == 1
    assert configs["mmlm-k4"].loss.lambda_sca == 0 and configs["mmm"].loss.lambda_sca > 0
    assert configs["greedy"].match.assignment == "greedy"
    trunk = accuracy.trunk_config("sysu", 9, plan, tmp_path)
    assert (trunk.train.stage1_rounds, trunk.train.stage2_rounds) == (2, 0)


def test_curves_are_written_when_some_panels_have_no_values(tmp_path: Path) -> None:
    rows = {1: {"mmm": _rows(0.5, 0.8), "baseline": _rows(0.4, 0.6)}}
    rows[1]["baseline"][0]["correspondence_accuracy"] = None  # a panel with no baseline curve
    (path,) = accuracy.plot_curves({"regdb": rows}, tmp_path)
    assert path == tmp_path / "accuracy-regdb.png" and path.stat().st_size > 10_000


def test_jobs_default_to_the_cores_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accuracy.os, "cpu_count", lambda: 8)
    assert accuracy.resolve_jobs(3, 6, "cpu") == 3  # asked for: kept
    assert accuracy.resolve_jobs(0, 6, "cpu") == 6  # one per unit, cores permitting
    assert accuracy.resolve_jobs(0, 12, "cpu") == 8  # one per core
    monkeypatch.setattr(accuracy.os, "cpu_count", lambda: None)
    assert accuracy.resolve_jobs(0, 6, "cpu") == 1


@pytest.mark.parametrize(
    "base", [["sysu"], ["rgbd=configs/synthetic-bench.yaml"], ["sysu=no/such/file.yaml"]]
)
def test_bad_base_configs_are_usage_errors(base: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as error:
        accuracy.main(["--base", *base])
    assert error.value.code == 2
    assert "--base takes sysu=FILE / regdb=FILE" in capsys.readouterr().err


def test_last_quarter_gain_and_the_per_round_diagnostics() -> None:
    key = "regdb/visible->thermal/mAP"
    rows = [{key: 0.1 * r, "correspondence_accuracy": None} for r in range(12)]
    assert accuracy.last_quarter_gain("regdb", rows) == pytest.approx(1.1 - 0.8)  # 11 - 8
    rows[8][key] = None  # round 8 not evaluated
    assert math.isnan(accuracy.last_quarter_gain("regdb", rows))
    assert math.isnan(accuracy.last_quarter_gain("regdb", rows[:1]))

    by_seed = {1: {"mmm": _rows(0.5, 0.8)}, 2: {"mmm": _rows(0.6, 0.8)}}
    by_seed[2]["mmm"][0]["correspondence_accuracy"] = 0.3
    by_seed[1]["mmm"][0]["oracle_match_accuracy"] = 0.25
    table = accuracy.diagnostics_table("regdb", by_seed)
    assert "| +SCA (MMM) | corr. | 40.0 | - |" in table  # (50 + 30) / 2, then no value
    assert "| +SCA (MMM) | xmod | 25.0 | - |" in table  # one seed's value is the mean
    assert "2 seeds" in table


def test_a_finished_run_is_reused_only_for_the_same_config(tmp_path: Path) -> None:
    from mmm_core.config import dump_config

    plan = accuracy.Plan(stage1_rounds=1, stage2_rounds=1)
    cfg = accuracy.variant_config("sysu", "cmc", 3, plan, tmp_path / "data")
    run = tmp_path / "cmc"
    run.mkdir()
    rows = [{"round": 0, "mAP": 0.5}, {"round": 1, "mAP": 0.6}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dump_config(cfg.replace(**{"train.device": "cuda"}), run / "config.yaml")  # same numbers
    assert accuracy._done(run, 2, cfg) is None  # not marked done
    (run / "done").touch()
    assert accuracy._done(run, 2, cfg) == rows
    assert accuracy._done(run, 3, cfg) is None  # another length
    other = cfg.replace(**{"cluster.joint_expansion": "released"})  # another default, say
    assert accuracy._done(run, 2, other) is None


def test_report_trains_nothing_and_names_the_missing_run(tmp_path: Path, capsys) -> None:
    argv = ["--report", "--formats", "regdb", "--seeds", "4", "--pretrained", "none"]
    assert accuracy.main([*argv, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "runs/regdb/seed4/baseline: no finished run of this plan" in error
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()
    assert accuracy.main(["--report", "--out", str(tmp_path)]) == 2  # pretrained "auto"
    assert "no stand-in weights (run without --report)" in capsys.readouterr().err
    bad = ["--report", "--pretrained", "none", "--set", "train.amp=bogus", "--out", str(tmp_path)]
    assert accuracy.main(bad) == 2
    assert "error: --set: 'train.amp': expected one of" in capsys.readouterr().err
    # Without --report a bad setting ends before the stand-in weights are trained.
    for setting, words in (("train.amp=bogus", "expected one of"), ("train.amp", "key.path=value")):
        assert accuracy.main(["--set", setting, "--out", str(tmp_path / "fresh")]) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "fresh").exists()


def test_calibration_table_per_seed() -> None:
    """The calibration re-read from the ladder: ratio against the measured chance, the
    supervised run's last-quarter gain, and MMM - baseline, per seed and as mean ± std."""
    key = "regdb/visible->thermal/mAP"

    def rows(*maps: float) -> list[dict]:
        return [{"round": r, key: m} for r, m in enumerate(maps)]

    by_seed = {
        1: {
            "baseline": rows(0.1, 0.2, 0.3, 0.4),
            "supervised": rows(0.2, 0.4, 0.6, 0.7),
            "mmm": rows(0.1, 0.2, 0.3, 0.45),
        },
        2: {"baseline": rows(0.1, 0.2, 0.3, 0.3), "supervised": rows(0.2, 0.4, 0.5, 0.5)},
    }
    table = accuracy.calibration_table("regdb", by_seed, chance=0.1)
    lines = table.splitlines()
    assert "chance 10.0" in lines[0]
    # seed 1: (40 - 10) / (70 - 10) = 0.50; last quarter: round 3 - round 2 = +10.0
    assert lines[4] == "| 1 | 40.0 | 70.0 | 0.50 | +10.0 | +5.0 |"
    assert lines[5] == "| 2 | 30.0 | 50.0 | 0.50 | +0.0 | - |"
    assert (
        lines[6]
        == "| mean ± std | 35.0 ± 7.1 | 60.0 ± 14.1 | 0.50 ± 0.00 | 5.0 ± 7.1 | 5.0 ± 0.0 |"
    )
