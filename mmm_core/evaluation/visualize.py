"""Pictures of results: ranked-list grid (PNG), ranked-list HTML page, CMC and round curves.

Inputs are plain arrays and image paths (see `protocols.RankedLists`): for each shown query,
the indices of its top-k gallery items (-1 = none) and whether each has the query's id.
Images are read with PIL and converted to RGB (IR images are 1- or 3-channel gray). The CMC
plot uses matplotlib's Agg canvas directly (no pyplot global state, no display needed).
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "CORRECT_COLOUR",
    "WRONG_COLOUR",
    "save_cmc_curve",
    "save_ranked_grid",
    "save_ranked_html",
    "save_round_curves",
]

log = logging.getLogger(__name__)

CORRECT_COLOUR = (30, 170, 60)
WRONG_COLOUR = (210, 40, 40)
_QUERY_COLOUR = (60, 60, 60)
_EMPTY_COLOUR = (235, 235, 235)


def _check_ranked(
    query_paths: Sequence[str],
    gallery_paths: Sequence[str],
    indices: np.ndarray,
    correct: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    indices = np.asarray(indices)
    correct = np.asarray(correct, dtype=bool)
    if indices.ndim != 2 or indices.shape[0] != len(query_paths):
        raise ValueError(
            f"indices must have shape ({len(query_paths)}, top_k), got {indices.shape}"
        )
    if correct.shape != indices.shape:
        raise ValueError(f"correct {correct.shape} and indices {indices.shape} differ in shape")
    if indices.size and indices.max() >= len(gallery_paths):
        raise ValueError(f"index {indices.max()} outside a gallery of {len(gallery_paths)}")
    return indices, correct


def _thumbnail(path: str, size: tuple[int, int]) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB").resize(size, Image.Resampling.BILINEAR)


def save_ranked_grid(
    query_paths: Sequence[str],
    gallery_paths: Sequence[str],
    indices: np.ndarray,
    correct: np.ndarray,
    out_path: str | Path,
    cell_size: tuple[int, int] = (64, 128),
    border: int = 4,
    gap: int = 6,
) -> Path:
    """Draw one row per query: the query (gray frame), then its ranked gallery images.

    Args:
        query_paths: (num_shown,) query image paths.
        gallery_paths: gallery image paths that `indices` point into.
        indices: (num_shown, top_k) int gallery indices in ranked order, -1 = empty cell.
        correct: (num_shown, top_k) bool; green frame when True, red otherwise.
        out_path: PNG file to write (parent folders created).
        cell_size: (width, height) of each image in pixels, frame excluded.
        border: frame width in pixels; gap: space between the query and its list.

    Returns:
        The written path.
    """
    indices, correct = _check_ranked(query_paths, gallery_paths, indices, correct)
    num_rows, top_k = indices.shape
    width, height = cell_size
    cell_w, cell_h = width + 2 * border, height + 2 * border
    canvas = Image.new(
        "RGB", (max(1, (top_k + 1) * cell_w + gap), max(1, num_rows * cell_h)), "white"
    )
    draw = ImageDraw.Draw(canvas)

    def paste(path: str | None, x: int, y: int, colour: tuple[int, int, int]) -> None:
        draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=colour)
        if path is None:
            draw.rectangle(
                [x + border, y + border, x + border + width - 1, y + border + height - 1],
                fill=_EMPTY_COLOUR,
            )
        else:
            canvas.paste(_thumbnail(path, cell_size), (x + border, y + border))

    for row in range(num_rows):
        y = row * cell_h
        paste(query_paths[row], 0, y, _QUERY_COLOUR)
        for k in range(top_k):
            x = cell_w + gap + k * cell_w
            index = int(indices[row, k])
            if index < 0:
                paste(None, x, y, _EMPTY_COLOUR)
            else:
                colour = CORRECT_COLOUR if correct[row, k] else WRONG_COLOUR
                paste(gallery_paths[index], x, y, colour)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path, format="PNG")
    log.info("ranked-list grid written to %s", out_path)
    return out_path


def _data_uri(path: str, size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    _thumbnail(path, size).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def save_ranked_html(
    query_paths: Sequence[str],
    gallery_paths: Sequence[str],
    indices: np.ndarray,
    correct: np.ndarray,
    out_path: str | Path,
    cell_size: tuple[int, int] = (64, 128),
    title: str = "Ranked lists",
) -> Path:
    """A self-contained HTML page of the ranked lists (thumbnails embedded as base64 PNG).

    Same inputs as `save_ranked_grid`; each image carries its file name as a tooltip.
    """
    indices, correct = _check_ranked(query_paths, gallery_paths, indices, correct)
    width, height = cell_size

    def cell(path: str, colour: tuple[int, int, int], label: str) -> str:
        rgb = "rgb({},{},{})".format(*colour)
        tooltip = html.escape(f"{label}: {path}", quote=True)
        return (
            f'<td><img src="{_data_uri(path, cell_size)}" width="{width}" height="{height}" '
            f'style="border:4px solid {rgb}" title="{tooltip}" alt="{html.escape(label)}"></td>'
        )

    rows = []
    for row in range(indices.shape[0]):
        cells = [cell(query_paths[row], _QUERY_COLOUR, "query")]
        for k, index in enumerate(indices[row]):
            if index < 0:
                cells.append("<td></td>")
                continue
            verdict = "correct" if correct[row, k] else "wrong"
            colour = CORRECT_COLOUR if correct[row, k] else WRONG_COLOUR
            cells.append(cell(gallery_paths[int(index)], colour, f"rank {k + 1} ({verdict})"))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    header = "".join(f"<th>{k + 1}</th>" for k in range(indices.shape[1]))
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif} td{padding:2px} th{font-weight:normal}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
        "<p>Each row: the query, then its ranked gallery; green = same identity, "
        "red = different.</p>"
        f"<table><tr><th>query</th>{header}</tr>\n" + "\n".join(rows) + "\n</table></body></html>\n"
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8")
    log.info("ranked-list page written to %s", out_path)
    return out_path


def _save_figure(figure, out_path: str | Path, what: str) -> Path:
    """Lay out a matplotlib Figure and write it as PNG (parent folders created)."""
    figure.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path, format="png")
    log.info("%s written to %s", what, out_path)
    return out_path


def save_cmc_curve(
    curves: Mapping[str, np.ndarray],
    out_path: str | Path,
    title: str = "CMC",
) -> Path:
    """Plot CMC curves (fractions, one per setting, ranks 1..len) to a PNG in percent."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("no CMC curve to plot")
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for name, curve in curves.items():
        curve = np.asarray(curve, dtype=np.float64)
        if curve.ndim != 1 or curve.size == 0:
            raise ValueError(f"CMC curve {name!r} must be a non-empty 1-D array")
        ranks = np.arange(1, curve.size + 1)
        axes.plot(ranks, 100 * curve, marker="o", markersize=3, label=name)
    axes.set_xlabel("rank")
    axes.set_ylabel("matching rate (%)")
    axes.set_ylim(0, 100)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    return _save_figure(figure, out_path, "CMC curve")


