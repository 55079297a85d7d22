"""A hyperparameter sweep (``mmm sweep``): the grid file, its points, their MLflow runs, the
leaderboard. One training-pipeline run per grid point.

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
``tracking.enabled``, ``tracking.experiment``, ``tracking.run_id`` and ``tracking.promote``
belong to the sweep (a point's model is registered as ``candidate``, never promoted: pick the
winner from the leaderboard).
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

The modes that run the points, ``--local`` (``mmm run`` per point) and ``--host`` (KFP runs),
are `pipelines.sweep`; the command is `mmm_cli.commands.sweep`.

Leaderboard: the points sorted by the metric (best first; failed points last), printed,
written to ``SWEEP/leaderboard.md`` and ``SWEEP/leaderboard.csv`` and logged as artifacts of
the parent run, whose metric ``best_<metric>`` and tag ``mmm.sweep.best`` name the winner.
Final metrics are the latest value of each key over the rounds (MLflow's "latest" too), so
with ``eval.every > 1`` R1/mAP/mINP are those of the last evaluated round.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
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
    "ROUND_KEYS",
    "SUCCEEDED",
    "SWEEP_KEYS",
    "Point",
    "PointResult",
    "Sweep",
    "SweepTracking",
    "expand_grid",
    "final_metrics",
    "format_leaderboard",
    "format_value",
    "leaderboard_csv",
    "load_sweep",
    "override",
    "point_names",
    "prepare_datasets",
    "rank_results",
    "read_history",
    "split_overrides",
    "sweep_name",
    "write_leaderboard",
]

log = logging.getLogger(__name__)

GRID_FILE_KEYS = ("base", "grid", "experiment", "metric")
BASE_KEYS = ("config", "set")
# Set by the sweep itself for every point; a grid or `set` may not touch them.
SWEEP_KEYS = ("tracking.enabled", "tracking.experiment", "tracking.run_id", "tracking.promote")
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


def split_overrides(items: Sequence[str]) -> dict[str, str]:
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
    command_set = split_overrides(overrides)
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
    from mmm_core.engine.lifecycle import parse_rows

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


def sweep_name(sweep: Sweep) -> str:
    """``sweep-<grid file stem>-<date>-<time>``: the parent run's name and the default folder."""
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
        tracker = self._tracker()
        return tracker.get_run_status(run_id), tracker.get_run_metrics(run_id)

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


def prepare_datasets(sweep: Sweep) -> None:
    """Generate each distinct local synthetic dataset once, before parallel points race."""
    from mmm_core.engine.build import dataset_root

    seen = set()
    for cfg in sweep.point_configs:
        data = cfg.data
        key = (data.root, data.format, data.synthetic)
        if key in seen or "://" in data.root or not data.synthetic.enabled:
            continue
        seen.add(key)
        dataset_root(cfg)


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
