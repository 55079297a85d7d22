"""``mmm sweep``: a hyperparameter grid as one training-pipeline run per grid point.

The grid file and the leaderboard: `mmm_core.sweep`; how the points run: `pipelines.sweep`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmm_core.sweep import Sweep

__all__ = ["HELP", "configure_parser", "main"]

HELP = "run a hyperparameter grid as parallel pipeline runs"


def _describe(sweep: Sweep, echo: Callable[[str], None], host: bool) -> None:
    from pipelines.sweep import host_arguments

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
    from mmm_core.arguments import add_config_arguments

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
    add_config_arguments(
        parser, config=False, set_help="override a field for every point, after base.set"
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
    from mmm_core.sweep import (
        SUCCEEDED,
        SweepTracking,
        load_sweep,
        prepare_datasets,
        rank_results,
        sweep_name,
        write_leaderboard,
    )
    from mmm_core.tracking import resolve_tracking_uri
    from pipelines.sweep import compile_packages, host_arguments, run_host_sweep, run_local_sweep

    sweep = load_sweep(args.grid, args.overrides, experiment=args.experiment, metric=args.metric)
    if args.dry_run:
        _describe(sweep, print, host=bool(args.host))
        return 0
    if not (args.local or args.host):
        return _fail("choose --local or --host URL (or --dry-run)")
    if args.jobs is not None and args.jobs < 1:
        return _fail("--jobs must be >= 1")
    name = sweep_name(sweep)
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / name
    if any((out / p.folder).exists() for p in sweep.points):
        return _fail(f"{out} already holds this sweep's points; choose another --out")
    uri = resolve_tracking_uri(
        args.tracking_uri or sweep.point_configs[0].tracking.uri, out if args.local else None
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
        run_ids = tracking.open(sweep, name)
        print(
            f"sweep {name}: {len(sweep.points)} points, MLflow experiment "
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
                sweep_name=name,
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
