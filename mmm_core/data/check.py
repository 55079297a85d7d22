"""Images checked before anything trains on them.

`unreadable_images` decodes files in parallel (threads: PIL decodes without the GIL) and
returns every one that cannot be read, with the reason, so that a bad file is found in
seconds, not as a crash in a DataLoader worker or at the first evaluation after a whole
round. JPEGs are decoded at 1/8 scale (libjpeg's DCT scaling): every byte of the entropy
stream is still read, so truncated and corrupt files fail as they would in training, at a
fraction of the cost (about 0.1 ms per bench image here).

`test_images` lists every image a dataset's test protocols can read; `check_test_images`
is what ``mmm train`` and the pipeline's start step run before round 1, and ``mmm data``
checks every image of a dataset with `unreadable_images`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from mmm_core.data.manifest import DatasetError

__all__ = ["check_test_images", "decode_error", "test_images", "unreadable_images"]

# How many unreadable files an error message names (all of them are logged by `mmm data`).
SHOWN = 5


def decode_error(path: str | Path) -> str | None:
    """Why the image at `path` cannot be decoded, or None when it can."""
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except FileNotFoundError:
        return "file not found"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return " ".join(str(err).split()) or type(err).__name__
    return None


def unreadable_images(
    paths: Sequence[str | Path],
    *,
    workers: int | None = None,
    progress: bool = False,
    desc: str = "check images",
) -> list[tuple[str, str]]:
    """``(path, reason)`` of every file in `paths` that cannot be decoded, in `paths` order."""
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        errors = pool.map(decode_error, paths, chunksize=64)
        bar = tqdm(errors, total=len(paths), desc=desc, disable=not progress, unit="img")
        return [(str(p), e) for p, e in zip(paths, bar, strict=True) if e is not None]


def test_images(format: str, root: str | Path, trial: int = 1) -> list[str]:
    """Every image the test protocols of `format` can read: SYSU-MM01, every image of the
    test ids in the six cameras (the query and every gallery trial draw from them); RegDB,
    the visible and thermal test images of `trial`."""
    from mmm_core.data import regdb, sysu

    if format == "sysu":
        paths = sysu.query_set(root, "all")[0]
        return paths + sysu.gallery_set(root, "all", trial=0, shots=10**9)[0]
    if format == "regdb":
        return [p for m in regdb.MODALITY_NAMES for p in regdb.test_set(root, trial, m)[0]]
    raise ValueError(f"unknown dataset format {format!r}")


def check_test_images(format: str, root: str | Path, trial: int = 1, progress: bool = False) -> int:
    """Decode every test image before training starts; raises DatasetError naming the
    unreadable ones (the first `SHOWN` of them and how many in all). Returns the count."""
    paths = test_images(format, root, trial)
    bad = unreadable_images(paths, progress=progress, desc="check test images")
    if bad:
        named = "; ".join(f"{path}: {reason}" for path, reason in bad[:SHOWN])
        more = ""
        if len(bad) > SHOWN:
            more = f" (and {len(bad) - SHOWN} more: `mmm data` lists them all)"
        raise DatasetError(
            Path(root),
            f"{len(bad)} of {len(paths)} test images cannot be read, so evaluation would fail "
            f"after the first round: {named}{more}",
        )
    return len(paths)
