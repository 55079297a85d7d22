"""How a sweep's points run: locally as ``mmm run`` subprocesses, or as KFP runs on a host.

The grid, its validation, the MLflow runs and the leaderboard are `mmm_core.sweep`; the
``mmm sweep`` command is `mmm_cli.commands.sweep`.

Modes:

- ``--local --jobs N``: ``mmm run`` (`pipelines.local`) for each point, N at a time, each a
  subprocess whose output goes to ``SWEEP/<point>/sweep.log``; the final metrics are read from
  each point's ``metrics.jsonl``.
- ``--host URL``: the training pipeline is compiled once per round count
  (``SWEEP/pipeline-<s1>x<s2>.yaml``) and one KFP run per point is submitted in parallel, into
  the KFP experiment of the same name. Pipeline arguments: ``config_file`` is the first base
  file (its path inside the image), values with a named pipeline parameter use it
  (``num_memories``, ``lambda_sca``, ...), everything else goes into ``overrides``, including
  the content of further base files; round counts are compiled in. ``--wait`` waits for the
  runs and reads the final metrics from MLflow (the steps log there through the pods'
  ``MLFLOW_TRACKING_URI``; ``--tracking-uri`` is the same server as seen from here).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mmm_core.config import Config, ConfigError, flatten
from mmm_core.sweep import (
    ROUND_KEYS,
    SUCCEEDED,
    Point,
    PointResult,
    Sweep,
    SweepTracking,
    final_metrics,
    format_value,
    override,
    prepare_datasets,
    read_history,
    split_overrides,
)

__all__ = [
    "Submission",
    "compile_packages",
    "host_arguments",
    "local_command",
    "pipeline_parameters",
    "run_host_sweep",
    "run_local_sweep",
    "submit_points",
    "wait_for_runs",
]

# --------------------------------------------------------------------------- local mode


def local_command(sweep: Sweep, point: Point, out: Path, tracking: Sequence[str]) -> list[str]:
    """The ``mmm run`` command line of a point."""
    command = [sys.executable, "-m", "mmm_cli", "run"]
    for config in sweep.configs:
        command += ["--config", config]
    for item in [*sweep.point_overrides(point), *tracking]:
        command += ["--set", item]
    return [*command, "--out", str(out)]


def run_local_sweep(
    sweep: Sweep,
    out: Path,
    jobs: int,
    tracking: SweepTracking,
    run_ids: Sequence[str],
    echo: Callable[[str], None] = print,
) -> list[PointResult]:
    """Run every point's pipeline with ``mmm run``, `jobs` at a time; results in grid order."""
    prepare_datasets(sweep)
    total = len(sweep.points)
    done = 0
    lock = threading.Lock()

    def run_point(point: Point, run_id: str) -> PointResult:
        nonlocal done
        folder = out / point.folder
        folder.mkdir(parents=True, exist_ok=True)
        settings = [
            "tracking.enabled=true",
            "tracking.promote=false",  # a point is registered, never promoted
            override("tracking.uri", tracking.uri),
            override("tracking.experiment", tracking.experiment),
            override("tracking.run_id", run_id),
        ]
        command = local_command(sweep, point, folder, settings)
        started = time.perf_counter()
        with open(folder / "sweep.log", "w") as handle:
            handle.write("$ " + " ".join(command) + "\n")
            handle.flush()
            code = subprocess.run(
                command, stdout=handle, stderr=subprocess.STDOUT, check=False
            ).returncode
        seconds = time.perf_counter() - started
        metrics = final_metrics(read_history(folder / "metrics.jsonl")) if code == 0 else {}
        status = "FINISHED" if code == 0 else "FAILED"
        if code != 0:
            tracking.end_if_running(run_id, "FAILED")
        value = metrics.get(sweep.metric)
        shown = "-" if value is None else f"{value:.4f}"
        with lock:
            done += 1
            echo(
                f"[{done}/{total}] {point.name}: {status} in {seconds:.0f} s, "
                f"{sweep.metric} {shown}" + ("" if code == 0 else f" (see {folder / 'sweep.log'})")
            )
        return PointResult(point, status, run_id, "", metrics, seconds, str(folder))

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(run_point, p, r) for p, r in zip(sweep.points, run_ids, strict=True)]
        return [f.result() for f in futures]


