"""Images checked before anything trains on them.

`unreadable_images` decodes files in parallel (threads: PIL decodes without the GIL) and
returns every one that cannot be read, with the reason, so that a bad file is found in
seconds, not as a crash in a DataLoader worker or at the first evaluation after a whole
round. JPEGs are decoded at 1/8 scale (libjpeg's DCT scaling): every byte of the entropy
stream is still read, so truncated and corrupt files fail as they would in training, at a
fraction of the cost (about 0.1 ms per bench image here).

`run_images` lists every image a run reads (training, then every image the test protocols
can read, `test_images`); `check_run_images` is what ``mmm train`` and the pipeline's start
step run before anything is written, and ``mmm data`` lists every unreadable image of a
dataset with `unreadable_images`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from mmm_core.data.manifest import DatasetError

__all__ = [
    "check_run_images",
    "decode_error",
    "run_images",
    "test_images",
    "unreadable_images",
]

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


def run_images(
    format: str, root: str | Path, trial: int = 1, train: Sequence[str] = ()
) -> list[str]:
    """Every image a run reads: the training images (`train`, or the training manifest's
    when empty), then the test images (`test_images`), each once."""
    if not train:
        from mmm_core.data import train_manifest

        train = train_manifest(format, root, trial).full_paths()
    return list(dict.fromkeys([*train, *test_images(format, root, trial)]))


def check_run_images(
    format: str,
    root: str | Path,
    trial: int = 1,
    train: Sequence[str] = (),
    progress: bool = False,
) -> int:
    """Decode every image of a run (`run_images`) before it starts; raises DatasetError naming
    the unreadable ones (the first `SHOWN` of them and how many in all). Returns the count."""
    paths = run_images(format, root, trial, train)
    bad = unreadable_images(paths, progress=progress, desc="check images")
    if bad:
        named = "; ".join(f"{path}: {reason}" for path, reason in bad[:SHOWN])
        more = ""
        if len(bad) > SHOWN:
            more = f" (and {len(bad) - SHOWN} more: `mmm data` lists them all)"
        raise DatasetError(
            Path(root),
            f"{len(bad)} of {len(paths)} images (training and test) cannot be read, so the run "
            f"would fail: {named}{more}",
        )
    return len(paths)
