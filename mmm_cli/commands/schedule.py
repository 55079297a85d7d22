"""``mmm schedule``: a KFP recurring run (cron) of the retraining pipeline.

    mmm schedule --cron "0 3 * * *" --host http://ml-pipeline-ui.kubeflow:80 \\
        --param data_root=s3://cameras/sysu --param min_new_images=200

What is compiled and sent, and how the cron expression is read: `pipelines.schedule`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["HELP", "configure_parser", "main"]

HELP = "create a KFP recurring run of the retraining pipeline"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cron",
        required=True,
        help='when to run: 5-field cron "MIN HOUR DAY MONTH WEEKDAY" (e.g. "0 3 * * *"), '
        "6 fields with seconds first, or @daily/@weekly/...; the server's time zone",
    )
    parser.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://HOST:8888")
    parser.add_argument("--experiment", default="mmm-retraining", help="KFP experiment")
    parser.add_argument("--name", help="recurring run name (default mmm-retrain-<R>r)")
    parser.add_argument("--rounds", type=int, default=None, help="stage-2 rounds (default 3)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter, e.g. --param data_root=s3://cameras/sysu (repeatable)",
    )
    parser.add_argument(
        "--max-concurrency", type=int, default=1, help="runs at the same time (default 1)"
    )
    parser.add_argument("--catchup", action="store_true", help="backfill runs missed while paused")
    parser.add_argument("--namespace", help="Kubernetes namespace (multi-user KFP)")
    parser.add_argument("--pipeline-root", help="artifact root of the runs (default: KFP's)")
    parser.add_argument("--service-account", help="Kubernetes service account of the runs")


def main(args: argparse.Namespace, client: Any = None) -> int:
    """Create the recurring run; `client` replaces the `kfp.Client` (tests)."""
    from pipelines.retrain import DEFAULT_ROUNDS
    from pipelines.schedule import connect, schedule, to_kfp_cron

    rounds = DEFAULT_ROUNDS if args.rounds is None else args.rounds
    if rounds < 1 or args.max_concurrency < 1:
        print("error: --rounds and --max-concurrency must be at least 1", file=sys.stderr)
        return 2
    try:
        cron6 = to_kfp_cron(args.cron)
    except ValueError as err:
        print(f"error: --cron: {err}", file=sys.stderr)
        return 2
    job_name = args.name or f"mmm-retrain-{rounds}r"

    def client_factory() -> Any:
        return client if client is not None else connect(args.host, args.namespace)

    try:
        created = schedule(
            client_factory,
            cron6,
            experiment=args.experiment,
            job_name=job_name,
            rounds=rounds,
            params=args.param,
            max_concurrency=args.max_concurrency,
            catchup=args.catchup,
            pipeline_root=args.pipeline_root,
            service_account=args.service_account,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    identifier = getattr(created, "recurring_run_id", None) or getattr(created, "id", "")
    print(
        f"recurring run {job_name!r} ({identifier}) in experiment {args.experiment!r} at "
        f"{args.host}: cron {cron6!r} (sec min hour day month weekday), {rounds} rounds"
    )
    return 0
