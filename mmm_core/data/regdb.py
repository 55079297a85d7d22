"""RegDB reader, for the raw release as users have it.

Layout: ``Visible/``, ``Thermal/`` and ``idx/{train,test}_{visible,thermal}_{t}.txt`` for trials
t = 1..10; each line is ``<path relative to root> <int label>``. 412 ids x 10 images per
modality; 206 / 206 train / test ids per trial. Evaluation (SPEC section 4): per trial, query
= test_visible_t and gallery = test_thermal_t (visible->thermal), and the reverse.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mmm_core.data.manifest import INFRARED, VISIBLE, DatasetError, Manifest

__all__ = ["CAMID", "read_index_file", "test_set", "train_manifest"]

log = logging.getLogger(__name__)

MODALITY_NAMES = ("visible", "thermal")
# RegDB has one camera per modality; these camera numbers are this project's convention.
CAMID = {"visible": 1, "thermal": 2}


def _check_trial(trial: int) -> None:
    if not 1 <= trial <= 10:
        raise ValueError(f"RegDB trials are numbered 1..10, got {trial}")


def _check_modality(modality: str) -> None:
    if modality not in MODALITY_NAMES:
        raise ValueError(f"unknown RegDB modality {modality!r}; expected one of {MODALITY_NAMES}")


def read_index_file(root: str | Path, path: str | Path) -> tuple[list[str], list[int]]:
    """Parse an idx file: ``(relative paths, labels)``; every bad line is named."""
    root, path = Path(root), Path(path)
    if not path.is_file():
        raise DatasetError(path, "RegDB index file not found")
    paths: list[str] = []
    labels: list[int] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DatasetError(path, f"expected '<path> <label>', got {line!r}", line=number)
        rel, raw_label = parts
        try:
            label = int(raw_label)
        except ValueError:
            raise DatasetError(
                path, f"label is not an integer: {raw_label!r}", line=number
            ) from None
        if rel in seen:
            raise DatasetError(path, f"{rel} already listed on line {seen[rel]}", line=number)
        if not (root / rel).is_file():
            raise DatasetError(path, f"image {rel} does not exist under {root}", line=number)
        seen[rel] = number
        paths.append(rel)
        labels.append(label)
    if not paths:
        raise DatasetError(path, "RegDB index file lists no images")
    return paths, labels


def _index_path(root: Path, split: str, modality: str, trial: int) -> Path:
    return root / "idx" / f"{split}_{modality}_{trial}.txt"


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise DatasetError(root, "RegDB root folder does not exist")
    for folder in ("Visible", "Thermal", "idx"):
        if not (root / folder).is_dir():
            raise DatasetError(root, f"not a RegDB root: missing folder {folder}/")


def train_manifest(root: str | Path, trial: int = 1) -> Manifest:
    """Training images of one trial: visible rows then thermal rows, in idx-file order."""
    _check_trial(trial)
    root = Path(root)
    _check_root(root)
    paths: list[str] = []
    pids: list[int] = []
    camids: list[int] = []
    modalities: list[int] = []
    for modality, code in (("visible", VISIBLE), ("thermal", INFRARED)):
        rels, labels = read_index_file(root, _index_path(root, "train", modality, trial))
        paths += rels
        pids += labels
        camids += [CAMID[modality]] * len(rels)
        modalities += [code] * len(rels)
    manifest = Manifest.from_rows(root, paths, pids, camids, modalities)
    log.info("RegDB trial %d train: %s", trial, manifest.summary())
    return manifest


def test_set(root: str | Path, trial: int, modality: str) -> tuple[list[str], np.ndarray]:
    """Test images of one modality ("visible" or "thermal"): ``(paths, pids)``, idx order."""
    _check_trial(trial)
    _check_modality(modality)
    root = Path(root)
    _check_root(root)
    index = _index_path(root, "test", modality, trial)
    rels, labels = read_index_file(root, index)
    train_rels, _ = read_index_file(root, _index_path(root, "train", modality, trial))
    shared = sorted(set(map(_id_folder, rels)) & set(map(_id_folder, train_rels)) - {None})
    if shared:
        raise DatasetError(
            index,
            f"{len(shared)} test id folder(s) also hold training images of trial {trial}: "
            f"{shared[:10]}; the splits must be disjoint",
        )
    return [str(root / r) for r in rels], np.asarray(labels, dtype=np.int64)


def _id_folder(rel: str) -> str | None:
    """The id folder of an index path (``Visible/<id>/<file>``), or None in another layout."""
    parts = Path(rel).parts
    return "/".join(parts[:2]) if len(parts) >= 3 else None
