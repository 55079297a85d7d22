"""``mmm step NAME ...``: run one pipeline step of `mmm_core.steps` on files (what each KFP
component does)."""

from __future__ import annotations

import argparse
from types import ModuleType

__all__ = ["HELP", "configure_parser", "main"]

HELP = "run one pipeline step over files"

# step -> [(argument, help)]; every step also takes --out-metrics.
ARGUMENTS: dict[str, list[tuple[str, str]]] = {
    "start": [
        ("--out-config", "resolved config.yaml to write"),
        ("--out-manifest", "manifest.tsv to write"),
        ("--out-checkpoint", "initial checkpoint.pt to write"),
    ],
    "extract": [
        ("--config", "resolved config.yaml"),
        ("--manifest", "manifest.tsv"),
        ("--checkpoint", "checkpoint.pt"),
        ("--out-features", "features.npz to write"),
    ],
    "cluster": [
        ("--config", "resolved config.yaml"),
        ("--manifest", "manifest.tsv (its true ids are read only for supervision=oracle)"),
        ("--features", "features.npz"),
        ("--out-labels", "labels.npz to write"),
    ],
    "match": [
        ("--config", "resolved config.yaml"),
        ("--manifest", "manifest.tsv"),
        ("--features", "features.npz"),
        ("--labels", "labels.npz"),
        ("--out-targets", "targets.npz to write"),
    ],
    "train": [
        ("--config", "resolved config.yaml"),
        ("--manifest", "manifest.tsv"),
        ("--checkpoint", "checkpoint.pt"),
        ("--targets", "targets.npz"),
        ("--out-checkpoint", "checkpoint.pt to write"),
    ],
    "evaluate": [
        ("--config", "resolved config.yaml"),
        ("--checkpoint", "checkpoint.pt"),
        ("--out-result", "evaluation JSON to write (per trial)"),
    ],
    "register": [
        ("--config", "resolved config.yaml"),
        ("--checkpoint", "final checkpoint.pt"),
        ("--history", "the run's metrics.jsonl"),
    ],
    "ingest": [
        ("--out-decision", "decision.json to write"),
        ("--out-snapshot", "snapshot.json (the listing) to write"),
        ("--out-config", "resolved config.yaml to write"),
        ("--out-manifest", "manifest.tsv to write"),
        ("--out-checkpoint", "initial (warm-start) checkpoint.pt to write"),
        ("--out-history", "empty metrics.jsonl to write"),
    ],
    "promote": [
        ("--config", "resolved config.yaml"),
        ("--decision", "decision.json of the ingest step"),
        ("--snapshot", "snapshot.json of the ingest step"),
        ("--initial-checkpoint", "the ingest step's checkpoint.pt (the champion's weights)"),
        ("--checkpoint", "final checkpoint.pt"),
        ("--history", "the run's metrics.jsonl"),
        ("--out-result", "result.json to write"),
    ],
}
ROUND_STEPS = ("cluster", "match", "train")
CONFIG_STEPS = ("start", "ingest")  # resolve a config from files and overrides


def step_modules() -> dict[str, ModuleType]:
    """Step name -> its module in `mmm_core.steps` (each has a ``run`` function)."""
    from mmm_core.steps import (
        cluster,
        evaluate,
        extract,
        ingest,
        match,
        promote,
        register,
        start,
        train,
    )

    return {
        "start": start,
        "extract": extract,
        "cluster": cluster,
        "match": match,
        "train": train,
        "evaluate": evaluate,
        "register": register,
        "ingest": ingest,
        "promote": promote,
    }


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from mmm_core.arguments import add_config_arguments
    from mmm_core.steps import STEPS

    sub = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    for name in STEPS:
        step = sub.add_parser(name, help=f"the {name} step")
        if name in CONFIG_STEPS:
            add_config_arguments(step)
        if name == "ingest":
            step.add_argument("--rounds", type=int, required=True, help="stage-2 rounds")
            step.add_argument(
                "--min-new-images",
                type=int,
                required=True,
                help="train only when at least this many images are new or changed",
            )
            step.add_argument(
                "--state-uri",
                default="",
                help="retraining state (default <data root>/.mmm/retrain-<model name>.json)",
            )
        if name == "promote":
            step.add_argument(
                "--min-improvement",
                type=float,
                default=0.0,
                help="promote only when mAP beats the champion's by more than this",
            )
            step.add_argument(
                "--promote-without-champion",
                action="store_true",
                help="with no champion yet, promote this stage-2-only run all the same",
            )
        for flag, help_text in ARGUMENTS[name]:
            step.add_argument(flag, required=True, help=help_text)
        if name in ROUND_STEPS:
            step.add_argument("--round", type=int, required=True, help="round index (0-based)")
        step.add_argument("--out-metrics", help="metrics.json to write")


def main(args: argparse.Namespace) -> int:
    from mmm_core.steps.common import write_json

    module = step_modules()[args.step]
    values = vars(args)
    if args.step == "start":
        metrics = module.run(
            args.config, args.overrides, args.out_config, args.out_manifest, args.out_checkpoint
        )
    elif args.step == "ingest":
        outputs = [values[flag[2:].replace("-", "_")] for flag, _ in ARGUMENTS["ingest"]]
        metrics = module.run(
            args.config,
            args.overrides,
            args.rounds,
            args.min_new_images,
            args.state_uri,
            *outputs,
        )
    elif args.step == "promote":
        positional = [values[flag[2:].replace("-", "_")] for flag, _ in ARGUMENTS["promote"]]
        metrics = module.run(
            *positional,
            min_improvement=args.min_improvement,
            allow_first=args.promote_without_champion,
        )
    else:
        positional = [values[flag[2:].replace("-", "_")] for flag, _ in ARGUMENTS[args.step]]
        if args.step in ROUND_STEPS:
            positional.insert(len(positional) - 1, args.round)
        metrics = module.run(*positional)
    if args.out_metrics:
        write_json(args.out_metrics, metrics)
    for key, value in sorted(metrics.items()):
        print(f"{key}: {value}")
    return 0
