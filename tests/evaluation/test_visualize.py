"""Ranked-list grid (PNG), ranked-list page (HTML) and CMC curve (PNG)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmm_core.evaluation.visualize import (
    CORRECT_COLOUR,
    WRONG_COLOUR,
    save_cmc_curve,
    save_ranked_grid,
    save_ranked_html,
    save_round_curves,
)


@pytest.fixture()
def images(tmp_path: Path) -> list[str]:
    paths = []
    for index, (mode, value) in enumerate(
        [("RGB", (200, 200, 0)), ("L", 128), ("RGB", (0, 0, 255))]
    ):
        path = tmp_path / f"img{index}.jpg"
        Image.new(mode, (10, 20), value).save(path)
        paths.append(str(path))
    return paths


def test_ranked_grid_layout_and_border_colours(tmp_path, images):
    indices = np.array([[1, 2, -1], [2, 0, 1]])
    correct = np.array([[True, False, False], [False, True, False]])
    out = save_ranked_grid(
        images[:2],
        images,
        indices,
        correct,
        tmp_path / "sub" / "grid.png",
        cell_size=(16, 32),
        border=2,
        gap=4,
    )
    with Image.open(out) as picture:
        assert picture.format == "PNG"
        picture = picture.convert("RGB")
        cell_w, cell_h = 16 + 4, 32 + 4
        assert picture.size == (4 * cell_w + 4, 2 * cell_h)

        def frame(row: int, k: int) -> tuple[int, int, int]:
            return picture.getpixel((cell_w + 4 + k * cell_w, row * cell_h))

        assert frame(0, 0) == CORRECT_COLOUR and frame(0, 1) == WRONG_COLOUR
        assert frame(1, 0) == WRONG_COLOUR and frame(1, 1) == CORRECT_COLOUR
        # A gray (1-channel) gallery image is drawn as RGB gray.
        assert picture.getpixel((cell_w + 4 + 2, 2 + 10)) == (128, 128, 128)


def test_ranked_html_is_self_contained(tmp_path, images):
    indices = np.array([[0, 2]])
    out = save_ranked_html(
        images[1:2],
        images,
        indices,
        np.array([[True, False]]),
        tmp_path / "ranked.html",
        title="t <1>",
    )
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "t &lt;1&gt;" in page
    sources = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(sources) == 3  # query + two ranked items
    assert all(base64.b64decode(s).startswith(b"\x89PNG") for s in sources)
    assert "rgb(30,170,60)" in page and "rgb(210,40,40)" in page


def test_ranked_inputs_are_checked(tmp_path, images):
    with pytest.raises(ValueError, match="outside a gallery"):
        save_ranked_grid(
            images[:1], images, np.array([[5]]), np.array([[True]]), tmp_path / "x.png"
        )
    with pytest.raises(ValueError, match="shape"):
        save_ranked_html(
            images[:2], images, np.array([[0]]), np.array([[True]]), tmp_path / "x.html"
        )


def test_cmc_curve_png(tmp_path):
    out = save_cmc_curve(
        {"sysu/all/single": np.linspace(0.3, 0.9, 20), "sysu/indoor/single": np.ones(20)},
        tmp_path / "cmc.png",
    )
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.size == (600, 400)
        colours = picture.convert("RGB").getcolors(maxcolors=1 << 16)
        assert len(colours) > 10  # something was drawn
    with pytest.raises(ValueError, match="no CMC"):
        save_cmc_curve({}, tmp_path / "none.png")


def _round_rows(n: int = 4) -> list[dict]:
    rows = []
    for r in range(n):
        stage = 1 if r < n // 2 else 2
        rows.append(
            {
                "round": r,
                "stage": stage,
                "ari_visible": 0.3 + 0.05 * r,
                "ari_infrared": 0.2 + 0.06 * r,
                "correspondence_accuracy": None if stage == 1 else 0.1 * r,
                "oracle_match_accuracy": 0.05,
                "cross_chance": 0.02,
                "rank1": 0.1 + 0.02 * r,
                "mAP": 0.2 + 0.01 * r,
            }
        )
    rows[1].pop("mAP")  # a round without evaluation is a gap, not an error
    return rows


def _count(picture: Image.Image, rgb: tuple[int, int, int], tol: int = 10) -> int:
    pixels = np.asarray(picture.convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).max(axis=2) <= tol).sum())


def test_round_curves_png(tmp_path):
    out = save_round_curves({"seed1": _round_rows()}, tmp_path / "rounds.png")
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.size == (1200, 360)
        assert _count(picture, (31, 119, 180)) > 200  # C0: ARI visible, matching, R1
        assert _count(picture, (44, 160, 44)) > 50  # C2: chance
    two = save_round_curves({"a": _round_rows(), "b": _round_rows(6)}, tmp_path / "two.png")
    assert two.is_file()
    with pytest.raises(ValueError, match="no rounds"):
        save_round_curves({"a": []}, tmp_path / "none.png")


def test_mmm_rounds_cli_reads_runs_and_names_bad_lines(tmp_path, capsys):
    import json

    from mmm_cli.main import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _round_rows()))
    assert (
        main(["rounds", str(run), str(run / "metrics.jsonl"), "--out", str(tmp_path / "c.png")])
        == 0
    )
    assert "2 run(s)" in capsys.readouterr().out and (tmp_path / "c.png").is_file()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.jsonl").write_text(json.dumps(_round_rows()[0]) + "\n{oops\n")
    assert main(["rounds", str(bad), "--out", str(tmp_path / "d.png")]) == 2
    assert "bad/metrics.jsonl:2: not a JSON object" in capsys.readouterr().err
    assert main(["rounds", str(tmp_path / "missing"), "--out", str(tmp_path / "e.png")]) == 2
    assert "no such metrics file" in capsys.readouterr().err
