"""Manifest: relabelling, selection, TSV round trip, bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmm_core.data import DatasetError, Manifest


def small_manifest() -> Manifest:
    return Manifest.from_rows(
        "root",
        ["cam1/0007/0001.jpg", "cam3/0007/0001.jpg", "cam1/0002/0001.jpg", "cam6/0010/0002.jpg"],
        [7, 7, 2, 10],
        [1, 3, 1, 6],
        [0, 1, 0, 1],
    )


def test_relabel_by_sorted_union() -> None:
    manifest = small_manifest()
    assert manifest.labels.tolist() == [1, 1, 0, 2]
    assert manifest.num_ids == 3


def test_modality_selection_relabels_subset() -> None:
    infrared = small_manifest().modality("infrared")
    assert infrared.paths == ("cam3/0007/0001.jpg", "cam6/0010/0002.jpg")
    assert infrared.labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match="unknown modality"):
        small_manifest().modality("thermal")


def test_tsv_round_trip(tmp_path: Path) -> None:
    manifest = small_manifest()
    manifest.write(tmp_path / "m.tsv")
    back = Manifest.read(tmp_path / "m.tsv", root="elsewhere")
    assert back.paths == manifest.paths and back.root == "elsewhere"
    for column in ("pids", "labels", "camids", "modalities"):
        np.testing.assert_array_equal(getattr(back, column), getattr(manifest, column))


def test_tsv_bad_row_named(tmp_path: Path) -> None:
    small_manifest().write(tmp_path / "m.tsv")
    lines = (tmp_path / "m.tsv").read_text().splitlines()
    lines[3] = lines[3].replace("visible", "ultraviolet")
    (tmp_path / "m.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"m.tsv:4: malformed row"):
        Manifest.read(tmp_path / "m.tsv", root=".")


def test_tsv_bad_header(tmp_path: Path) -> None:
    (tmp_path / "m.tsv").write_text("path\tid\n")
    with pytest.raises(DatasetError, match=r"m.tsv:1: expected the header"):
        Manifest.read(tmp_path / "m.tsv", root=".")
