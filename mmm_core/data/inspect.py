"""Dataset statistics read with the real readers (what ``mmm data`` prints)."""

from __future__ import annotations

from pathlib import Path

from mmm_core.data import regdb, sysu, train_manifest

__all__ = ["dataset_statistics"]


def dataset_statistics(format: str, root: str | Path, trial: int = 1) -> dict[str, int]:
    """Counts of the training set and of the test sets, read exactly as training reads them."""
    stats = {f"train_{k}": v for k, v in train_manifest(format, root, trial).summary().items()}
    if format == "sysu":
        query_paths, query_pids, _ = sysu.query_set(root, "all")
        stats["test_query_images"] = len(query_paths)
        stats["test_ids"] = len(set(query_pids.tolist()))
        for mode in sysu.MODES:
            gallery_paths, _, _ = sysu.gallery_set(root, mode, trial=0)
            stats[f"test_gallery_{mode}_single_shot"] = len(gallery_paths)
    else:
        for modality in regdb.MODALITY_NAMES:
            paths, pids = regdb.test_set(root, trial, modality)
            stats[f"test_{modality}_images"] = len(paths)
            stats[f"test_{modality}_ids"] = len(set(pids.tolist()))
    return stats
