"""Strict JSON for the run's files: NumPy scalars unwrapped, NaN and infinities as null."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["json_line", "jsonable"]


def jsonable(value: Any) -> Any:
    """Plain JSON data: NumPy scalars unwrapped, NaN and infinities as None (null)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_line(row: dict[str, Any]) -> str:
    """One metrics.jsonl line (strict JSON, newline-terminated)."""
    return json.dumps(jsonable(row), allow_nan=False) + "\n"
