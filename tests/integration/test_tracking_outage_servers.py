"""A mid-run outage of a real MLflow server: `mmm train` goes on, sends what was held back
when the server is back, and the MLflow run ends FINISHED with every round logged."""

from __future__ import annotations

import importlib.util
import os
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.integration.servers import ServerProcess, free_port, unavailable

pytestmark = pytest.mark.servers


class RestartableMlflow:
    """An MLflow server on one port with its store in `folder`, stopped and started at will."""

    def __init__(self, folder: Path) -> None:
        if importlib.util.find_spec("mlflow") is None:
            unavailable("mlflow is not installed")
        self.folder = folder
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: ServerProcess | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        argv = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
            "--serve-artifacts", "--artifacts-destination", str(self.folder / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        log_path = self.folder / f"mlflow-{self.starts}.log"
        self.process = ServerProcess("MLflow server", argv, log_path, env)

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200

        self.process.wait_until(healthy)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def test_training_survives_an_mlflow_outage(micro_dataset, micro_overrides, tmp_path, caplog):
    from mlflow import MlflowClient

    from mmm_core.config import load_config
    from mmm_core.engine.loop import run_training

    server = RestartableMlflow(tmp_path)
    server.start()
    try:
        cfg = load_config(
            Path(__file__).resolve().parents[2] / "configs" / "synthetic-tiny.yaml",
            [
                f"data.root={micro_dataset}",
                *micro_overrides,
                "train.stage1_rounds=2",
                "train.stage2_rounds=1",
                "tracking.enabled=true",
                f"tracking.uri={server.uri}",
                "tracking.experiment=outage",
            ],
        )
        lines: list[str] = []

        def echo(line: str) -> None:  # called after each round is recorded
            lines.append(line)
            rounds = len(lines) - 1  # the first line is the table header
            if rounds == 1:
                server.stop()  # round 1 ends while the server is away
            elif rounds == 2:
                server.start()  # back before round 2 ends

        out = tmp_path / "run"
        rows = run_training(cfg, out, echo=echo)
        assert [r["round"] for r in rows] == [0, 1, 2]
        assert any("tracking is behind" in r.getMessage() for r in caplog.records)
        assert any("caught up" in r.getMessage() for r in caplog.records)

        run_id = (out / "tracking.json").read_text()
        client = MlflowClient(tracking_uri=server.uri)
        run = client.search_runs([client.get_experiment_by_name("outage").experiment_id])[0]
        assert run.info.run_id in run_id
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "mAP")] == [0, 1, 2]
        evaluations = [a.path for a in client.list_artifacts(run.info.run_id, "evaluation")]
        assert evaluations == [f"evaluation/round-{i:03d}" for i in range(3)]
        assert client.get_registered_model("mmm-vi-reid").name == "mmm-vi-reid"
    finally:
        server.stop()
