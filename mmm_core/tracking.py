"""Experiment tracking through MLflow, or nothing at all when tracking is off.

`make_tracker(enabled, uri, experiment, run_dir)` returns an `MlflowTracker` or a
`NullTracker`; both have the same methods, so callers never test whether tracking is on.

In the pipeline every step is a separate process: the start step calls
``tracker.start(run_name, params, tags)`` and hands the run id on; each later step builds its
own tracker and calls ``tracker.resume(run_id)`` before logging. The register step logs the
final checkpoint with ``log_model`` and adds it to the model registry with
``register_model(name, alias="champion")``.

Only the MLflow *client* API is used (`mlflow.MlflowClient`), never the fluent, process-global
``mlflow.start_run``: a tracker holds its own run id. `mlflow` is imported lazily, so the
package imports without it. Environment: ``MLFLOW_TRACKING_URI`` (used when the configured URI
is empty); the MLflow client itself reads ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` and, when
the artifact store is accessed directly rather than through the server,
``MLFLOW_S3_ENDPOINT_URL`` and ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import numbers
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "BufferedTracker",
    "MlflowTracker",
    "NullTracker",
    "RegisteredVersion",
    "Tracker",
    "TrackingError",
    "bounded_retries",
    "check_server",
    "finite_metrics",
    "flatten_params",
    "local_store_uri",
    "make_tracker",
    "metric_key",
    "resolve_tracking_uri",
]

log = logging.getLogger(__name__)

# MLflow's limits (mlflow.utils.validation), copied so this module imports without mlflow.
MAX_PARAM_VALUE_LENGTH = 6000
MAX_KEY_LENGTH = 250
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
TRUNCATION_MARK = "...[truncated]"
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
_INVALID_KEY_CHARACTERS = re.compile(r"[^/\w.\- ]")


class TrackingError(RuntimeError):
    """The tracking server or store refused or could not serve a request."""


@dataclasses.dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered model: where its files are and which run produced it."""

    name: str
    version: str
    run_id: str
    source: str


# --------------------------------------------------------------------------- pure helpers


