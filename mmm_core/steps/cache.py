"""Where a pipeline step mirrors an ``s3://`` dataset (imports nothing heavy: the components
call it before they import their step)."""

from __future__ import annotations

import os

__all__ = ["use_cache_dir"]


def use_cache_dir(path: str) -> None:
    """Mirror remote datasets into `path` from now on ($MMM_CACHE_DIR, which
    `mmm_core.storage` reads); "" changes nothing. The pipelines pass the run's workspace
    folder (`pipelines.kube.dataset_cache_dir`)."""
    if path:
        os.environ["MMM_CACHE_DIR"] = path
