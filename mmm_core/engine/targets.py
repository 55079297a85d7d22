"""What the cluster and match steps hand to the train step: the round's targets.

All arrays align with the per-modality feature rows (manifest order). Saved as one ``.npz``
(the pipeline's "targets" artifact); absent fields are simply not stored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["RoundTargets"]


@dataclass
class RoundTargets:
    """Pseudo-labels and memory initialisations of one round.

    Stage 1 (CMC):
        labels_visible (N_v,), labels_infrared (N_r,): int64 intra-modality pseudo-labels,
            -1 = DBSCAN noise.
        centres_visible (C_v, d), centres_infrared (C_r, d): float32, normalised cluster means.
        joint_visible (N_v,), joint_infrared (N_r,): int64 joint CMC labels, numbered over
            the joint clusters holding both modalities, -1 otherwise (no CMC term).
        centres_joint (C_j, d): normalised mean of (mean visible member, mean IR member).
    Stage 2 (MMLM + SCA):
        centres_visible (C_v, K, d), centres_infrared (C_r, K, d): sub-cluster memories.
        mask_visible (C_v, K), mask_infrared (C_r, K): bool, valid slots.
        v2r (C_v,), r2v (C_r,): int64 total matching maps.
        weights_v2r (C_v, C_r), weights_r2v (C_r, C_v): float32 SCA soft weights.
        cost (C_v, C_r): float32 matching cost (kept for diagnostics).
    """

    stage: int
    feature_dim: int
    labels_visible: np.ndarray
    labels_infrared: np.ndarray
    centres_visible: np.ndarray
    centres_infrared: np.ndarray
    joint_visible: np.ndarray | None = None
    joint_infrared: np.ndarray | None = None
    centres_joint: np.ndarray | None = None
    mask_visible: np.ndarray | None = None
    mask_infrared: np.ndarray | None = None
    v2r: np.ndarray | None = None
    r2v: np.ndarray | None = None
    weights_v2r: np.ndarray | None = None
    weights_r2v: np.ndarray | None = None
    cost: np.ndarray | None = None

    @property
    def num_clusters_visible(self) -> int:
        return int(self.centres_visible.shape[0])

    @property
    def num_clusters_infrared(self) -> int:
        return int(self.centres_infrared.shape[0])

    def save(self, path: str | Path) -> None:
        arrays = {
            f.name: np.asarray(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }
        with open(path, "wb") as handle:  # np.savez would append ".npz" to other names
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> RoundTargets:
        with np.load(path, allow_pickle=False) as data:
            values = {name: data[name] for name in data.files}
        values["stage"] = int(values["stage"])
        values["feature_dim"] = int(values["feature_dim"])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"{path}: unknown target arrays {sorted(unknown)}")
        return cls(**values)
