"""What the cluster and match steps hand to the train step: the round's targets, by stage.

All arrays align with the per-modality feature rows (manifest order). Saved as one ``.npz``
(the pipeline's "targets" artifact) with its stage; `load_targets` returns the stage's class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

__all__ = ["RoundTargets", "Stage1Targets", "Stage2Targets", "load_targets"]


class _Saved:
    """``save(path)``: every array field plus the stage, in one ``.npz``."""

    stage: ClassVar[int]

    def save(self, path: str | Path) -> None:
        arrays = {
            f.name: np.asarray(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if getattr(self, f.name) is not None
        }
        with open(path, "wb") as handle:  # np.savez would append ".npz" to other names
            np.savez(handle, stage=np.int64(self.stage), **arrays)

    @property
    def feature_dim(self) -> int:
        return int(self.centres_visible.shape[-1])  # type: ignore[attr-defined]


@dataclass
class Stage1Targets(_Saved):
    """Stage 1 (CMC): pseudo-labels and single memories, plus the CMC joint memory.

    labels_visible (N_v,), labels_infrared (N_r,): int64 intra-modality pseudo-labels,
        -1 = DBSCAN noise.
    centres_visible (C_v, d), centres_infrared (C_r, d): float32, normalised cluster means.
    joint_visible (N_v,), joint_infrared (N_r,): int64 joint CMC labels, numbered over the
        joint clusters holding both modalities, -1 otherwise (no CMC term); None without CMC.
    centres_joint (C_j, d): ``normalise(mean_v + mean_r)`` per joint cluster
        (`mmm_core.clustering.cmc.joint_centres`).
    """

    stage: ClassVar[int] = 1
    labels_visible: np.ndarray
    labels_infrared: np.ndarray
    centres_visible: np.ndarray
    centres_infrared: np.ndarray
    joint_visible: np.ndarray | None = None
    joint_infrared: np.ndarray | None = None
    centres_joint: np.ndarray | None = None


@dataclass
class Stage2Targets(_Saved):
    """Stage 2 (MMLM + SCA): multi-memories, the matching and the SCA weights.

    labels_visible (N_v,), labels_infrared (N_r,): int64 pseudo-labels, -1 = noise.
    centres_visible (C_v, K, d), centres_infrared (C_r, K, d): sub-cluster memories.
    mask_visible (C_v, K), mask_infrared (C_r, K): bool, valid slots.
    v2r (C_v,), r2v (C_r,): int64 total matching maps.
    weights_v2r (C_v, C_r), weights_r2v (C_r, C_v): float32 SCA soft weights.
    cost (C_v, C_r): float32 matching cost (kept for diagnostics).
    """

    stage: ClassVar[int] = 2
    labels_visible: np.ndarray
    labels_infrared: np.ndarray
    centres_visible: np.ndarray
    centres_infrared: np.ndarray
    mask_visible: np.ndarray
    mask_infrared: np.ndarray
    v2r: np.ndarray
    r2v: np.ndarray
    weights_v2r: np.ndarray
    weights_r2v: np.ndarray
    cost: np.ndarray | None = None


RoundTargets = Stage1Targets | Stage2Targets


def load_targets(path: str | Path) -> RoundTargets:
    """The targets a match step saved, as `Stage1Targets` or `Stage2Targets`."""
    with np.load(path, allow_pickle=False) as data:
        values = {name: data[name] for name in data.files}
    stage = int(values.pop("stage", -1))
    classes = {1: Stage1Targets, 2: Stage2Targets}
    if stage not in classes:
        raise ValueError(f"{path}: targets of unknown stage {stage}")
    cls = classes[stage]
    names = {f.name for f in dataclasses.fields(cls)}
    values.pop("feature_dim", None)  # files of earlier versions
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{path}: unknown stage-{stage} target arrays {sorted(unknown)}")
    return cls(**values)
