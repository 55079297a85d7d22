"""Tiny SYSU-MM01 and RegDB folders in the real layouts, with real (tiny) image files."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

# id -> {camera: number of images}; id 4 has no cam2 and no cam6 images; id 9 is a train id.
SYSU_TEST_IMAGES = {
    1: {"cam1": 3, "cam2": 2, "cam3": 2, "cam4": 2, "cam5": 1, "cam6": 1},
    2: {"cam1": 2, "cam2": 3, "cam3": 1, "cam4": 1, "cam5": 2, "cam6": 2},
    3: {"cam1": 1, "cam2": 1, "cam3": 2, "cam4": 3, "cam5": 1, "cam6": 1},
    4: {"cam1": 2, "cam3": 1, "cam4": 1, "cam5": 1},
}


def _write_image(path: Path, value: int, size: tuple[int, int] = (8, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = (value * 37 % 256, value * 91 % 256, value * 53 % 256)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture()
def sysu_root(tmp_path: Path) -> Path:
    root = tmp_path / "SYSU-MM01"
    counter = 0
    for pid, cameras in {**SYSU_TEST_IMAGES, 9: dict.fromkeys(SYSU_TEST_IMAGES[1], 1)}.items():
        for camera, count in cameras.items():
            for index in range(1, count + 1):
                counter += 1
                _write_image(root / camera / f"{pid:04d}" / f"{index:04d}.jpg", counter)
    (root / "exp").mkdir()
    (root / "exp" / "test_id.txt").write_text(",".join(str(p) for p in SYSU_TEST_IMAGES) + "\n")
    (root / "exp" / "train_id.txt").write_text("9\n")
    (root / "exp" / "val_id.txt").write_text("9\n")
    return root


@pytest.fixture()
def regdb_root(tmp_path: Path) -> Path:
    """RegDB trial 1: 3 test ids x 2 images per modality (plus one train id)."""
    root = tmp_path / "RegDB"
    (root / "idx").mkdir(parents=True)
    counter = 0
    for split, ids in (("train", [7]), ("test", [1, 2, 3])):
        for modality, folder in (("visible", "Visible"), ("thermal", "Thermal")):
            lines = []
            for pid in ids:
                for index in range(2):
                    counter += 1
                    rel = f"{folder}/{pid}/{modality}_{pid}_{index}.bmp"
                    _write_image(root / rel, counter)
                    lines.append(f"{rel} {pid - 1}")
            (root / "idx" / f"{split}_{modality}_1.txt").write_text("\n".join(lines) + "\n")
    return root
