"""KFP v2 lightweight components: a few lines each around `mmm_core.steps` (no logic here).

The image every component runs in is `BASE_IMAGE` (one value; ``MMM_BASE_IMAGE`` overrides it
at compile time). Resource, retry and caching settings are applied in `pipelines/`.
"""

from components.steps import (
    BASE_IMAGE,
    cluster_op,
    evaluate_op,
    extract_op,
    finish_op,
    ingest_op,
    match_op,
    promote_op,
    register_op,
    start_op,
    train_op,
)

__all__ = [
    "BASE_IMAGE",
    "cluster_op",
    "evaluate_op",
    "extract_op",
    "finish_op",
    "ingest_op",
    "match_op",
    "promote_op",
    "register_op",
    "start_op",
    "train_op",
]
