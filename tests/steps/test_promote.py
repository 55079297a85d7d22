"""The promote step: the skip path, and promotion against a real registry (the rule itself:
tests/engine/test_champion.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmm_core.steps import ingest, promote
from mmm_core.steps.ingest import Decision, read_state


def _decision(tmp_path: Path, train: bool) -> Path:
    path = tmp_path / "decision.json"
    Decision(
        train=train,
        reason="only 1 new or changed images < min_new_images 5",
        new_images=1,
        changed_images=0,
        removed_images=0,
        total_images=10,
        min_new_images=5,
        source=str(tmp_path),
        state_uri=str(tmp_path / "state.json"),
        model_name="m",
        rounds=1,
    ).write(path)
    return path


def test_skipped_run_reports_and_commits_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    result = promote.run(
        empty,
        _decision(tmp_path, train=False),
        empty,
        empty,
        empty,
        empty,
        tmp_path / "result.json",
    )
    assert result["trained"] == 0 and result["promoted"] == 0 and result["new_images"] == 1
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert not (tmp_path / "state.json").exists()


def test_step_cli_promote(tmp_path: Path, capsys) -> None:
    from mmm_cli.main import main

    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    argv = ["step", "promote", "--decision", str(_decision(tmp_path, train=False))]
    for flag in ("config", "snapshot", "initial-checkpoint", "checkpoint", "history"):
        argv += [f"--{flag}", str(empty)]
    argv += ["--out-result", str(tmp_path / "r.json"), "--min-improvement", "0.01"]
    argv += ["--out-metrics", str(tmp_path / "m.json")]
    assert main(argv) == 0
    assert "trained: 0" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["promoted"] == 0


class Retraining:
    """Ingest + promote against one SQLite MLflow store; the "new model" is the warm start."""

    def __init__(self, folder: Path, base_config: Path, uri: str) -> None:
        self.folder, self.base, self.uri = folder, base_config, uri
        self.state_uri = str(folder / "state.json")
        self.count = 0

    def ingest(self, min_new_images: int = 0) -> dict[str, Path]:
        self.count += 1
        out = self.folder / f"run{self.count}"
        out.mkdir()
        paths = {
            n: out / n for n in ("decision", "snapshot", "config", "manifest", "init", "history")
        }
        ingest.run([self.base], [], 1, min_new_images, self.state_uri, *paths.values())
        return paths

    def promote(
        self, paths: dict[str, Path], min_improvement: float = 0.0, allow_first: bool = False
    ) -> dict:
        p = paths
        return promote.run(
            p["config"],
            p["decision"],
            p["snapshot"],
            p["init"],
            p["init"],  # no training: the new model has the warm start's weights
            p["history"],
            p["decision"].parent / "result.json",
            min_improvement=min_improvement,
            allow_first=allow_first,
        )


@pytest.mark.slow
def test_promotion_against_a_registry(tmp_path: Path, micro_config, monkeypatch) -> None:
    from mlflow import MlflowClient

    from mmm_core.config import dump_config

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact folder ./mlruns lands here
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = micro_config.replace(
        **{"tracking.uri": uri, "tracking.model_name": "tiny", "tracking.experiment": "rt"}
    )
    dump_config(cfg, tmp_path / "base.yaml")
    client = MlflowClient(uri, registry_uri=uri)
    retraining = Retraining(tmp_path, tmp_path / "base.yaml", uri)

    def champion() -> str:
        return str(client.get_model_version_by_alias("tiny", "champion").version)

    # 1. No champion: a retraining (stage-2-only, from initial weights) is registered but
    #    does not become the first champion; its images are consumed all the same.
    first = retraining.ingest(min_new_images=1)
    result = retraining.promote(first)
    assert result["promoted"] == 0 and result["champion_mAP"] is None
    assert "promote_without_champion" in result["reason"] and result["version"] == "1"
    assert set(client.get_registered_model("tiny").aliases) == {"candidate"}  # no champion
    snapshot = json.loads(first["snapshot"].read_text())
    state = read_state(retraining.state_uri)
    assert state["images"] == snapshot["images"] and state["model_version"] == "1"

    # 1b. Asked for (promote_without_champion), it founds the line; the snapshot is the state.
    founding = retraining.ingest(min_new_images=0)
    result = retraining.promote(founding, allow_first=True)
    assert result["promoted"] == 1 and result["champion_mAP"] is None
    assert result["version"] == champion() == "2"
    run = client.get_run(Decision.read(founding["decision"]).run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["retrain/promoted"] == 1.0
    assert run.data.metrics["retrain/new_mAP"] == pytest.approx(result["new_mAP"])
    assert run.data.params["retrain.decision"] == "promoted"
    # A retried step registers nothing new.
    again = retraining.promote(founding, allow_first=True)
    assert again["version"] == "2" and again["promoted"] == 1
    assert len(client.search_model_versions("name='tiny'")) == 2

    # 2. Nothing new (0 forces the run); the new model has the champion's weights: both are
    #    evaluated on the same protocol, so the scores are equal and the tie keeps v1.
    second = retraining.ingest(min_new_images=0)
    assert Decision.read(second["decision"]).new_images == 0
    result = retraining.promote(second)
    assert result["champion_mAP"] == result["new_mAP"]
    assert result["new_mAP"] == pytest.approx(again["new_mAP"])  # the same model, re-evaluated
    assert result["promoted"] == 0 and result["version"] == "3" and champion() == "2"
    assert str(client.get_model_version_by_alias("tiny", "candidate").version) == "3"
    metrics = client.get_run(Decision.read(second["decision"]).run_id).data.metrics
    assert metrics["retrain/champion_mAP"] == metrics["retrain/new_mAP"]

    # 3. A margin that accepts the tie promotes.
    third = retraining.ingest()
    result = retraining.promote(third, min_improvement=-1.0)
    assert result["promoted"] == 1 and champion() == result["version"] == "4"

    # 4. The champion moved while the run went on: no promotion, whatever the scores.
    fourth = retraining.ingest()
    client.set_registered_model_alias("tiny", "champion", "1")
    result = retraining.promote(fourth, min_improvement=-1.0)
    assert result["promoted"] == 0 and "moved" in result["reason"] and champion() == "1"
    assert read_state(retraining.state_uri)["model_version"] == "5"  # consumed all the same
