"""The one promotion rule (mmm_core.engine.champion), as training's register step applies it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmm_core.engine.champion import first_champion_allowed, judge, should_promote


@pytest.mark.parametrize(
    "new,champion,margin,expected",
    [
        (0.30, None, 0.0, True),
        (0.30, 0.20, 0.0, True),
        (0.20, 0.20, 0.0, False),  # a tie keeps the champion
        (0.25, 0.20, 0.05, False),  # must beat by more than the margin
        (0.15, 0.20, -0.1, True),  # a negative margin accepts a small loss
    ],
)
def test_should_promote(new: float, champion: float | None, margin: float, expected: bool) -> None:
    assert should_promote(new, champion, margin) is expected


def test_judge_gives_the_verdict_and_its_reason() -> None:
    """Training's `decide` and retraining's promote step both word their decision here."""
    better = judge(0.31, 0.25, "3", 0.05)
    assert better.promote and better.champion_version == "3"
    assert better.reason == "mAP 0.3100 > champion v3 0.2500 + 0.05"
    tie = judge(0.25, 0.25, "3")
    assert not tie.promote and "<= champion v3" in tie.reason
    assert (tie.new_score, tie.champion_score) == (0.25, 0.25)


def test_only_a_full_run_founds_the_champion_line(micro_config) -> None:
    full = micro_config
    stage2_only = micro_config.replace(**{"train.stage1_rounds": 0})
    assert first_champion_allowed(full)[0] is True
    allowed, reason = first_champion_allowed(stage2_only)
    assert allowed is False and "promote_without_champion" in reason
    assert first_champion_allowed(stage2_only, allow_first=True)[0] is True


@pytest.mark.slow
def test_register_applies_the_rule(tmp_path: Path, micro_config, monkeypatch) -> None:
    """Two runs registered under one name: the first (a full run, no champion) becomes
    champion; the second is evaluated with the champion in one process and promoted exactly
    when its mAP is higher; a retried register adds no version and no second decision; a
    stage-2-only run under a new name does not found a line."""
    from mlflow import MlflowClient

    from mmm_core.config import dump_config
    from mmm_core.steps import register, start

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact folder ./mlruns lands here
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = micro_config.replace(
        **{
            "tracking.enabled": True,
            "tracking.uri": uri,
            "tracking.model_name": "line",
            "tracking.experiment": "rule",
            "train.device": "cpu",
        }
    )
    client = MlflowClient(uri, registry_uri=uri)

    def registered(name: str, seed: int, *overrides: str) -> tuple[dict, str]:
        folder = tmp_path / f"{name}-{seed}"
        folder.mkdir()
        dump_config(base.replace(**{"tracking.model_name": name, "seed": seed}), folder / "b.yaml")
        paths = [folder / n for n in ("config.yaml", "manifest.tsv", "checkpoint.pt", "h.jsonl")]
        start.run([folder / "b.yaml"], list(overrides), *paths)
        # the untrained network of each seed: different weights, different scores
        return register.run(paths[0], paths[2], paths[3]), str(paths[0])

    def champion(name: str = "line") -> str:
        return str(client.get_model_version_by_alias(name, "champion").version)

    first, _ = registered("line", 1)
    assert first["version"] == "1" and first["champion"] == champion() == "1"
    runs = client.search_runs([client.get_experiment_by_name("rule").experiment_id])
    first_run = next(r for r in runs if r.data.metrics.get("registered_version") == 1.0)
    assert first_run.data.metrics["promotion/promoted"] == 1.0
    assert "promotion/champion_mAP" not in first_run.data.metrics  # nothing to compare with

    second, config = registered("line", 2)
    assert second["version"] == "2"
    runs = client.search_runs([client.get_experiment_by_name("rule").experiment_id])
    run = next(r for r in runs if r.data.metrics.get("registered_version") == 2.0)
    new, old = run.data.metrics["promotion/new_mAP"], run.data.metrics["promotion/champion_mAP"]
    promoted = new > old
    print(f"new {new:.4f} champion {old:.4f} promoted {promoted}")
    assert new != old  # two networks, two scores
    assert run.data.metrics["promotion/promoted"] == float(promoted)
    assert champion() == ("2" if promoted else "1")
    names = {a.path for a in client.list_artifacts(run.info.run_id, "promotion")}
    assert names == {"promotion/new.json", "promotion/champion.json"}

    # A retried register step: the same run, no new version, no second decision.
    again = register.run(
        config, Path(config).with_name("checkpoint.pt"), Path(config).with_name("h.jsonl")
    )
    assert again["version"] == "2"
    assert len(client.search_model_versions("name='line'")) == 2
    history = client.get_metric_history(run.info.run_id, "promotion/promoted")
    assert len(history) == 1

    # A stage-2-only run from initial weights does not become the first champion.
    alone, _ = registered("other", 1, "train.stage1_rounds=0")
    assert alone["version"] == "1" and alone["champion"] == ""


def test_the_champion_checkpoint_of_either_model_layout(tmp_path: Path) -> None:
    from mmm_core.engine.champion import champion_checkpoint

    model = tmp_path / "model"
    (model / "data" / "files").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "data" / "files" / "checkpoint.pt").write_bytes(b"w")
    (model / "data" / "files" / "config.yaml").write_text("seed: 1\n")
    assert champion_checkpoint(model) == model / "data" / "files" / "checkpoint.pt"
    older = tmp_path / "older"  # a version registered before: the file and metadata.json
    older.mkdir()
    (older / "new_checkpoint").write_bytes(b"w")
    (older / "metadata.json").write_text("{}")
    assert champion_checkpoint(older) == older / "new_checkpoint"
    (older / "stray").write_bytes(b"")
    with pytest.raises(ValueError, match="expected one checkpoint file"):
        champion_checkpoint(older)