# --------------------------------------------------------------------------- host mode


def compile_packages(sweep: Sweep, out: Path) -> dict[tuple[int, int], Path]:
    """One compiled training pipeline per distinct (stage-1, stage-2) round count."""
    from pipelines.compact import compile_pipeline
    from pipelines.training import build_training_pipeline

    packages = {}
    for cfg in sweep.point_configs:
        rounds = (cfg.train.stage1_rounds, cfg.train.stage2_rounds)
        if rounds in packages:
            continue
        path = out / f"pipeline-{rounds[0]}x{rounds[1]}.yaml"
        pipeline = build_training_pipeline(*rounds, name=f"mmm-training-{rounds[0]}x{rounds[1]}")
        packages[rounds] = compile_pipeline(pipeline, path)
    return packages


def pipeline_parameters(package: Path) -> set[str]:
    """The run-time parameter names of a compiled pipeline package."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser when built
    spec = next(iter(yaml.load_all(package.read_text(), Loader=loader)))
    return set(spec["root"]["inputDefinitions"]["parameters"])


def host_arguments(sweep: Sweep, point: Point, extra: Sequence[str] = ()) -> dict[str, Any]:
    """The training pipeline's arguments for a point.

    ``config_file`` is the first base file; the other base files become overrides (their
    leaves, in order); each setting with a named pipeline parameter (`PARAMETER_KEYS`) is
    passed there, typed as the parameter is (`parameter_value`), the rest in ``overrides``;
    the round counts are left out (they are compiled into the pipeline). `extra`
    (``key=value``) comes last.
    """
    from mmm_core.steps.parameters import PARAMETER_KEYS, parameter_value

    if not sweep.configs:
        raise ConfigError("base.config", "a KFP run needs a config file", str(sweep.grid_file))
    settings: dict[str, str] = {}
    for config in sweep.configs[1:]:
        layer = yaml.safe_load(Path(config).read_text()) or {}
        settings.update({k: format_value(v) for k, v in flatten(layer).items()})
    settings.update(split_overrides([*sweep.point_overrides(point), *extra]))
    parameter_of = {key: name for name, key in PARAMETER_KEYS.items()}
    arguments: dict[str, Any] = {"config_file": sweep.configs[0]}
    rest = []
    for key, text in settings.items():
        if key in ROUND_KEYS:
            continue
        if key in parameter_of:
            arguments[parameter_of[key]] = parameter_value(parameter_of[key], text)
        else:
            rest.append(f"{key}={text}")
    arguments["overrides"] = rest
    return arguments


@dataclass(frozen=True)
class Submission:
    point: Point
    kfp_run_id: str
    url: str
    mlflow_run_id: str = ""


def submit_points(
    client: Any,
    sweep: Sweep,
    packages: Mapping[tuple[int, int], Path],
    *,
    kfp_experiment: str,
    sweep_name: str,
    run_ids: Sequence[str] = (),
    host: str = "",
    namespace: str | None = None,
    jobs: int = 8,
) -> list[Submission]:
    """Submit one KFP run per point, `jobs` at a time, with `client` (a `kfp.Client`).

    The KFP experiment is resolved once, before the parallel submissions (so that threads do
    not race to create it). Each point's arguments are `host_arguments` plus
    ``tracking.enabled``, ``tracking.experiment`` and, when `run_ids` are given, the point's
    pre-created MLflow run id; they are checked against the compiled package's parameters.
    """
    experiment = client.create_experiment(kfp_experiment, namespace=namespace)
    experiment_id = experiment.experiment_id
    ids = list(run_ids) or [""] * len(sweep.points)
    parameters = {rounds: pipeline_parameters(path) for rounds, path in packages.items()}

    def submit(point: Point, cfg: Config, run_id: str) -> Submission:
        extra = ["tracking.enabled=true", "tracking.promote=false"]  # points are not promoted
        extra.append(override("tracking.experiment", sweep.experiment))
        if run_id:
            extra.append(override("tracking.run_id", run_id))
        arguments = host_arguments(sweep, point, extra)
        rounds = (cfg.train.stage1_rounds, cfg.train.stage2_rounds)
        package = packages[rounds]
        unknown = set(arguments) - parameters[rounds]
        if unknown:
            raise ValueError(f"{package} has no parameters {sorted(unknown)}")
        result = client.create_run_from_pipeline_package(
            str(package),
            arguments=arguments,
            run_name=f"{point.name} ({sweep_name})",
            experiment_id=experiment_id,
            namespace=namespace,
        )
        url = f"{host.rstrip('/')}/#/runs/details/{result.run_id}" if host else ""
        return Submission(point, result.run_id, url, run_id)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [
            pool.submit(submit, p, c, r)
            for p, c, r in zip(sweep.points, sweep.point_configs, ids, strict=True)
        ]
        return [f.result() for f in futures]


def wait_for_runs(
    client: Any, submissions: Sequence[Submission], timeout_s: float, jobs: int = 8
) -> dict[str, str]:
    """Wait for the KFP runs in parallel; ``{kfp run id: final state (upper case)}``."""

    def wait(submission: Submission) -> tuple[str, str]:
        try:
            run = client.wait_for_run_completion(submission.kfp_run_id, timeout=timeout_s)
        except TimeoutError:
            return submission.kfp_run_id, "TIMEOUT"
        return submission.kfp_run_id, str(getattr(run, "state", "") or "UNKNOWN").upper()

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return dict(pool.map(wait, submissions))


def run_host_sweep(
    client: Any,
    sweep: Sweep,
    out: Path,
    *,
    sweep_name: str,
    tracking: SweepTracking | None,
    run_ids: Sequence[str] = (),
    host: str = "",
    namespace: str | None = None,
    kfp_experiment: str | None = None,
    wait: bool = False,
    timeout_s: float = 7 * 24 * 3600,
    jobs: int = 8,
    packages: Mapping[tuple[int, int], Path] | None = None,
    echo: Callable[[str], None] = print,
) -> list[PointResult] | None:
    """Compile (unless `packages` holds the compiled pipeline per round count), submit every
    point, write ``SWEEP/submissions.json``; with `wait`, wait and return the results (metrics
    from MLflow), else None."""
    if packages is None:
        packages = compile_packages(sweep, out)
    submissions = submit_points(
        client,
        sweep,
        packages,
        kfp_experiment=kfp_experiment or sweep.experiment,
        sweep_name=sweep_name,
        run_ids=run_ids,
        host=host,
        namespace=namespace,
        jobs=jobs,
    )
    for s in submissions:
        echo(f"submitted {s.point.name}: KFP run {s.kfp_run_id} {s.url}".rstrip())
    record = [
        {
            "index": s.point.index,
            "point": s.point.name,
            "values": s.point.values,
            "kfp_run_id": s.kfp_run_id,
            "url": s.url,
            "mlflow_run_id": s.mlflow_run_id,
        }
        for s in submissions
    ]
    (out / "submissions.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    if not wait:
        return None
    echo(f"waiting for {len(submissions)} runs ...")
    states = wait_for_runs(client, submissions, timeout_s, jobs)
    results = []
    for s in submissions:
        state = states[s.kfp_run_id]
        metrics: dict[str, float] = {}
        if tracking is not None and s.mlflow_run_id:
            if state not in SUCCEEDED:
                tracking.end_if_running(s.mlflow_run_id, "FAILED")
            metrics = tracking.run_state(s.mlflow_run_id)[1]
        echo(f"{s.point.name}: {state}")
        results.append(PointResult(s.point, state, s.mlflow_run_id, s.kfp_run_id, metrics))
    return results


# --------------------------------------------------------------------------- the command
