"""Small helpers shared by the steps: config and JSON files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mmm_core.config import Config, load_config
from mmm_core.engine.jsonfiles import jsonable

__all__ = [
    "log_kfp_metrics",
    "read_config",
    "read_features",
    "read_json",
    "write_features",
    "write_json",
]


def read_config(path: str | Path) -> Config:
    return load_config(path)


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """A flat JSON object; NaN and infinities become null (JSON has no NaN)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(
        json.dumps(jsonable(data), indent=1, sort_keys=True, allow_nan=False) + "\n"
    )


def write_features(path: str | Path, visible: np.ndarray, infrared: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, visible=visible.astype(np.float32), infrared=infrared.astype(np.float32))


def read_features(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        missing = {"visible", "infrared"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: features file lacks arrays {sorted(missing)}")
        return data["visible"], data["infrared"]


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def log_kfp_metrics(artifact: Any, values: dict[str, Any]) -> None:
    """Write `values` as JSON at the KFP Metrics artifact's path and log the finite numbers.

    The file is what downstream steps read (metadata does not travel reliably between steps
    under every runner); ``log_metric`` is what the KFP UI shows.
    """
    write_json(artifact.path, values)
    for key, value in values.items():
        if isinstance(value, bool | int | float | np.generic) and math.isfinite(float(value)):
            artifact.log_metric(key, float(value))
