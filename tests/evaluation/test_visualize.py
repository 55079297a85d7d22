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
