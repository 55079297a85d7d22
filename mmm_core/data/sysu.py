"""SYSU-MM01 reader, for the raw release as users have it.

Layout: ``cam1 ... cam6/<pid, 4 digits>/<idx, 4 digits>.jpg`` and ``exp/{train,val,test}_id.txt``
(each one line of comma-separated integer ids). RGB cameras: cam1, cam2 (indoor), cam4, cam5
(outdoor); IR cameras: cam3 (indoor, same room as cam2), cam6 (outdoor). Training ids are
train + val. Camera and pid are parsed from path components, never from character offsets.

The test sets follow the community reference exactly (SPEC section 4): the query is every
cam3 and cam6 image of the test ids (sorted ids, then cam3 then cam6, then sorted file names);
the gallery of trial t is drawn after ``random.seed(t)`` with Python's ``random``, ids outer,
cameras inner, one ``random.choice`` per non-empty camera folder (single-shot) or
``random.sample(files, min(10, len(files)))`` (multi-shot).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np

from mmm_core.data.manifest import INFRARED, VISIBLE, DatasetError, Manifest, list_images

__all__ = [
    "INDOOR_RGB_CAMERAS",
    "IR_CAMERAS",
    "RGB_CAMERAS",
    "gallery_set",
    "query_set",
    "read_id_file",
    "test_ids",
    "train_ids",
    "train_manifest",
]

log = logging.getLogger(__name__)

RGB_CAMERAS = ("cam1", "cam2", "cam4", "cam5")
INDOOR_RGB_CAMERAS = ("cam1", "cam2")
IR_CAMERAS = ("cam3", "cam6")
ALL_CAMERAS = ("cam1", "cam2", "cam3", "cam4", "cam5", "cam6")
MODES = ("all", "indoor")


def _camid(camera: str) -> int:
    return int(camera.removeprefix("cam"))


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise DatasetError(root, "SYSU-MM01 root folder does not exist")
    missing = [c for c in ALL_CAMERAS if not (root / c).is_dir()]
    if missing:
        raise DatasetError(root, f"not a SYSU-MM01 root: missing camera folders {missing}")


def read_id_file(path: Path) -> list[int]:
    """Ids of an ``exp/*_id.txt`` file: one line of comma-separated integers."""
    if not path.is_file():
        raise DatasetError(path, "id file not found")
    ids: list[int] = []
    lines = path.read_text().splitlines()
    content = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if not content:
        raise DatasetError(path, "id file is empty")
    for number, line in content:
        for token in line.split(","):
            token = token.strip()
            if not token:
                continue
            try:
                ids.append(int(token))
            except ValueError:
                raise DatasetError(path, f"not an integer id: {token!r}", line=number) from None
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DatasetError(path, f"ids listed twice: {duplicates[:10]}")
    return ids


def train_ids(root: str | Path) -> list[int]:
    """Training ids: train + val, sorted (395 in the real release)."""
    root = Path(root)
    ids = read_id_file(root / "exp" / "train_id.txt") + read_id_file(root / "exp" / "val_id.txt")
    return sorted(set(ids))


def test_ids(root: str | Path) -> list[int]:
    """Test ids, sorted (96 in the real release); an id that is also a training id is an
    error (the test would measure memorisation)."""
    path = Path(root) / "exp" / "test_id.txt"
    ids = sorted(read_id_file(path))
    shared = sorted(set(ids) & set(train_ids(root)))
    if shared:
        raise DatasetError(
            path,
            f"{len(shared)} test id(s) are also training ids (train_id.txt / val_id.txt): "
            f"{shared[:10]}; the splits must be disjoint",
        )
    return ids


def _id_folder(root: Path, camera: str, pid: int) -> Path:
    return root / camera / f"{pid:04d}"


def _check_ids_present(root: Path, ids: list[int], id_file: str, cameras: tuple[str, ...]) -> None:
    missing = [
        pid
        for pid in ids
        if not any(
            _id_folder(root, c, pid).is_dir() and list_images(_id_folder(root, c, pid))
            for c in cameras
        )
    ]
    if missing:
        raise DatasetError(
            root / "exp" / id_file,
            f"names {len(missing)} id(s) with no images in {list(cameras)}: {missing[:10]}",
        )


def _holds_images(camera: Path) -> bool:
    """Whether some id folder of `camera` holds an image (hidden files and empty id folders
    do not count)."""
    return any(entry.is_dir() and list_images(entry) for entry in camera.iterdir())


def train_manifest(root: str | Path) -> Manifest:
    """All training images (train + val ids), cameras cam1..cam6, in a fixed order.

    Order: camera, then id, then file name. A camera folder without any image is an error; an
    id folder that is missing from some camera is normal (not every id is seen by every
    camera).
    """
    root = Path(root)
    _check_root(root)
    ids = train_ids(root)
    _check_ids_present(root, ids, "train_id.txt / val_id.txt", ALL_CAMERAS)
    paths: list[str] = []
    pids: list[int] = []
    camids: list[int] = []
    modalities: list[int] = []
    for camera in ALL_CAMERAS:
        if not _holds_images(root / camera):
            raise DatasetError(root / camera, "camera folder holds no image")
        modality = INFRARED if camera in IR_CAMERAS else VISIBLE
        for pid in ids:
            folder = _id_folder(root, camera, pid)
            if not folder.is_dir():
                continue
            for name in list_images(folder):
                paths.append(f"{camera}/{folder.name}/{name}")
                pids.append(pid)
                camids.append(_camid(camera))
                modalities.append(modality)
    for code, name in ((VISIBLE, "RGB"), (INFRARED, "IR")):
        if code not in modalities:
            raise DatasetError(root, f"no {name} training images found")
    manifest = Manifest.from_rows(root, paths, pids, camids, modalities)
    log.info("SYSU-MM01 train: %s", manifest.summary())
    return manifest


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown SYSU-MM01 mode {mode!r}; expected one of {MODES}")


def query_set(root: str | Path, mode: str = "all") -> tuple[list[str], np.ndarray, np.ndarray]:
    """IR query of the test ids: ``(paths, pids, camids)`` in the reference order.

    Both modes use cam3 and cam6 (the mode only changes the gallery).
    """
    _check_mode(mode)
    root = Path(root)
    _check_root(root)
    ids = test_ids(root)
    _check_ids_present(root, ids, "test_id.txt", ALL_CAMERAS)
    paths: list[str] = []
    pids: list[int] = []
    camids: list[int] = []
    for pid in ids:
        for camera in IR_CAMERAS:
            folder = _id_folder(root, camera, pid)
            if not folder.is_dir():
                continue
            for name in list_images(folder):
                paths.append(str(folder / name))
                pids.append(pid)
                camids.append(_camid(camera))
    return paths, np.asarray(pids, dtype=np.int64), np.asarray(camids, dtype=np.int64)


def gallery_set(
    root: str | Path, mode: str = "all", trial: int = 0, shots: int = 1
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """RGB gallery of trial `trial` (0..9): ``(paths, pids, camids)`` in the reference order.

    `shots` = 1 is single-shot (one ``random.choice`` per id and camera); `shots` = 10 is
    multi-shot (``random.sample`` of up to 10). Python's global ``random`` is seeded with the
    trial, as the reference does; its state is restored afterwards so callers are unaffected.
    """
    _check_mode(mode)
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    root = Path(root)
    _check_root(root)
    cameras = RGB_CAMERAS if mode == "all" else INDOOR_RGB_CAMERAS
    ids = test_ids(root)
    _check_ids_present(root, ids, "test_id.txt", ALL_CAMERAS)
    saved_state = random.getstate()
    random.seed(trial)
    paths: list[str] = []
    pids: list[int] = []
    camids: list[int] = []
    try:
        for pid in ids:
            for camera in cameras:
                folder = _id_folder(root, camera, pid)
                if not folder.is_dir():
                    continue
                files = list_images(folder)
                if not files:
                    continue
                if shots == 1:
                    chosen = [random.choice(files)]
                else:
                    chosen = random.sample(files, min(shots, len(files)))
                for name in chosen:
                    paths.append(str(folder / name))
                    pids.append(pid)
                    camids.append(_camid(camera))
    finally:
        random.setstate(saved_state)
    return paths, np.asarray(pids, dtype=np.int64), np.asarray(camids, dtype=np.int64)
