"""The dataset manifest: one row per image, in a fixed order that every step shares.

A manifest is what readers return and what the pipeline passes between steps (as TSV).
Features, pseudo-labels and memories are always arrays aligned with a manifest's rows;
nothing is keyed by file name.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "INFRARED",
    "MODALITIES",
    "VISIBLE",
    "DatasetError",
    "Manifest",
    "list_images",
    "relabel",
]

VISIBLE = 0
INFRARED = 1
MODALITIES = ("visible", "infrared")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_COLUMNS = ("path", "pid", "label", "camid", "modality")


class DatasetError(ValueError):
    """Bad dataset input, naming the file (and line) at fault.

    Raised in a DataLoader worker, it reaches the main process rebuilt from its text alone
    (``DatasetError(text)``, the worker's traceback and then the original message): that form
    keeps only the original one-line message, so the user sees what a worker-less run shows.
    """

    def __init__(
        self, path: str | Path, message: str | None = None, line: int | None = None
    ) -> None:
        if message is None:
            lines = str(path).strip().splitlines() or [""]
            original = lines[-1].split("DatasetError: ", 1)[-1]
            self.path, self.line = original.split(": ", 1)[0], None
            super().__init__(original)
            return
        self.path = str(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


def list_images(folder: Path) -> list[str]:
    """Sorted file names of the images in `folder` (hidden files and non-images skipped)."""
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.is_file()
        and not entry.name.startswith(".")
        and entry.suffix.lower() in IMAGE_SUFFIXES
    )


def relabel(pids: np.ndarray) -> np.ndarray:
    """Map ids to 0..C-1 by the sorted union of ids."""
    _, labels = np.unique(pids, return_inverse=True)
    return labels.astype(np.int64)


@dataclass(frozen=True, eq=False)
class Manifest:
    """Images of one split, aligned columns.

    Attributes:
        root: dataset root the relative `paths` are resolved against.
        paths: POSIX paths relative to `root`.
        pids: (N,) int64 identity as in the release (ground truth; never used to train).
        labels: (N,) int64 `pids` relabelled 0..C-1 by the sorted union of ids.
        camids: (N,) int64 camera number as in the release (SYSU 1..6; RegDB 1 visible,
            2 thermal).
        modalities: (N,) int64, 0 = visible, 1 = infrared.
    """

    root: str
    paths: tuple[str, ...]
    pids: np.ndarray
    labels: np.ndarray
    camids: np.ndarray
    modalities: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.paths)
        for name in ("pids", "labels", "camids", "modalities"):
            column = getattr(self, name)
            if column.shape != (n,):
                raise ValueError(f"manifest column {name} has shape {column.shape}, expected {n}")

    @classmethod
    def from_rows(
        cls,
        root: str | Path,
        paths: Sequence[str],
        pids: Iterable[int],
        camids: Iterable[int],
        modalities: Iterable[int],
    ) -> Manifest:
        pid_array = np.asarray(list(pids), dtype=np.int64)
        return cls(
            root=str(root),
            paths=tuple(paths),
            pids=pid_array,
            labels=relabel(pid_array) if len(pid_array) else pid_array.copy(),
            camids=np.asarray(list(camids), dtype=np.int64),
            modalities=np.asarray(list(modalities), dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_ids(self) -> int:
        return len(np.unique(self.pids))

    def full_paths(self) -> list[str]:
        """Paths joined with the root, as strings."""
        root = Path(self.root)
        return [str(root / p) for p in self.paths]

    def select(self, index: np.ndarray) -> Manifest:
        """Rows by boolean mask or integer index (labels are re-derived for the subset)."""
        index = np.asarray(index)
        rows = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
        return Manifest.from_rows(
            self.root,
            [self.paths[i] for i in rows],
            self.pids[rows],
            self.camids[rows],
            self.modalities[rows],
        )

    def modality(self, name: str) -> Manifest:
        """The rows of one modality, "visible" or "infrared", in manifest order."""
        if name not in MODALITIES:
            raise ValueError(f"unknown modality {name!r}; expected one of {MODALITIES}")
        return self.select(self.modalities == MODALITIES.index(name))

    def summary(self) -> dict[str, int]:
        out = {"images": len(self), "ids": self.num_ids}
        for code, name in enumerate(MODALITIES):
            mask = self.modalities == code
            out[f"{name}_images"] = int(mask.sum())
            out[f"{name}_ids"] = len(np.unique(self.pids[mask]))
        return out

    # ------------------------------------------------------------------ TSV I/O

    def write(self, path: str | Path) -> None:
        """Write as TSV with a header (the pipeline's manifest artifact)."""
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(_COLUMNS)
            for i, rel in enumerate(self.paths):
                writer.writerow(
                    (
                        rel,
                        int(self.pids[i]),
                        int(self.labels[i]),
                        int(self.camids[i]),
                        MODALITIES[self.modalities[i]],
                    )
                )

    @classmethod
    def read(cls, path: str | Path, root: str | Path) -> Manifest:
        """Read a TSV written by `write`; bad rows raise DatasetError naming the line."""
        paths: list[str] = []
        pids: list[int] = []
        camids: list[int] = []
        modalities: list[int] = []
        with open(path, newline="") as handle:
            reader = csv.reader(handle, delimiter="\t")
            header = next(reader, None)
            if header is None or tuple(header) != _COLUMNS:
                expected = " ".join(_COLUMNS)
                raise DatasetError(path, f"expected the header columns: {expected}", line=1)
            for number, row in enumerate(reader, start=2):
                if len(row) != len(_COLUMNS):
                    raise DatasetError(path, f"expected {len(_COLUMNS)} columns", line=number)
                try:
                    pid, camid = int(row[1]), int(row[3])
                    modality = MODALITIES.index(row[4])
                except ValueError:
                    raise DatasetError(path, f"malformed row {row!r}", line=number) from None
                paths.append(row[0])
                pids.append(pid)
                camids.append(camid)
                modalities.append(modality)
        return cls.from_rows(root, paths, pids, camids, modalities)
