"""``mmm demo``: a small synthetic dataset, then the real pipeline on it, results printed.

The pipeline runs through ``kfp.local.SubprocessRunner`` (``mmm run``) with the tiny CPU
preset; ``--in-process`` runs the same rounds with ``mmm train`` instead.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["HELP", "configure_parser", "main"]

HELP = "set up a small synthetic dataset and run the method on it"
REPO = Path(__file__).resolve().parents[2]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from mmm_core.arguments import add_config_arguments

    parser.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    parser.add_argument(
        "--config",
        default=str(REPO / "configs" / "synthetic-tiny.yaml"),
        help="config (default: configs/synthetic-tiny.yaml)",
    )
    add_config_arguments(parser, config=False)
    parser.add_argument(
        "--in-process", action="store_true", help="run `mmm train` instead of the pipeline"
    )


def main(args: argparse.Namespace) -> int:
    from mmm_core.config import load_config
    from mmm_core.data.inspect import dataset_statistics
    from mmm_core.engine.loop import dataset_root

    out = Path(args.out)
    root = out / "data" / "sysu"
    cfg = load_config(
        args.config, [f"data.root={root}", "data.synthetic.enabled=true", *args.overrides]
    )
    started = time.perf_counter()
    if not root.exists():
        print(f"generating a synthetic SYSU-MM01-layout dataset in {root} ...")
    dataset_root(cfg)
    stats = dataset_statistics(cfg.data.format, root)
    print(
        f"dataset: {stats['train_ids']} training ids ({stats['train_visible_images']} RGB / "
        f"{stats['train_infrared_images']} IR images), {stats['test_ids']} test ids, "
        f"{stats['test_query_images']} queries"
    )
    rounds = cfg.train.stage1_rounds + cfg.train.stage2_rounds
    if args.in_process:
        from mmm_core.engine.loop import run_training

        print(f"training {rounds} rounds in one process ...")
        rows = run_training(cfg, out, echo=print)
    else:
        from pipelines.local import run_local

        print(f"running the KFP pipeline locally ({rounds} rounds x 5 steps) ...")
        try:
            rows = run_local(cfg, out)
        except Exception as err:  # the pipeline's error names the failing task
            print(f"error: the pipeline failed: {err}\nsee {out / 'pipeline.log'}")
            return 1
    final = rows[-1]
    print(f"\nfinished in {time.perf_counter() - started:.0f} s; run folder: {out}")
    if not args.in_process:  # the in-process run draws its own
        from mmm_core.evaluation.visualize import save_round_curves

        save_round_curves({"demo": rows}, out / "rounds.png")
    print(f"per-round curves: {out / 'rounds.png'}")
    if final.get("rank1") is not None:
        print(
            f"final model (last round, SYSU-MM01 protocol all-search single-shot, 10 trials):\n"
            f"  R1 {100 * final['rank1']:.2f}  R10 {100 * final['rank10']:.2f}  "
            f"mAP {100 * final['mAP']:.2f}  mINP {100 * final['mINP']:.2f}"
        )
    return 0
