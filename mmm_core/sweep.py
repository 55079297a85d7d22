"""``mmm sweep``: a hyperparameter grid as one training-pipeline run per grid point.

The grid file (YAML, see ``configs/sweep-example.yaml``)::

    base:
      config: configs/synthetic-tiny.yaml   # one file or a list, composed in order
      set: {train.iters_per_round: 10}      # fixed overrides (dotted or nested keys)
    grid:                                   # dotted config key -> list of values
      memory.num_memories: [1, 2]
      loss.lambda_sca: [0.0, 0.5]
    experiment: mmm-sweep-example           # MLflow experiment (default mmm-sweep-<file stem>)
    metric: mAP                             # leaderboard key, higher is better (default mAP)

The points are the cartesian product of the grid lists, the first key varying slowest. Each
point's config is built through `mmm_core.config` (base files, ``base.set``, the command's
``--set``, then the point's values), so an unknown key or a bad value is rejected before
anything runs, with the grid file and the key named. A key may be swept or fixed, not both;
``tracking.enabled``, ``tracking.experiment`` and ``tracking.run_id`` belong to the sweep.
Config paths are relative to the current directory (the repository root, which is also the
working directory of the pipeline image).

A point is named by its values, ``num_memories=1,lambda_sca=0.5`` (the last part of each key,
or the whole key where that part is ambiguous), and runs in ``SWEEP/<index>-<name>/``.

Tracking: one MLflow experiment per sweep. Before any point runs, the sweep creates a parent
run (``sweep-...``, tag ``mmm.sweep``) and one child run per point (run name = point name,
tags ``mmm.sweep.point`` and ``mlflow.parentRunId``, the point's resolved config as params);
each pipeline gets its child run's id as ``tracking.run_id``, so its start step logs to that
run instead of creating one. The tracking URI is ``--tracking-uri``, else the config's
``tracking.uri``, else ``MLFLOW_TRACKING_URI``; in local mode, else one SQLite store shared
by all points, ``SWEEP/mlflow.db`` (artifacts in ``SWEEP/mlartifacts``), which parallel
pipelines write to concurrently (SQLite serialises the short writes).

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

Leaderboard: the points sorted by the metric (best first; failed points last), printed,
written to ``SWEEP/leaderboard.md`` and ``SWEEP/leaderboard.csv`` and logged as artifacts of
the parent run, whose metric ``best_<metric>`` and tag ``mmm.sweep.best`` name the winner.
Final metrics are the latest value of each key over the rounds (MLflow's "latest" too), so
with ``eval.every > 1`` R1/mAP/mINP are those of the last evaluated round.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from mmm_core.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_to_dict,
    flatten,
    load_config,
)

__all__ = [
    "SWEEP_KEYS",
    "Point",
    "PointResult",
    "Sweep",
    "configure_parser",
    "expand_grid",
    "final_metrics",
    "format_leaderboard",
    "format_value",
    "host_arguments",
    "leaderboard_csv",
    "load_sweep",
    "main",
    "point_names",
    "rank_results",
    "run_host_sweep",
    "run_local_sweep",
    "submit_points",
]

log = logging.getLogger(__name__)

GRID_FILE_KEYS = ("base", "grid", "experiment", "metric")
BASE_KEYS = ("config", "set")
# Set by the sweep itself for every point; a grid or `set` may not touch them.
SWEEP_KEYS = ("tracking.enabled", "tracking.experiment", "tracking.run_id")
ROUND_KEYS = ("train.stage1_rounds", "train.stage2_rounds")
DEFAULT_METRIC = "mAP"
TAG_SWEEP = "mmm.sweep"
TAG_POINT = "mmm.sweep.point"
TAG_INDEX = "mmm.sweep.index"
TAG_ROLE = "mmm.sweep.role"
TAG_BEST = "mmm.sweep.best"
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own tag: the UI nests the points under the sweep
# Leaderboard columns: (title, metrics key, as a percentage)
COLUMNS = (
    ("R1", "rank1", True),
    ("mAP", "mAP", True),
    ("mINP", "mINP", True),
    ("ARI vis", "ari_visible", False),
    ("ARI ir", "ari_infrared", False),
)
SUCCEEDED = ("FINISHED", "SUCCEEDED")


# --------------------------------------------------------------------------- the grid


def format_value(value: Any) -> str:
    """A value as the YAML text ``--set`` parses back to it: ``0.5``, ``true``, ``[all]``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip()
    return text.removesuffix("...").strip()