def metric_key(key: str) -> str:
    """A key MLflow accepts for a param or metric: ``regdb/visible->thermal/R1`` becomes
    ``regdb/visible_to_thermal/R1``; other characters outside ``[/\\w.\\- ]`` become ``_``."""
    cleaned = _INVALID_KEY_CHARACTERS.sub("_", str(key).replace("->", "_to_"))
    cleaned = re.sub(r"/+", "/", cleaned).strip("/")
    cleaned = "/".join("_" if part in (".", "..") else part for part in cleaned.split("/"))
    return (cleaned or "_")[:MAX_KEY_LENGTH]


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list | tuple):
        text = json.dumps([_plain(v) for v in value])
    elif isinstance(value, Path):
        text = str(value)
    else:
        text = str(_plain(value))
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        text = text[: MAX_PARAM_VALUE_LENGTH - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    return text


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # NumPy / torch scalars
        with contextlib.suppress(TypeError, ValueError):
            return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def flatten_params(params: Mapping[str, Any] | Any, prefix: str = "") -> dict[str, str]:
    """A nested config (mapping or dataclass) as ``{"a.b.c": "value"}`` strings.

    Lists become JSON text; values longer than MLflow's limit (6000 characters) are cut and
    end with ``...[truncated]``; keys are cleaned by `metric_key`.
    """
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        params = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping or a dataclass, got {type(params).__name__}")
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        is_nested = isinstance(value, Mapping) or (
            dataclasses.is_dataclass(value) and not isinstance(value, type)
        )
        if is_nested:
            flat.update(flatten_params(value, name))
        else:
            flat[metric_key(name)] = _param_value(value)
    return flat


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric, finite entries of `metrics` with cleaned keys (None, NaN, inf, text dropped)."""
    kept: dict[str, float] = {}
    for key, value in metrics.items():
        value = _plain(value)
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, numbers.Real):
            continue
        value = float(value)
        if math.isfinite(value):
            kept[metric_key(key)] = value
    return kept


# --------------------------------------------------------------------------- the interface


@runtime_checkable
class Tracker(Protocol):
    """What the steps call; `MlflowTracker` and `NullTracker` implement it."""

    @property
    def enabled(self) -> bool: ...

    @property
    def run_id(self) -> str | None: ...

    def start(
        self,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str: ...

    def resume(self, run_id: str) -> str: ...

    def find_run(self, tags: Mapping[str, str]) -> str | None: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None: ...

    def log_artifact(
        self, path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None: ...

    def log_model(
        self,
        checkpoint_path: str | os.PathLike[str],
        name: str = "model",
        *,
        metadata: Mapping[str, Any] | None = None,
        config_path: str | os.PathLike[str] | None = None,
    ) -> str: ...

    def register_model(
        self,
        name: str,
        alias: str | None = None,
        *,
        artifact_path: str = "model",
        tags: Mapping[str, str] | None = None,
    ) -> str: ...

    def set_alias(self, name: str, alias: str, version: str) -> None: ...

    def get_alias_version(self, name: str, alias: str) -> RegisteredVersion | None: ...

    def get_run_metrics(self, run_id: str | None = None) -> dict[str, float]: ...

    def download_model(self, name: str, alias: str, dst_dir: str | os.PathLike[str]) -> Path: ...

    def end(self, status: str = "FINISHED") -> None: ...


class NullTracker:
    """Tracking off: every method accepts its arguments and does nothing."""

    enabled = False

    def __init__(self) -> None:
        self._run_id: str | None = None

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def start(
        self,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        return ""

    def resume(self, run_id: str) -> str:
        self._run_id = run_id or None
        return run_id

    def find_run(self, tags: Mapping[str, str]) -> str | None:
        return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        return None

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        return None

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        return None

    def log_model(
        self,
        checkpoint_path: str | os.PathLike[str],
        name: str = "model",
        *,
        metadata: Mapping[str, Any] | None = None,
        config_path: str | os.PathLike[str] | None = None,
    ) -> str:
        return ""

    def register_model(
        self,
        name: str,
        alias: str | None = None,
        *,
        artifact_path: str = "model",
        tags: Mapping[str, str] | None = None,
    ) -> str:
        return ""

    def set_alias(self, name: str, alias: str, version: str) -> None:
        return None

    def get_alias_version(self, name: str, alias: str) -> RegisteredVersion | None:
        return None

    def get_run_metrics(self, run_id: str | None = None) -> dict[str, float]:
        return {}

    def download_model(self, name: str, alias: str, dst_dir: str | os.PathLike[str]) -> Path:
        raise TrackingError(
            f"tracking is off: cannot download model {name!r}@{alias} from a registry"
        )

    def end(self, status: str = "FINISHED") -> None:
        return None


# --------------------------------------------------------------------------- MLflow


def check_server(uri: str, timeout: float = 5.0) -> None:
    """GET ``<uri>/health`` once, without retries; raise TrackingError naming `uri` if it fails.

    Only for ``http(s)://`` URIs; other stores (SQLite, folders) are not servers.
    """
    if not uri.lower().startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"MLflow tracking server {uri} is not reachable: {reason}") from None
    if status != 200:
        raise TrackingError(f"MLflow tracking server {uri} answered {status} to GET /health")


# MLflow's client retries a failed request 7 times with a backoff factor of 2 and a 120 s
# timeout: about 4 min of stall per request when the server is gone. These bounds make a
# failed request give up after about 30 s at most (3 s when the port is closed); a user's own
# MLFLOW_HTTP_REQUEST_* variables are kept.
BOUNDED_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "8",
}


def bounded_retries() -> None:
    """Set `BOUNDED_RETRIES` in this process's environment where the user has not."""
    for name, value in BOUNDED_RETRIES.items():
        os.environ.setdefault(name, value)


class MlflowTracker:
    """Logs to one MLflow run of `experiment` at tracking URI `uri`.

    `artifact_location` is used only when the experiment is created here (a local store needs
    one; a server has its own default). `health_timeout` bounds the reachability check made
    before the first request to an ``http(s)://`` server.
    """

    enabled = True

    def __init__(
        self,
        uri: str,
        experiment: str,
        *,
        artifact_location: str | None = None,
        health_timeout: float = 5.0,
    ) -> None:
        if not uri:
            raise ValueError("an MLflow tracking URI is needed")
        if not experiment:
            raise ValueError("an MLflow experiment name is needed")
        self.uri = uri
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.health_timeout = health_timeout
        self._client: MlflowClient | None = None
        self._run_id: str | None = None

    # -- plumbing

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def _connect(self) -> MlflowClient:
        if self._client is None:
            bounded_retries()
            check_server(self.uri, self.health_timeout)
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[MlflowClient]:
        """The client, with MLflow and network failures raised as TrackingError."""
        client = self._connect()
        from mlflow.exceptions import MlflowException

        try:
            yield client
        except MlflowException as exc:
            raise TrackingError(f"MLflow at {self.uri}: {action} failed: {exc.message}") from None
        except (OSError, ConnectionError) as exc:
            raise TrackingError(f"MLflow at {self.uri}: {action} failed: {exc}") from None

    def _require_run(self) -> str:
        if self._run_id is None:
            raise TrackingError("no active run: call start() or resume(run_id) first")
        return self._run_id

    def _experiment_id(self, client: MlflowClient) -> str:
        from mlflow.exceptions import MlflowException

        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is None:
            try:
                return client.create_experiment(
                    self.experiment, artifact_location=self.artifact_location
                )
            except MlflowException:  # created meanwhile by a parallel step
                experiment = client.get_experiment_by_name(self.experiment)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage != "active":
            raise TrackingError(
                f"MLflow experiment {self.experiment!r} at {self.uri} is deleted: restore it "
                "or pick another name"
            )
        return experiment.experiment_id

    # -- runs

    def start(
        self,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create a run (status RUNNING), log `params` flattened, return its id."""
        with self._errors(f"creating a run in experiment {self.experiment!r}") as client:
            experiment_id = self._experiment_id(client)
            run = client.create_run(
                experiment_id,
                run_name=run_name,
                tags={str(k): str(v) for k, v in (tags or {}).items()},
            )
        self._run_id = run.info.run_id
        if params:
            self.log_params(params)
        log.info(
            "MLflow run %s (%s) in %s at %s", run_name, self._run_id, self.experiment, self.uri
        )
        return self._run_id

    def resume(self, run_id: str) -> str:
        """Log to the existing run `run_id` (made by another process); it is set RUNNING."""
        if not run_id:
            raise TrackingError("resume() needs a run id")
        with self._errors(f"resuming run {run_id}") as client:
            run = client.get_run(run_id)
            if run.info.status != "RUNNING":
                client.update_run(run_id, status="RUNNING")
        self._run_id = run.info.run_id
        return self._run_id

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED."""
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, got {status!r}")
        run_id = self._require_run()
        with self._errors(f"ending run {run_id}") as client:
            client.set_terminated(run_id, status=status)

    # -- values

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log a (nested) mapping or dataclass flattened with dotted keys, as strings."""
        run_id = self._require_run()
        from mlflow.entities import Param

        items = sorted(flatten_params(params).items())
        with self._errors(f"logging params to run {run_id}") as client:
            for first in range(0, len(items), PARAMS_PER_BATCH):
                chunk = items[first : first + PARAMS_PER_BATCH]
                client.log_batch(run_id, params=[Param(k, v) for k, v in chunk])

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log the finite numbers of `metrics` at `step`; None, NaN and text are skipped."""
        run_id = self._require_run()
        from mlflow.entities import Metric

        kept = sorted(finite_metrics(metrics).items())
        if not kept:
            return
        timestamp = int(time.time() * 1000)
        with self._errors(f"logging metrics to run {run_id}") as client:
            for first in range(0, len(kept), METRICS_PER_BATCH):
                chunk = kept[first : first + METRICS_PER_BATCH]
                client.log_batch(
                    run_id, metrics=[Metric(k, v, timestamp, int(step)) for k, v in chunk]
                )

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Upload a file, or a folder's content, under `artifact_path` of the run."""
        run_id = self._require_run()
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no artifact to log at {path}")
        with self._errors(f"logging artifact {path.name} to run {run_id}") as client:
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path)
            else:
                client.log_artifact(run_id, str(path), artifact_path)

    def get_run_metrics(self, run_id: str | None = None) -> dict[str, float]:
        """The latest value of every metric of `run_id` (default: this tracker's run)."""
        run_id = run_id or self._require_run()
        with self._errors(f"reading run {run_id}") as client:
            return dict(client.get_run(run_id).data.metrics)

    def find_run(self, tags: Mapping[str, str]) -> str | None:
        """The id of the experiment's earliest run that carries every one of `tags`, or None
        (how a retried pipeline step finds the run its first attempt made)."""
        if not tags:
            raise TrackingError("find_run() needs at least one tag")
        query = " and ".join(
            f"tags.`{key}` = '{str(value).replace(chr(39), chr(39) * 2)}'"
            for key, value in sorted(tags.items())
        )
        with self._errors(f"searching experiment {self.experiment!r}") as client:
            runs = client.search_runs(
                [self._experiment_id(client)],
                filter_string=query,
                order_by=["attributes.start_time ASC"],
                max_results=1,
            )
        return runs[0].info.run_id if runs else None

    def get_run_status(self, run_id: str | None = None) -> str:
        """The status of `run_id` (default: this tracker's run): RUNNING, FINISHED, FAILED, ..."""
        run_id = run_id or self._require_run()
        with self._errors(f"reading run {run_id}") as client:
            return str(client.get_run(run_id).info.status)

    # -- models

    def log_model(
        self,
        checkpoint_path: str | os.PathLike[str],
        name: str = "model",
        *,
        metadata: Mapping[str, Any] | None = None,
        config_path: str | os.PathLike[str] | None = None,
    ) -> str:
        """Log the checkpoint as an MLflow Model in artifact folder `name` of the run; return
        its ``runs:/<run id>/<name>`` URI.

        A pyfunc model served by `mmm_core.serving` (``loader_module``): ``data/files/`` holds
        the checkpoint as ``checkpoint.pt`` and the config as ``config.yaml`` (needed to load
        it); ``MLmodel`` holds the `metadata` and, when it names ``feature_dim``, the
        signature: columns ``image`` (binary) and ``modality`` (string) in,
        ``(-1, feature_dim)`` float32 out.
        """
        checkpoint_path = Path(checkpoint_path)
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"no checkpoint to log at {checkpoint_path}")
        run_id = self._require_run()
        with tempfile.TemporaryDirectory() as folder:
            data = Path(folder) / "files"
            data.mkdir()
            # a hard link where the file system allows: checkpoints are large
            try:
                os.link(checkpoint_path, data / "checkpoint.pt")
            except OSError:
                shutil.copyfile(checkpoint_path, data / "checkpoint.pt")
            if config_path is not None:
                shutil.copyfile(config_path, data / "config.yaml")
            model_dir = Path(folder) / name
            _save_pyfunc(model_dir, data, dict(metadata or {}))
            with self._errors(f"logging model {name!r}") as client:
                client.log_artifacts(run_id, str(model_dir), name)
        return f"runs:/{run_id}/{name}"

    def register_model(
        self,
        name: str,
        alias: str | None = None,
        *,
        artifact_path: str = "model",
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Add artifact folder `artifact_path` of the run (see `log_model`) to the registry as
        a new version of `name` (created if missing); point `alias` at it when given.

        Returns the new version number (a string, as MLflow gives it).
        """
        from mlflow.exceptions import MlflowException

        run_id = self._require_run()
        with self._errors(f"registering model {name!r} from run {run_id}") as client:
            if not client.list_artifacts(run_id, artifact_path):
                raise TrackingError(
                    f"run {run_id} has no artifacts under {artifact_path!r}: call log_model first"
                )
            try:
                client.create_registered_model(name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
            version = client.create_model_version(
                name,
                source=source,
                run_id=run_id,
                tags={str(k): str(v) for k, v in (tags or {}).items()},
            )
        if alias:
            self.set_alias(name, alias, version.version)
        log.info("registered %s version %s from run %s", name, version.version, run_id)
        return str(version.version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` (e.g. ``champion``) of registered model `name` at `version`."""
        with self._errors(f"setting alias {alias!r} of model {name!r}") as client:
            client.set_registered_model_alias(name, alias, str(version))

    def get_alias_version(self, name: str, alias: str) -> RegisteredVersion | None:
        """The version `alias` points at, or None when the model or the alias does not exist."""
        from mlflow.exceptions import MlflowException

        with self._errors(f"reading alias {alias!r} of model {name!r}") as client:
            try:
                version = client.get_model_version_by_alias(name, alias)
            except MlflowException as exc:
                if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    return None
                raise
        return RegisteredVersion(
            name=name,
            version=str(version.version),
            run_id=version.run_id or "",
            source=version.source or "",
        )

    def download_model(self, name: str, alias: str, dst_dir: str | os.PathLike[str]) -> Path:
        """Download the files of the version `alias` points at into `dst_dir`; return the
        folder holding them (the checkpoint and ``metadata.json`` when logged)."""
        found = self.get_alias_version(name, alias)
        if found is None:
            raise TrackingError(f"model {name!r} has no alias {alias!r} at {self.uri}")
        dst = Path(dst_dir)
        dst.mkdir(parents=True, exist_ok=True)
        with self._errors(f"downloading model {name!r}@{alias}") as client:
            uri = client.get_model_version_download_uri(name, found.version)
            from mlflow.artifacts import download_artifacts

            local = download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=self.uri)
        return Path(local)


