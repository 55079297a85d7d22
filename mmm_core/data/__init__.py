"""Dataset readers (SYSU-MM01, RegDB, synthetic), manifests, transforms, samplers, loaders."""

from __future__ import annotations

from pathlib import Path

from mmm_core.data.manifest import DatasetError, Manifest

__all__ = ["FORMATS", "DatasetError", "Manifest", "train_manifest"]

FORMATS = ("sysu", "regdb")


def train_manifest(format: str, root: str | Path, trial: int = 1) -> Manifest:
    """The training manifest of a dataset in the layout `format` ("sysu" or "regdb")."""
    from mmm_core.data import regdb, sysu

    if format == "sysu":
        return sysu.train_manifest(root)
    if format == "regdb":
        return regdb.train_manifest(root, trial)
    raise ValueError(f"unknown dataset format {format!r}; expected one of {FORMATS}")