# Panels of the round curves: (title, [(row key, label)], y label); values are fractions.
_ROUND_PANELS = (
    ("pseudo-labels", [("ari_visible", "ARI visible"), ("ari_infrared", "ARI infrared")], "ARI"),
    (
        "cross-modality",
        [
            ("correspondence_accuracy", "matching accuracy"),
            ("oracle_match_accuracy", "xmod (true-id centroids)"),
            ("cross_chance", "chance"),
        ],
        "%",
    ),
    ("retrieval (test)", [("rank1", "R1"), ("mAP", "mAP")], "%"),
)


def save_round_curves(
    runs: Mapping[str, Sequence[Mapping[str, object]]],
    out_path: str | Path,
) -> Path:
    """Plot per-round metrics of one or more runs (rows of ``metrics.jsonl``) to a PNG.

    Three panels: pseudo-label ARI per modality, cross-modality accuracies (stage-2 matching,
    true-id centroid matching, chance), and test R1 / mAP. Runs share a colour per metric
    and differ by line style; a dotted vertical line marks the first stage-2 round. Missing or
    null values (a round without evaluation, stage 1 without matching) are gaps.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not runs or not any(runs.values()):
        raise ValueError("no rounds to plot")
    figure = Figure(figsize=(12, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    styles = ("-", "--", ":", "-.")
    for panel, (title, series, unit) in enumerate(_ROUND_PANELS):
        axes = figure.add_subplot(1, len(_ROUND_PANELS), panel + 1)
        scale = 100.0 if unit == "%" else 1.0
        for run_index, (name, rows) in enumerate(runs.items()):
            rounds = np.array([float(row["round"]) for row in rows])
            for colour, (key, label) in enumerate(series):
                values = np.array(
                    [np.nan if row.get(key) is None else float(row[key]) for row in rows]
                )
                if np.isnan(values).all() or (key == "cross_chance" and run_index > 0):
                    continue
                shared = len(runs) == 1 or key == "cross_chance"
                tag = label if shared else f"{label}, {name}"
                axes.plot(
                    rounds,
                    scale * values,
                    styles[run_index % len(styles)],
                    color=f"C{colour}",
                    marker="o",
                    markersize=3,
                    label=tag,
                )
            stage2 = [float(row["round"]) for row in rows if row.get("stage") == 2]
            if stage2 and run_index == 0:
                axes.axvline(min(stage2) - 0.5, color="gray", linestyle=":", linewidth=1)
        axes.set_title(title)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("round")
        axes.set_ylabel(unit)
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="x-small")
    return _save_figure(figure, out_path, "round curves")
