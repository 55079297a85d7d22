"""Step "train" (GPU): checkpoint + targets -> new checkpoint after one round's iterations.

Runs data-parallel when launched by torchrun (``torchrun --nproc_per_node N -m
mmm_core.steps.train ...``, which `launch` does for ``processes > 1``): gloo on CPU, NCCL on
CUDA, one GPU per process; rank 0 writes the outputs. N processes make the same updates as
one process with ``train.accumulate = N`` (tests/steps/test_steps.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmm_core.data import Manifest
from mmm_core.engine import distributed
from mmm_core.engine.budget import check_batch_fits
from mmm_core.engine.build import build_network, build_trainer, dataset_root
from mmm_core.engine.checkpoint import load_checkpoint, save_checkpoint
from mmm_core.engine.features import resolve_device
from mmm_core.engine.lifecycle import restore_state, state_of
from mmm_core.engine.phases import RoundContext, train_one_round
from mmm_core.engine.schedule import stage_of_round
from mmm_core.engine.targets import load_targets
from mmm_core.steps.common import read_config, write_json

__all__ = ["launch", "run"]


def run(
    config_path: str | Path,
    manifest_path: str | Path,
    checkpoint_path: str | Path,
    targets_path: str | Path,
    round_index: int,
    out_checkpoint: str | Path,
    *,
    progress: bool = False,
) -> dict[str, float]:
    cfg = read_config(config_path)
    device = resolve_device(cfg.train.device)
    ddp = distributed.init_from_environment(device.type)
    if ddp and device.type == "cuda":
        import os

        device = resolve_device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    if not ddp:  # (a rank's share of the batch is not the whole)
        check_batch_fits(cfg, device)
    root = dataset_root(cfg)
    manifest = Manifest.read(manifest_path, root)
    targets = load_targets(targets_path)
    state = load_checkpoint(checkpoint_path, map_location=device)
    if state.next_round != round_index:
        raise ValueError(
            f"{checkpoint_path}: checkpoint is at round {state.next_round}, step asked for "
            f"round {round_index}"
        )
    model = build_network(cfg.replace(**{"model.pretrained": "none"}), device)
    network = model
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        network = DistributedDataParallel(model, device_ids=ids)
    trainer = build_trainer(cfg, network, device)
    stage = stage_of_round(cfg, round_index)
    restore_state(trainer, model, state, stage)
    ctx = RoundContext(cfg, root, manifest, model, trainer, device, progress)
    losses = train_one_round(ctx, round_index, targets)
    if distributed.rank() == 0:
        save_checkpoint(out_checkpoint, state_of(trainer, model, round_index + 1, cfg))
    return losses


def launch(
    config_path: str | Path,
    manifest_path: str | Path,
    checkpoint_path: str | Path,
    targets_path: str | Path,
    round_index: int,
    out_checkpoint: str | Path,
    *,
    processes: int = 1,
) -> dict[str, float]:
    """`run` in this process (``processes == 1``), or under ``torchrun --standalone
    --nproc_per_node=processes`` (one node; rank 0 writes the checkpoint and the metrics)."""
    if processes <= 1:
        return run(
            config_path, manifest_path, checkpoint_path, targets_path, round_index, out_checkpoint
        )
    import json
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mmm-train-") as scratch:
        metrics_path = Path(scratch) / "metrics.json"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", "-m", "mmm_core.steps.train",
            "--config", str(config_path), "--manifest", str(manifest_path),
            "--checkpoint", str(checkpoint_path), "--targets", str(targets_path),
            "--round", str(round_index), "--out-checkpoint", str(out_checkpoint),
            "--out-metrics", str(metrics_path),
        ]  # fmt: skip
        # one thread per process unless the caller chose: torchrun's own default, made explicit
        env = {"OMP_NUM_THREADS": "1", **os.environ}
        done = subprocess.run(command, env=env)
        if done.returncode != 0:
            raise RuntimeError(
                f"torchrun with {processes} processes exited with {done.returncode} "
                "(the ranks' errors are above)"
            )
        return json.loads(metrics_path.read_text())


def main(argv: list[str] | None = None) -> int:
    """Entry point for torchrun: the same arguments as ``mmm step train``."""
    parser = argparse.ArgumentParser(prog="mmm_core.steps.train")
    for name in ("config", "manifest", "checkpoint", "targets", "out-checkpoint"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--out-metrics")
    args = parser.parse_args(argv)
    try:
        metrics = run(
            args.config,
            args.manifest,
            args.checkpoint,
            args.targets,
            args.round,
            args.out_checkpoint,
        )
        if args.out_metrics and distributed.rank() == 0:
            write_json(args.out_metrics, metrics)
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