def override(key: str, value: Any) -> str:
    """``key=value`` with `value` written by `format_value`."""
    return f"{key}={format_value(value)}"


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of the value lists, in key order (the first key varies slowest).

    ``{"a": [1, 2], "b": [0]} -> [{"a": 1, "b": 0}, {"a": 2, "b": 0}]``; an empty grid is
    one point with no values.
    """
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key -> its last part, or the whole key where the last part is shared."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: part if last.count(part) == 1 else key for key, part in zip(keys, last, strict=True)
    }


def point_names(points: Sequence[Mapping[str, Any]]) -> list[str]:
    """Readable, distinct names: ``num_memories=1,lambda_sca=0.5`` (``base`` for no values)."""
    if not points:
        return []
    short = short_keys(list(points[0]))
    names = [
        ",".join(f"{short[key]}={format_value(value)}" for key, value in point.items()) or "base"
        for point in points
    ]
    return names


def _folder_name(index: int, name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._=,+#-]", "_", name)[:120]
    return f"{index:02d}-{safe}"


@dataclass(frozen=True)
class Point:
    """One grid point: its position, its name and its values (dotted key -> value)."""

    index: int
    name: str
    values: dict[str, Any]

    @property
    def overrides(self) -> list[str]:
        return [override(key, value) for key, value in self.values.items()]

    @property
    def folder(self) -> str:
        return _folder_name(self.index, self.name)


@dataclass(frozen=True)
class Sweep:
    """A validated grid file: base configs and overrides, the points and their configs."""

    grid_file: Path
    configs: tuple[str, ...]
    overrides: tuple[str, ...]  # base.set, then the command's --set (key=value)
    grid: dict[str, list[Any]]
    experiment: str
    metric: str
    points: tuple[Point, ...]
    point_configs: tuple[Config, ...] = field(repr=False)

    def point_overrides(self, point: Point) -> list[str]:
        """Every override of a point after its config files: fixed ones, then its values."""
        return [*self.overrides, *point.overrides]


def _error(path: str, message: str, source: Path | str) -> ConfigError:
    return ConfigError(path, message, source=str(source))


def _read_grid_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise _error("", "grid file not found", path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise _error("", f"invalid YAML: {err}", path) from None
    if not isinstance(data, dict):
        raise _error("", "the top level must be a mapping", path)
    for key in data:
        if key not in GRID_FILE_KEYS:
            raise _error(str(key), f"unknown key (valid keys: {', '.join(GRID_FILE_KEYS)})", path)
    return data


def _base_section(data: Mapping[str, Any], path: Path) -> tuple[list[str], dict[str, Any]]:
    base = data.get("base") or {}
    if not isinstance(base, Mapping):
        raise _error("base", "expected a mapping with 'config' and 'set'", path)
    for key in base:
        if key not in BASE_KEYS:
            raise _error(f"base.{key}", f"unknown key (valid keys: {', '.join(BASE_KEYS)})", path)
    configs = base.get("config") or []
    if isinstance(configs, str):
        configs = [configs]
    if not isinstance(configs, list) or not all(isinstance(c, str) and c for c in configs):
        raise _error("base.config", "expected a config file path or a list of them", path)
    for config in configs:
        if not Path(config).is_file():
            raise _error(
                "base.config",
                f"config file {config!r} not found (paths are relative to the "
                f"current directory, {Path.cwd()})",
                path,
            )
    fixed = base.get("set") or {}
    if not isinstance(fixed, Mapping):
        raise _error("base.set", "expected a mapping of config keys to values", path)
    return list(configs), flatten(fixed)


def _grid_section(data: Mapping[str, Any], path: Path) -> dict[str, list[Any]]:
    grid = data.get("grid")
    if not isinstance(grid, Mapping) or not grid:
        raise _error("grid", "expected a non-empty mapping of config keys to value lists", path)
    checked: dict[str, list[Any]] = {}
    for key, values in grid.items():
        where = f"grid.{key}"
        if not isinstance(values, list) or not values:
            raise _error(where, f"expected a non-empty list of values, got {values!r}", path)
        texts = [format_value(v) for v in values]
        repeated = sorted({t for t in texts if texts.count(t) > 1})
        if repeated:
            raise _error(where, f"repeated value(s) {', '.join(repeated)}", path)
        checked[str(key)] = values
    return checked


def _check_keys(keys: Iterable[str], where: str, path: Path | str) -> None:
    for key in keys:
        if key in SWEEP_KEYS:
            raise _error(
                f"{where}{key}",
                "set by the sweep for every point (use 'experiment:' in the grid file, or "
                "--experiment / --tracking-uri)",
                path,
            )


def _split_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["a.b=1", ...] -> {"a.b": "1"}`` (the value text is kept as written)."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError("", f"override {item!r} is not of the form key.path=value", "--set")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out


def load_sweep(
    grid_file: str | Path,
    overrides: Sequence[str] = (),
    *,
    experiment: str | None = None,
    metric: str | None = None,
) -> Sweep:
    """Read and validate a grid file; build and check every point's config.

    `overrides` (``key=value``, the command's ``--set``) apply to every point after
    ``base.set``. `experiment` and `metric` replace the file's values when given. Raises
    `ConfigError` naming the grid file (or ``--set``) and the offending key.
    """
    path = Path(grid_file)
    data = _read_grid_file(path)
    configs, fixed = _base_section(data, path)
    grid = _grid_section(data, path)
    experiment = experiment or data.get("experiment") or f"mmm-sweep-{path.stem}"
    metric = metric or data.get("metric") or DEFAULT_METRIC
    for key, value in (("experiment", experiment), ("metric", metric)):
        if not isinstance(value, str) or not value.strip():
            raise _error(key, f"expected a non-empty string, got {value!r}", path)
    command_set = _split_overrides(overrides)
    _check_keys(fixed, "base.set.", path)
    _check_keys(command_set, "", "--set")
    _check_keys(grid, "grid.", path)
    for key in grid:
        if key in fixed:
            raise _error(f"grid.{key}", "swept by the grid and also fixed in base.set", path)
        if key in command_set:
            raise _error(key, f"swept by the grid of {path}: it cannot also be set", "--set")

    base_cfg = load_config(configs)
    fixed_items = [override(key, value) for key, value in fixed.items()]
    try:
        base_cfg = apply_overrides(base_cfg, fixed_items)
    except ConfigError as err:
        where = f"base.set.{err.path}" if err.path else "base.set"
        raise _error(where, err.message, path) from None
    try:
        base_cfg = apply_overrides(base_cfg, overrides)
    except ConfigError as err:
        raise ConfigError(err.path, err.message, source="--set") from None
    for key, values in grid.items():
        for value in values:
            try:
                apply_overrides(base_cfg, [override(key, value)])
            except ConfigError as err:
                raise _error(f"grid.{err.path or key}", err.message, path) from None

    combos = expand_grid(grid)
    names = point_names(combos)
    points = tuple(
        Point(i, name, combo) for i, (name, combo) in enumerate(zip(names, combos, strict=True))
    )
    configs_of_points = []
    for point in points:
        try:
            configs_of_points.append(apply_overrides(base_cfg, point.overrides))
        except ConfigError as err:
            raise _error(
                f"grid.{err.path}" if err.path else "grid",
                f"{err.message} (point {point.index}: {point.name})",
                path,
            ) from None
    return Sweep(
        grid_file=path,
        configs=tuple(configs),
        overrides=(*fixed_items, *overrides),
        grid=grid,
        experiment=experiment.strip(),
        metric=metric.strip(),
        points=points,
        point_configs=tuple(configs_of_points),
    )


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PointResult:
    """What a point produced: status, run ids and its final metrics."""

    point: Point
    status: str  # FINISHED / FAILED locally; the KFP state on a host (SUCCEEDED, FAILED, ...)
    mlflow_run_id: str = ""
    kfp_run_id: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None
    folder: str = ""


def final_metrics(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The latest finite number of every key over the rounds' rows (later rounds win)."""
    final: dict[str, float] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                final[key] = float(value)
    return final


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl file ([] when it is missing); a bad line names file:line."""
    from mmm_core.engine.rounds import parse_rows

    path = Path(path)
    return parse_rows(path) if path.is_file() else []


def rank_results(results: Iterable[PointResult], metric: str) -> list[PointResult]:
    """Best first by `metric` (higher is better); points without it last, in grid order."""

    def key(result: PointResult) -> tuple[int, float, int]:
        value = result.metrics.get(metric)
        if value is None or not math.isfinite(value):
            return (1, 0.0, result.point.index)
        return (0, -value, result.point.index)

    return sorted(results, key=key)


def _columns(metric: str) -> list[tuple[str, str, bool]]:
    columns = list(COLUMNS)
    if metric not in {key for _title, key, _pct in columns}:
        columns.append((metric, metric, False))
    return columns


def _cell(value: float | None, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}" if percent else f"{value:.3f}"


def format_leaderboard(ranked: Sequence[PointResult], metric: str) -> str:
    """A Markdown table: rank, point, R1/mAP/mINP (%), ARI per modality, status, run ids."""
    columns = _columns(metric)
    with_kfp = any(r.kfp_run_id for r in ranked)
    header = ["#", "point", *(title for title, _key, _pct in columns), "status", "MLflow run"]
    if with_kfp:
        header.append("KFP run")
    rows = []
    for position, result in enumerate(ranked, start=1):
        cells = [str(position), result.point.name]
        cells += [_cell(result.metrics.get(key), pct) for _title, key, pct in columns]
        cells += [result.status, result.mlflow_run_id or "-"]
        if with_kfp:
            cells.append(result.kfp_run_id or "-")
        rows.append(cells)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {i for i, name in enumerate(header) if name == "#" or i in range(2, 2 + len(columns))}

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            "-" * (w + 1) + ":" if i in numeric else "-" * (w + 2) for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(r) for r in rows)]) + "\n"


def leaderboard_csv(ranked: Sequence[PointResult], grid_keys: Sequence[str], metric: str) -> str:
    """The leaderboard as CSV: one column per grid key, metrics unrounded, run ids, seconds."""
    metric_keys = [key for _title, key, _pct in _columns(metric)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "rank",
            "point",
            *grid_keys,
            *metric_keys,
            "status",
            "mlflow_run_id",
            "kfp_run_id",
            "seconds",
            "folder",
        ]
    )
    for position, result in enumerate(ranked, start=1):
        values = [format_value(result.point.values.get(k)) for k in grid_keys]
        numbers = [result.metrics.get(k, "") for k in metric_keys]
        seconds = "" if result.seconds is None else f"{result.seconds:.1f}"
        writer.writerow(
            [
                position,
                result.point.name,
                *values,
                *numbers,
                result.status,
                result.mlflow_run_id,
                result.kfp_run_id,
                seconds,
                result.folder,
            ]
        )
    return buffer.getvalue()


# --------------------------------------------------------------------------- MLflow


def _sweep_name(sweep: Sweep) -> str:
    return f"sweep-{sweep.grid_file.stem}-{datetime.now():%Y%m%d-%H%M%S}"


class SweepTracking:
    """The sweep's MLflow runs: a parent run, one child run per point, the leaderboard.

    Uses `mmm_core.tracking.MlflowTracker` (a fresh one per call, so threads never share one)
    and a plain `MlflowClient` for reading runs back.
    """

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None):
        self.uri = uri
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.parent_run_id = ""

    def _tracker(self):
        from mmm_core.tracking import MlflowTracker

        return MlflowTracker(self.uri, self.experiment, artifact_location=self.artifact_location)

    def open(self, sweep: Sweep, sweep_name: str) -> list[str]:
        """Create the parent run and a RUNNING child run per point; return the child ids."""
        parent = self._tracker()
        params = {
            "sweep.grid_file": str(sweep.grid_file),
            "sweep.configs": list(sweep.configs),
            "sweep.overrides": list(sweep.overrides),
            "sweep.metric": sweep.metric,
            "sweep.points": len(sweep.points),
            **{f"grid.{k}": [format_value(v) for v in vs] for k, vs in sweep.grid.items()},
        }
        self.parent_run_id = parent.start(
            sweep_name, params=params, tags={TAG_SWEEP: sweep_name, TAG_ROLE: "parent"}
        )
        child_ids = []
        for point, cfg in zip(sweep.points, sweep.point_configs, strict=True):
            tags = {
                TAG_SWEEP: sweep_name,
                TAG_ROLE: "point",
                TAG_POINT: point.name,
                TAG_INDEX: str(point.index),
                TAG_PARENT: self.parent_run_id,
            }
            child_ids.append(self._tracker().start(point.name, config_to_dict(cfg), tags))
        return child_ids

    def run_state(self, run_id: str) -> tuple[str, dict[str, float]]:
        """(status, latest metrics) of a run."""
        from mlflow import MlflowClient

        run = MlflowClient(tracking_uri=self.uri).get_run(run_id)
        return run.info.status, dict(run.data.metrics)

    def end_if_running(self, run_id: str, status: str = "FAILED") -> None:
        """Mark a point's run `status` when its pipeline stopped without closing it."""
        if self.run_state(run_id)[0] == "RUNNING":
            tracker = self._tracker()
            tracker.resume(run_id)
            tracker.end(status)

    def abort(self, run_ids: Sequence[str]) -> None:
        """End the parent and every point run still RUNNING as KILLED (best effort)."""
        for run_id in [*run_ids, self.parent_run_id]:
            try:
                self.end_if_running(run_id, "KILLED")
            except Exception as err:  # cleanup while another error propagates
                log.warning("could not close MLflow run %s: %s", run_id, err)

    def close(self, ranked: Sequence[PointResult], metric: str, files: Sequence[Path]) -> None:
        """Log the leaderboard files and the best point to the parent run and end it."""
        tracker = self._tracker()
        tracker.resume(self.parent_run_id)
        for path in files:
            tracker.log_artifact(path)
        best = ranked[0] if ranked and metric in ranked[0].metrics else None
        if best is not None:
            tracker.log_metrics({f"best_{metric}": best.metrics[metric]}, step=0)
            tracker.log_params({"sweep.best": best.point.name})
        ok = any(r.status in SUCCEEDED for r in ranked) or not ranked
        tracker.end("FINISHED" if ok else "FAILED")


def resolve_tracking_uri(explicit: str | None, cfg: Config, local_out: Path | None) -> str:
    """--tracking-uri, else the config's tracking.uri, else MLFLOW_TRACKING_URI, else (local
    mode only) ``sqlite:///<local_out>/mlflow.db``; "" when there is none."""
    uri = explicit or cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri and local_out is not None:
        uri = f"sqlite:///{(local_out / 'mlflow.db').resolve()}"
    return uri


# --------------------------------------------------------------------------- local mode


def prepare_datasets(sweep: Sweep) -> None:
    """Generate each distinct local synthetic dataset once, before parallel points race."""
    from mmm_core.engine.loop import dataset_root

    seen = set()
    for cfg in sweep.point_configs:
        data = cfg.data
        key = (data.root, data.format, data.synthetic)
        if key in seen or "://" in data.root or not data.synthetic.enabled:
            continue
        seen.add(key)
        dataset_root(cfg)


def local_command(sweep: Sweep, point: Point, out: Path, tracking: Sequence[str]) -> list[str]:
    """The ``mmm run`` command line of a point."""
    command = [sys.executable, "-m", "mmm_core.cli", "run"]
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
    from kfp import compiler

    from pipelines.training import build_training_pipeline

    packages = {}
    for cfg in sweep.point_configs:
        rounds = (cfg.train.stage1_rounds, cfg.train.stage2_rounds)
        if rounds in packages:
            continue
        path = out / f"pipeline-{rounds[0]}x{rounds[1]}.yaml"
        pipeline = build_training_pipeline(*rounds, name=f"mmm-training-{rounds[0]}x{rounds[1]}")
        compiler.Compiler().compile(pipeline, str(path))
        packages[rounds] = path
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
    passed there as YAML text, the rest in ``overrides``; the round counts are left out (they
    are compiled into the pipeline). `extra` (``key=value``) comes last.
    """
    from mmm_core.steps.start import PARAMETER_KEYS

    if not sweep.configs:
        raise ConfigError("base.config", "a KFP run needs a config file", str(sweep.grid_file))
    settings: dict[str, str] = {}
    for config in sweep.configs[1:]:
        layer = yaml.safe_load(Path(config).read_text()) or {}
        settings.update({k: format_value(v) for k, v in flatten(layer).items()})
    settings.update(_split_overrides([*sweep.point_overrides(point), *extra]))
    parameter_of = {key: name for name, key in PARAMETER_KEYS.items()}
    arguments: dict[str, Any] = {"config_file": sweep.configs[0]}
    rest = []
    for key, text in settings.items():
        if key in ROUND_KEYS:
            continue
        if key in parameter_of:
            arguments[parameter_of[key]] = text
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
        extra = ["tracking.enabled=true", override("tracking.experiment", sweep.experiment)]
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


def write_leaderboard(
    results: Sequence[PointResult], sweep: Sweep, out: Path
) -> tuple[str, list[Path]]:
    """Rank, write SWEEP/leaderboard.md and .csv; return the Markdown table and the paths."""
    ranked = rank_results(results, sweep.metric)
    table = format_leaderboard(ranked, sweep.metric)
    md, table_csv = out / "leaderboard.md", out / "leaderboard.csv"
    title = f"# Sweep {sweep.grid_file.name}: {len(results)} points by {sweep.metric}\n\n"
    md.write_text(title + table)
    table_csv.write_text(leaderboard_csv(ranked, list(sweep.grid), sweep.metric))
    return table, [md, table_csv]


def _describe(sweep: Sweep, echo: Callable[[str], None], host: bool) -> None:
    echo(
        f"{sweep.grid_file}: {len(sweep.points)} points, experiment {sweep.experiment!r}, "
        f"leaderboard by {sweep.metric}"
    )
    echo(f"  configs: {' '.join(sweep.configs) or '(defaults)'}")
    if sweep.overrides:
        echo(f"  fixed:   {' '.join(sweep.overrides)}")
    for point, cfg in zip(sweep.points, sweep.point_configs, strict=True):
        echo(f"  [{point.index}] {point.name}")
        if host:
            rounds = f"{cfg.train.stage1_rounds}x{cfg.train.stage2_rounds}"
            arguments = json.dumps(host_arguments(sweep, point))
            echo(f"      pipeline-{rounds}.yaml, arguments: {arguments}")
        else:
            echo(f"      --set {' --set '.join(point.overrides)}")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grid", required=True, metavar="YAML", help="grid file")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--local", action="store_true", help="run the points on this machine")
    mode.add_argument("--host", metavar="URL", help="submit the points to this KFP host")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="points run at once (--local, default 1) or submitted at once (--host, default 8)",
    )
    parser.add_argument(
        "--out", help="sweep folder (default runs/sweeps/sweep-<grid>-<time>)", default=None
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field for every point, after base.set (repeatable)",
    )
    parser.add_argument("--experiment", help="MLflow experiment (default: the grid file's)")
    parser.add_argument("--metric", help="leaderboard key, higher is better (default mAP)")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI as seen from here (default: config, MLFLOW_TRACKING_URI, "
        "then --local: SWEEP/mlflow.db)",
    )
    parser.add_argument("--namespace", help="KFP namespace (multi-user deployments)")
    parser.add_argument("--kfp-experiment", help="KFP experiment (default: the MLflow one)")
    parser.add_argument("--wait", action="store_true", help="--host: wait, then leaderboard")
    parser.add_argument(
        "--timeout", type=float, default=7 * 24 * 3600, help="--wait limit in seconds"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the points and stop")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.grid, args.overrides, experiment=args.experiment, metric=args.metric)
    if args.dry_run:
        _describe(sweep, print, host=bool(args.host))
        return 0
    if not (args.local or args.host):
        return _fail("choose --local or --host URL (or --dry-run)")
    if args.jobs is not None and args.jobs < 1:
        return _fail("--jobs must be >= 1")
    sweep_name = _sweep_name(sweep)
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / sweep_name
    if any((out / p.folder).exists() for p in sweep.points):
        return _fail(f"{out} already holds this sweep's points; choose another --out")
    uri = resolve_tracking_uri(
        args.tracking_uri, sweep.point_configs[0], out if args.local else None
    )
    if args.host and not uri:
        if args.wait:
            return _fail("--wait needs an MLflow tracking URI (--tracking-uri) for the leaderboard")
        print(
            "no MLflow tracking URI here (--tracking-uri or MLFLOW_TRACKING_URI): the runs log "
            "to the pods' MLFLOW_TRACKING_URI and no leaderboard is made",
            file=sys.stderr,
        )
    out.mkdir(parents=True, exist_ok=True)
    # Everything that can fail before the runs start, before any MLflow run is created.
    packages = None
    if args.local:
        prepare_datasets(sweep)
    else:
        for point in sweep.points:
            host_arguments(sweep, point)
        packages = compile_packages(sweep, out)
    tracking = None
    run_ids: list[str] = []
    if uri:
        artifacts = (out / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
        tracking = SweepTracking(uri, sweep.experiment, artifacts)
        run_ids = tracking.open(sweep, sweep_name)
        print(
            f"sweep {sweep_name}: {len(sweep.points)} points, MLflow experiment "
            f"{sweep.experiment!r} at {uri} (parent run {tracking.parent_run_id})"
        )
    started = time.perf_counter()
    try:
        if args.local:
            assert tracking is not None
            results = run_local_sweep(sweep, out, args.jobs or 1, tracking, run_ids)
        else:
            import kfp

            namespace = {"namespace": args.namespace} if args.namespace else {}
            results = run_host_sweep(
                kfp.Client(host=args.host, **namespace),
                sweep,
                out,
                sweep_name=sweep_name,
                tracking=tracking,
                run_ids=run_ids,
                host=args.host,
                namespace=args.namespace,
                kfp_experiment=args.kfp_experiment,
                wait=args.wait,
                timeout_s=args.timeout,
                jobs=args.jobs or 8,
                packages=packages,
            )
    except BaseException:
        if tracking is not None:  # no run is left RUNNING by an interrupted sweep
            tracking.abort(run_ids)
        raise
    if results is None:  # submitted, not waited for
        print(f"submitted {len(sweep.points)} runs; record in {out / 'submissions.json'}")
        if tracking is not None:
            tracking.close([], sweep.metric, [out / "submissions.json"])
        return 0
    table, files = write_leaderboard(results, sweep, out)
    if tracking is not None:
        tracking.close(rank_results(results, sweep.metric), sweep.metric, files)
    elapsed = time.perf_counter() - started
    print(f"\nleaderboard ({sweep.metric}, best first), {elapsed:.0f} s; files in {out}:")
    print(table, end="")
    return 0 if all(r.status in SUCCEEDED for r in results) else 1
