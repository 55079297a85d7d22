"""The real pipeline function, run end to end by kfp.local.SubprocessRunner on a tiny dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmm_core.engine.targets import load_targets


@pytest.fixture(scope="module")
def pipeline_run(micro_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """One tiny pipeline run through kfp.local (width 16, tracking on), shared by the tests of
    this module: (config, its folder, its rows, the lines it printed)."""
    from mmm_core.config import load_config
    from pipelines.local import run_local
    from tests.conftest import MICRO_OVERRIDES

    configs = Path(__file__).resolve().parents[2] / "configs"
    settings = [f"data.root={micro_dataset}", *MICRO_OVERRIDES, "model.width=16"]
    cfg = load_config(configs / "synthetic-tiny.yaml", settings).replace(
        **{"tracking.enabled": True, "tracking.model_name": "tiny"}
    )
    folder = tmp_path_factory.mktemp("pipeline") / "run"
    printed: list[str] = []
    rows = run_local(cfg, folder, echo=printed.append)
    return cfg, folder, rows, printed


@pytest.mark.slow
def test_tiny_pipeline_runs_locally(pipeline_run, row_keys) -> None:
    cfg, folder, rows, printed = pipeline_run
    tmp_path = folder.parent
    assert [r["round"] for r in rows] == [0, 1] and [r["stage"] for r in rows] == [1, 2]
    for row in rows:
        assert set(row) >= row_keys | {"time_extract", "time_cluster", "time_match"}
        assert 0 <= row["mAP"] <= 1
    history = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in history] == rows
    # Artifacts follow their contracts: features per modality, targets of each stage.
    root = tmp_path / "run" / "pipeline_root"
    features = sorted(root.glob("*/*/features"))
    assert len(features) == 2
    with np.load(features[0]) as data:
        assert set(data.files) == {"visible", "infrared"}
        assert data["visible"].dtype == np.float32 and data["visible"].shape[1] == 128
    stages = sorted(load_targets(p).stage for p in root.glob("*/*/targets"))
    assert stages == [1, 2]
    assert (tmp_path / "run" / "pipeline.log").stat().st_size > 0

    # MLflow (embedded SQLite store in the run folder): one run, metrics per round, the model.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == cfg.tracking.experiment]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["loss.lambda_sca"] == str(cfg.loss.lambda_sca)
    history = client.get_metric_history(run.info.run_id, "mAP")
    assert [m.step for m in history] == [0, 1]
    assert history[-1].value == pytest.approx(rows[-1]["mAP"])
    version = client.get_model_version_by_alias("tiny", "candidate")
    assert version.run_id == run.info.run_id
    assert printed[0].startswith("round") and len(printed) == 3


@pytest.mark.slow
def test_mmm_train_and_mmm_run_write_identical_rows(tmp_path: Path, pipeline_run) -> None:
    """The in-process loop (`mmm train`) and the pipeline's steps over files (`mmm run`) are
    one method: on the same config and seed their metrics rows are equal, timings aside
    (and whether a tracking server is told: the pipeline run tracks, this one does not)."""
    from mmm_core.engine.loop import run_training

    cfg, _, pipeline, _ = pipeline_run
    in_process = run_training(cfg.replace(**{"tracking.enabled": False}), tmp_path / "train")

    def comparable(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if not k.startswith("time_")} for r in rows]

    assert [r["stage"] for r in in_process] == [1, 2]
    assert comparable(pipeline) == comparable(in_process)
