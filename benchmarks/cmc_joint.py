"""What CMC's joint clustering makes of one checkpoint's training features, per expansion.

    PYTHONPATH=. .venv/bin/python -m benchmarks.cmc_joint RUN_FOLDER [RUN_FOLDER ...]

RUN_FOLDER is a run folder with ``config.yaml`` and ``checkpoint.pt`` (e.g. a ladder trunk,
``benchmarks/results/accuracy/runs/sysu/seed1/trunk``). For each reading of
``cluster.joint_expansion`` (balanced, released) it prints one JSON line: the joint clusters,
those holding both modalities, the noise fraction, the largest and median cluster size, the
mean purity of the both-modality clusters (the majority identity's share), the fraction of
images in a both-modality cluster (what the joint memory trains on), and the correspondence
accuracy and unified ARI of the joint-memory labels (the ladder's stage-1 columns).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch


def joint_summary(run: Path) -> list[dict]:
    """One summary per expansion for the checkpoint in `run` (CPU, one thread)."""
    from mmm_core.clustering.cmc import cmc_joint_labels
    from mmm_core.config import load_config
    from mmm_core.data import train_manifest
    from mmm_core.engine.build import dataset_root, load_network
    from mmm_core.engine.phases import extract_train_features
    from mmm_core.evaluation.diagnostics import correspondence_diagnostics

    cfg = load_config([run / "config.yaml"])
    root = dataset_root(cfg)
    manifest = train_manifest(cfg.data.format, root, cfg.data.trial)
    cpu = torch.device("cpu")
    model = load_network(cfg, run / "checkpoint.pt", cpu)
    features_v, features_r = extract_train_features(cfg, model, manifest, cpu, False)
    true_v = manifest.modality("visible").pids
    true_r = manifest.modality("infrared").pids
    truth = np.concatenate([true_v, true_r])
    c = cfg.cluster
    out = []
    for expansion in ("balanced", "released"):
        joint = cmc_joint_labels(
            features_v, features_r, c.joint_k1, c.joint_k2, c.joint_eps, c.min_samples,
            expansion=expansion,
        )  # fmt: skip
        labels = np.concatenate([joint.visible_labels, joint.infrared_labels])
        sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(1, int)
        purity = [
            np.bincount(truth[labels == k]).max() / int((labels == k).sum())
            for k in np.flatnonzero(joint.has_both)
        ]
        memory_v, memory_r = joint.memory_labels()
        count = joint.num_cross_modality
        identity = np.arange(count)
        corr = (
            correspondence_diagnostics(memory_v, memory_r, true_v, true_r, identity, identity)
            if count
            else {}
        )
        out.append(
            {
                "run": str(run),
                "expansion": expansion,
                "clusters": joint.num_clusters,
                "both_modalities": count,
                "noise": round(float((labels < 0).mean()), 3),
                "largest": int(sizes.max()),
                "largest_share": round(float(sizes.max() / labels.size), 3),
                "median_size": float(np.median(sizes)),
                "purity_both": round(float(np.mean(purity)), 3) if purity else None,
                "in_joint_memory": round(
                    float(((memory_v >= 0).sum() + (memory_r >= 0).sum()) / labels.size), 3
                ),
                "correspondence": round(corr["correspondence/v2r_accuracy"], 3) if corr else None,
                "unified_ari": round(corr["correspondence/unified_ari"], 3) if corr else None,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    runs = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not runs or any(not (r / "checkpoint.pt").is_file() for r in runs):
        print(__doc__, file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    for run in runs:
        for line in joint_summary(run):
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
