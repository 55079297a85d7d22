"""``mmm run``: the training pipeline on this machine (`pipelines.local.run_local`).

Every step runs as a subprocess of the current Python environment through
``kfp.local.SubprocessRunner``: no Kubernetes, no Docker, no servers. The round table is printed
as rounds finish; the run folder gets config.yaml, metrics.jsonl (the same keys as
``mmm train``), pipeline.log and the KFP pipeline root.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["HELP", "configure_parser", "main"]

HELP = "run the KFP training pipeline locally (no cluster, no servers)"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from mmm_core.arguments import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--out", required=True, help="run folder")


def main(args: argparse.Namespace) -> int:
    from mmm_cli.main import BAD_INPUT
    from mmm_core.config import load_config
    from pipelines.local import PipelineTaskError, run_local

    cfg = load_config(args.config, args.overrides)
    started = time.perf_counter()
    out = Path(args.out)
    try:
        rows = run_local(cfg, out)
    except PipelineTaskError as err:  # the step's own one-line error, and where the rest is
        print(f"error: {err}\n  (the step's whole output: {err.log_path})", file=sys.stderr)
        return 2 if err.error_type in {kind.__name__ for kind in BAD_INPUT} else 1
    except RuntimeError as err:  # kfp's own report, when no step output names the error
        print(f"error: the pipeline failed: {' '.join(str(err).split())}", file=sys.stderr)
        print(f"  (the steps' whole output: {out / 'pipeline.log'})", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    print(f"pipeline finished: {len(rows)} rounds in {elapsed:.0f} s; history in {out}")
    final = next((r for r in reversed(rows) if r.get("rank1") is not None), None)
    if final:
        print(
            f"final model (last round): R1 {100 * final['rank1']:.2f}  "
            f"mAP {100 * final['mAP']:.2f}  mINP {100 * final['mINP']:.2f}"
        )
    return 0