def _save_pyfunc(model_dir: Path, data: Path, metadata: dict[str, Any]) -> None:
    """Write an MLflow pyfunc model whose loader is `mmm_core.serving` into `model_dir`."""
    import mlflow.pyfunc
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    signature = None
    if "feature_dim" in metadata:
        signature = ModelSignature(
            inputs=Schema([ColSpec("binary", "image"), ColSpec("string", "modality")]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, int(metadata["feature_dim"])))]),
        )
    from importlib.metadata import version  # (importing torchvision to ask costs 2.4 s)

    requirements = [
        f"torch=={version('torch').split('+')[0]}",
        f"torchvision=={version('torchvision').split('+')[0]}",
        "numpy",
        "pillow",
        "pyyaml",
    ]
    with warnings.catch_warnings():  # (an input example would be an image: none is given)
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        mlflow.pyfunc.save_model(
            path=str(model_dir),
            loader_module="mmm_core.serving",
            data_path=str(data),
            signature=signature,
            metadata=_plain(metadata),
            pip_requirements=requirements,
        )


# --------------------------------------------------------------------------- outages


class BufferedTracker:
    """An `MlflowTracker` whose per-round logging survives an outage of the server.

    ``mmm train`` logs through it. When logging a round's metrics or files fails, the round
    is kept in ``state_file`` (``RUN/tracking.json``; files are copied beside it, into
    ``tracking-backlog/``), one warning says that tracking is behind, and training goes on.
    Before each later request the server is asked once for ``/health`` (5 s at most); when it
    answers, the backlog is sent first, in order. The state file also holds the run id, so
    ``--resume`` continues the same MLflow run and sends what is left. Starting and resuming a
    run, and the final model and registration, still need the server (they raise
    TrackingError); `end` sends the backlog first.
    """

    enabled = True

    def __init__(self, inner: MlflowTracker, state_file: str | os.PathLike[str]) -> None:
        self.inner = inner
        self.state_file = Path(state_file)
        self.backlog_dir = self.state_file.parent / "tracking-backlog"
        self._pending: list[dict[str, Any]] = []
        self._behind = False
        if self.state_file.exists():
            try:
                state = json.loads(self.state_file.read_text())
                self._pending = list(state.get("pending", []))
            except (json.JSONDecodeError, AttributeError) as exc:
                raise TrackingError(
                    f"{self.state_file}: not a tracking state file: {exc}"
                ) from None

    @property
    def run_id(self) -> str | None:
        return self.inner.run_id

    @property
    def pending(self) -> int:
        """How many requests wait for the server."""
        return len(self._pending)

    def stored_run_id(self) -> str:
        """The run id recorded in the state file by an earlier process ("" when none)."""
        if not self.state_file.exists():
            return ""
        state = json.loads(self.state_file.read_text())
        return str(state.get("run_id", "")) if state.get("uri") == self.inner.uri else ""

    def _save(self) -> None:
        state = {
            "uri": self.inner.uri,
            "experiment": self.inner.experiment,
            "run_id": self.inner.run_id or "",
            "pending": self._pending,
        }
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.replace(self.state_file)

    # -- runs: need the server

    def start(
        self,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        run_id = self.inner.start(run_name, params, tags)
        self._save()
        return run_id

    def resume(self, run_id: str) -> str:
        resumed = self.inner.resume(run_id)
        self._save()
        if self._pending:
            self.flush()
        return resumed

    def end(self, status: str = "FINISHED") -> None:
        if not self.flush():
            raise TrackingError(
                f"MLflow at {self.uri} does not answer: {len(self._pending)} request(s) of run "
                f"{self.run_id} are kept in {self.state_file}; `mmm train --resume` sends them "
                "when it answers again"
            )
        self.inner.end(status)

    # -- per-round logging: kept when the server is away

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        kept = finite_metrics(metrics)
        if kept:
            self._submit({"kind": "metrics", "step": int(step), "metrics": kept})

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no artifact to log at {path}")
        self._submit({"kind": "artifact", "path": str(path), "artifact_path": artifact_path})

    def _submit(self, request: dict[str, Any]) -> None:
        if not self._pending and self._send(request):
            return
        if request["kind"] == "artifact":  # the file may change before it is sent: keep a copy
            self.backlog_dir.mkdir(parents=True, exist_ok=True)
            copy = Path(tempfile.mkdtemp(prefix="request-", dir=self.backlog_dir))
            source = Path(request["path"])
            target = copy / source.name
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
            request = {**request, "path": str(target)}
        self._pending.append(request)
        self._save()
        if not self._behind:
            self._behind = True
            log.warning(
                "MLflow at %s does not answer: tracking is behind (kept in %s and sent when it "
                "answers again, or on --resume); training goes on",
                self.uri,
                self.state_file,
            )
        self.flush()

    def _send(self, request: dict[str, Any]) -> bool:
        try:
            if request["kind"] == "metrics":
                self.inner.log_metrics(request["metrics"], step=request["step"])
            else:
                self.inner.log_artifact(request["path"], request["artifact_path"])
        except TrackingError as exc:
            log.debug("tracking request failed: %s", exc)
            return False
        return True

    def flush(self) -> bool:
        """Send the backlog, oldest first, if the server answers; True when nothing is left."""
        if not self._pending:
            return True
        try:
            check_server(self.uri, timeout=5.0)
        except TrackingError:
            return False
        while self._pending:
            if not self._send(self._pending[0]):
                self._save()
                return False
            done = self._pending.pop(0)
            self._save()
            if done["kind"] == "artifact" and self.backlog_dir in Path(done["path"]).parents:
                shutil.rmtree(Path(done["path"]).parent, ignore_errors=True)
        if self._behind:
            log.warning("MLflow at %s answers again: tracking has caught up", self.uri)
            self._behind = False
        return True

    # -- the rest goes straight to the server

    def __getattr__(self, name: str) -> Any:
        """`log_params`, `log_model`, `register_model`, `set_alias`, `get_alias_version`,
        `get_run_metrics`, `download_model`, `uri`, ...: the wrapped tracker's own."""
        if name == "inner":  # not set yet (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


# --------------------------------------------------------------------------- factory


def local_store_uri(run_dir: str | os.PathLike[str]) -> str:
    """``sqlite:///<run_dir>/mlflow.db`` (absolute): the embedded store of a run folder."""
    return f"sqlite:///{(Path(run_dir) / 'mlflow.db').resolve()}"


def resolve_tracking_uri(uri: str = "", run_dir: str | os.PathLike[str] | None = None) -> str:
    """The MLflow tracking URI to use: `uri`, else $MLFLOW_TRACKING_URI, else, when a run folder
    is given, its local SQLite store (`local_store_uri`); "" when there is none."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri and run_dir is not None:
        uri = local_store_uri(run_dir)
    return uri


def make_tracker(
    enabled: bool,
    uri: str,
    experiment: str,
    run_dir: str | os.PathLike[str] | None = None,
) -> Tracker:
    """The tracker for a config's ``tracking`` section.

    Disabled -> `NullTracker`. Otherwise the URI is `resolve_tracking_uri(uri, run_dir)`: `uri`,
    else $MLFLOW_TRACKING_URI, else a local SQLite store ``sqlite:///<run_dir>/mlflow.db`` with
    artifacts in ``<run_dir>/mlartifacts`` (`run_dir` is then required).
    """
    if not enabled:
        return NullTracker()
    uri = resolve_tracking_uri(uri, run_dir)
    if not uri:
        raise TrackingError(
            "tracking is on but no URI is configured: set tracking.uri or "
            "MLFLOW_TRACKING_URI, or give a run folder for a local SQLite store"
        )
    artifact_location = None
    if run_dir is not None and uri == local_store_uri(run_dir):
        folder = Path(run_dir).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        artifact_location = (folder / "mlartifacts").as_uri()
    return MlflowTracker(uri, experiment, artifact_location=artifact_location)
