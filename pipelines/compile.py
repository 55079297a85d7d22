"""Compile the pipelines to ``pipelines/compiled/*.yaml`` (``make compile``).

Each file holds one definition per distinct step and round (`pipelines.compact`). The
compiled files are committed so that a user can upload them in the KFP UI without a
Python environment; ``tests/pipelines`` fails when they differ from a fresh compile.
"""

import argparse
import sys
from pathlib import Path

from pipelines.compact import compile_pipeline
from pipelines.retrain import DEFAULT_ROUNDS, build_retrain_pipeline
from pipelines.training import build_training_pipeline

COMPILED = Path(__file__).resolve().parent / "compiled"

# file name -> (stage-1 rounds, stage-2 rounds, pipeline name)
TRAINING_VARIANTS = {
    "training-50x50.yaml": (50, 50, "mmm-training-50x50"),
    "training-3x3.yaml": (3, 3, "mmm-training-3x3"),
}
# file name -> (stage-2 rounds, pipeline name): the scheduled retraining (`mmm schedule`)
RETRAIN_VARIANTS = {
    f"retrain-{DEFAULT_ROUNDS}.yaml": (DEFAULT_ROUNDS, f"mmm-retrain-{DEFAULT_ROUNDS}"),
}


def compile_all(out_dir: Path = COMPILED) -> list[Path]:
    """Write every compiled pipeline into `out_dir`; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (stage1, stage2, pipeline_name) in TRAINING_VARIANTS.items():
        path = out_dir / name
        compile_pipeline(build_training_pipeline(stage1, stage2, pipeline_name), path)
        written.append(path)
    for name, (rounds, pipeline_name) in RETRAIN_VARIANTS.items():
        path = out_dir / name
        compile_pipeline(build_retrain_pipeline(rounds, pipeline_name), path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=COMPILED, help="output folder")
    args = parser.parse_args(argv)
    try:
        written = compile_all(args.out)
    except ValueError as exc:  # a compile-time setting ($MMM_...) that does not parse
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
