"""Evaluation protocols over features: SYSU-MM01 (all / indoor, single / multi-shot) and RegDB.

A protocol is given an *extractor*, ``extract(paths: list[str], modality: str) -> np.ndarray``
of shape (len(paths), d), returning L2-normalised features in the order of `paths`;
`modality` is ``"visible"`` or ``"infrared"`` (RegDB thermal), because the two-stream model
routes each modality through its own stem. The engine's model extractor fits this contract,
and so does a lookup into a features file (`lookup_extractor`, which ignores the modality).
The protocol reads the test split with the dataset readers (`mmm_core.data.sysu`,
`mmm_core.data.regdb`), extracts every image it needs in one call per modality (the union of
all queries, the union of all trials' galleries), and ranks with the reference distance
``-(query @ gallery.T)`` (the community code's ``-np.matmul(q, g.T)``: for normalised
features the same order as 2 - 2 cos, without the rounding ties a subtraction from 2 can add).

Results are collected in a `ProtocolResult`: per setting (e.g. ``"sysu/all/single"``,
``"regdb/visible->thermal"``) one `TrialMetrics` per trial, with means of R1, R5, R10, R20,
mAP and mINP, JSON round-trip, a text table (percent) and a flat metrics dict for logging.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmm_core.evaluation.rank import eval_regdb, eval_sysu, top_k_ranked

__all__ = [
    "INFRARED",
    "REGDB_DIRECTIONS",
    "REPORTED_RANKS",
    "VISIBLE",
    "Extractor",
    "ProtocolResult",
    "RankedLists",
    "TrialMetrics",
    "cached_extractor",
    "distance_matrix",
    "evaluate_regdb",
    "evaluate_sysu",
    "load_feature_file",
    "lookup_extractor",
    "regdb_ranked_lists",
    "save_feature_file",
    "sysu_ranked_lists",
    "sysu_setting",
]

log = logging.getLogger(__name__)

Extractor = Callable[[list[str], str], np.ndarray]

VISIBLE = "visible"
INFRARED = "infrared"
_REGDB_MODALITY = {"visible": VISIBLE, "thermal": INFRARED}

REPORTED_RANKS = (1, 5, 10, 20)
REGDB_DIRECTIONS = ("visible->thermal", "thermal->visible")
_JSON_FORMAT = "mmm-evaluation/1"
_NORM_TOLERANCE = 1e-3


def sysu_setting(mode: str, shots: int) -> str:
    """Setting name of a SYSU-MM01 evaluation, e.g. ``sysu/all/single``, ``sysu/indoor/multi``."""
    shot_name = {1: "single", 10: "multi"}.get(shots, f"{shots}-shot")
    return f"sysu/{mode}/{shot_name}"


def distance_matrix(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Reference ranking distance ``-(query @ gallery.T)``, shape (num_q, num_g).

    Both inputs (n, d) float arrays, L2-normalised; computed in their dtype, as the reference.
    """
    return -np.matmul(query, gallery.T)


def _check_features(features: np.ndarray, count: int) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] != count:
        raise ValueError(
            f"extractor returned features of shape {features.shape}, expected ({count}, d)"
        )
    if not np.isfinite(features).all():
        raise ValueError("extractor returned non-finite features")
    norms = np.linalg.norm(features.astype(np.float64), axis=1)
    if count and np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
        raise ValueError(
            f"features must be L2-normalised; norms range {norms.min():.4g}..{norms.max():.4g}"
        )
    return features


def _features_for(
    extract: Extractor, path_lists: Iterable[Sequence[str]], modality: str
) -> tuple[np.ndarray, dict[str, int]]:
    """Extract the union of `path_lists` in one call: ``(features, path -> row)``."""
    rows: dict[str, int] = {}
    for paths in path_lists:
        for path in paths:
            rows.setdefault(path, len(rows))
    ordered = list(rows)
    log.info("extracting features of %d %s test images", len(ordered), modality)
    features = _check_features(extract(ordered, modality), len(ordered))
    return features, rows


def _take(features: np.ndarray, rows: dict[str, int], paths: Sequence[str]) -> np.ndarray:
    return features[np.fromiter((rows[p] for p in paths), dtype=np.int64, count=len(paths))]


def _features_in_order(extract: Extractor, paths: Sequence[str], modality: str) -> np.ndarray:
    """Features of `paths`, row i for paths[i] (each distinct path extracted once)."""
    table, rows = _features_for(extract, [paths], modality)
    return _take(table, rows, paths)


@dataclass(frozen=True)
class TrialMetrics:
    """Metrics of one trial: `cmc` (max_rank values), mAP and mINP, all fractions in [0, 1]."""

    trial: int
    cmc: tuple[float, ...]
    mAP: float  # noqa: N815 (the metric's usual name)
    mINP: float  # noqa: N815

    def rank(self, k: int) -> float:
        """CMC at rank k (1-based)."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank {k} outside the CMC curve of length {len(self.cmc)}")
        return self.cmc[k - 1]

    def to_dict(self) -> dict[str, object]:
        return {"trial": self.trial, "cmc": list(self.cmc), "mAP": self.mAP, "mINP": self.mINP}

    @classmethod
    def from_metrics(cls, trial: int, cmc: np.ndarray, mAP: float, mINP: float) -> TrialMetrics:
        return cls(trial, tuple(float(v) for v in cmc), float(mAP), float(mINP))


@dataclass
class ProtocolResult:
    """Per-setting, per-trial metrics of one or more protocols.

    ``settings[name]`` is the list of `TrialMetrics` of setting `name` (e.g.
    ``"sysu/all/single"``), in trial order. Values are fractions; `table` prints percent.
    """

    settings: dict[str, list[TrialMetrics]] = field(default_factory=dict)

    def add(self, setting: str, metrics: TrialMetrics) -> None:
        self.settings.setdefault(setting, []).append(metrics)

    @classmethod
    def merge(cls, results: Iterable[ProtocolResult]) -> ProtocolResult:
        """One result holding every trial of `results` (e.g. the 10 RegDB trials)."""
        merged = cls()
        for result in results:
            for setting, trials in result.settings.items():
                for metrics in trials:
                    merged.add(setting, metrics)
        for trials in merged.settings.values():
            trials.sort(key=lambda m: m.trial)
        return merged

    def mean_cmc(self, setting: str) -> np.ndarray:
        """Mean CMC curve over the trials of `setting`, float64 (max_rank,)."""
        return np.mean([m.cmc for m in self._trials(setting)], axis=0)

    def summary(self, setting: str) -> dict[str, float]:
        """Means over trials: ``rank1, rank5, rank10, rank20`` (those within max_rank),
        ``mAP``, ``mINP``."""
        trials = self._trials(setting)
        cmc = self.mean_cmc(setting)
        values = {f"rank{k}": float(cmc[k - 1]) for k in REPORTED_RANKS if k <= len(cmc)}
        values["mAP"] = float(np.mean([m.mAP for m in trials]))
        values["mINP"] = float(np.mean([m.mINP for m in trials]))
        return values

    def metrics(self) -> dict[str, float]:
        """Flat means for logging, e.g. ``{"sysu/all/single/rank1": 0.45, ...}``."""
        return {
            f"{setting}/{name}": value
            for setting in self.settings
            for name, value in self.summary(setting).items()
        }

    def table(self) -> str:
        """A text table of the means in percent (2 decimals), one row per setting."""
        names = [f"rank{k}" for k in REPORTED_RANKS] + ["mAP", "mINP"]
        headers = [f"R{k}" for k in REPORTED_RANKS] + ["mAP", "mINP"]
        width = max([len("setting"), *(len(s) for s in self.settings)])
        lines = [f"{'setting':<{width}}  {'trials':>6}  " + "  ".join(f"{h:>6}" for h in headers)]
        lines.append("-" * len(lines[0]))
        for setting, trials in self.settings.items():
            summary = self.summary(setting)
            cells = [f"{100 * summary[n]:6.2f}" if n in summary else f"{'-':>6}" for n in names]
            lines.append(f"{setting:<{width}}  {len(trials):>6}  " + "  ".join(cells))
        return "\n".join(lines)

    def to_json(self) -> str:
        """JSON text: per-trial values and, for reading convenience, the means."""
        data = {
            "format": _JSON_FORMAT,
            "settings": {
                setting: {
                    "mean": self.summary(setting),
                    "trials": [m.to_dict() for m in trials],
                }
                for setting, trials in self.settings.items()
            },
        }
        return json.dumps(data, indent=2)

    def _trials(self, setting: str) -> list[TrialMetrics]:
        if not self.settings.get(setting):
            raise KeyError(f"no results for setting {setting!r}; have {sorted(self.settings)}")
        return self.settings[setting]


def evaluate_sysu(
    extract: Extractor,
    root: str | Path,
    modes: Sequence[str] = ("all", "indoor"),
    shots: Sequence[int] = (1,),
    trials: int = 10,
    max_rank: int = 20,
) -> ProtocolResult:
    """SYSU-MM01 protocol: IR query (cam3, cam6) -> RGB gallery, trials 0..trials-1.

    The query images (modality ``"infrared"``) are extracted in one `extract` call, the
    galleries of every mode, shot and trial (``"visible"``) in another (union of paths), then
    indexed; the distance per trial is ``-(q @ g.T)``.

    Args:
        extract: ``(paths, modality) -> (n, d)`` L2-normalised features (checked).
        root: SYSU-MM01 root.
        modes: subset of ``("all", "indoor")``.
        shots: gallery images per id and camera: 1 (single-shot) and/or 10 (multi-shot).
        trials: number of gallery draws (1..10 in the standard protocol).
        max_rank: CMC length.

    Returns:
        A `ProtocolResult` with settings ``sysu/<mode>/<single|multi>``.
    """
    from mmm_core.data import sysu as sysu_data

    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    queries = {mode: sysu_data.query_set(root, mode) for mode in modes}
    galleries = {
        (mode, shot, trial): sysu_data.gallery_set(root, mode, trial, shot)
        for mode in modes
        for shot in shots
        for trial in range(trials)
    }
    q_features, q_rows = _features_for(extract, [q[0] for q in queries.values()], INFRARED)
    g_features, g_rows = _features_for(extract, [g[0] for g in galleries.values()], VISIBLE)
    result = ProtocolResult()
    for mode in modes:
        q_paths, q_pids, q_camids = queries[mode]
        query = _take(q_features, q_rows, q_paths)
        for shot in shots:
            setting = sysu_setting(mode, shot)
            for trial in range(trials):
                g_paths, g_pids, g_camids = galleries[mode, shot, trial]
                distmat = distance_matrix(query, _take(g_features, g_rows, g_paths))
                cmc, mAP, mINP = eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
                result.add(setting, TrialMetrics.from_metrics(trial, cmc, mAP, mINP))
                log.debug("%s trial %d: R1 %.4f mAP %.4f", setting, trial, cmc[0], mAP)
    return result


def _regdb_sets(root: str | Path, trial: int) -> dict[str, tuple[list[str], np.ndarray]]:
    from mmm_core.data import regdb as regdb_data

    return {m: regdb_data.test_set(root, trial, m) for m in ("visible", "thermal")}


def evaluate_regdb(
    extract: Extractor, root: str | Path, trial: int, max_rank: int = 20
) -> ProtocolResult:
    """RegDB protocol of one trial (1..10): visible->thermal and thermal->visible.

    Query and gallery are the trial's test_visible / test_thermal lists; no camera filter;
    image-level CMC. Settings ``regdb/visible->thermal`` and ``regdb/thermal->visible``, each
    with one `TrialMetrics` numbered `trial` (combine trials with `ProtocolResult.merge`).
    """
    sets = _regdb_sets(root, trial)
    features = {
        name: _features_in_order(extract, paths, _REGDB_MODALITY[name])
        for name, (paths, _) in sets.items()
    }
    result = ProtocolResult()
    for direction in REGDB_DIRECTIONS:
        query_name, gallery_name = direction.split("->")
        q_pids, g_pids = sets[query_name][1], sets[gallery_name][1]
        distmat = distance_matrix(features[query_name], features[gallery_name])
        cmc, mAP, mINP = eval_regdb(distmat, q_pids, g_pids, max_rank)
        result.add(f"regdb/{direction}", TrialMetrics.from_metrics(trial, cmc, mAP, mINP))
    return result


@dataclass(frozen=True)
class RankedLists:
    """Top-k ranked gallery items of some queries, ready for `visualize`.

    indices: (num_shown, top_k) int64 into `gallery_paths`, -1 past the kept list;
    correct: (num_shown, top_k) bool, same identity as the query.
    """

    query_paths: list[str]
    gallery_paths: list[str]
    indices: np.ndarray
    correct: np.ndarray


def _pick_queries(num_q: int, num_queries: int, seed: int) -> np.ndarray:
    count = min(num_queries, num_q)
    return np.sort(np.random.default_rng(seed).choice(num_q, size=count, replace=False))


def sysu_ranked_lists(
    extract: Extractor,
    root: str | Path,
    mode: str = "all",
    trial: int = 0,
    shots: int = 1,
    num_queries: int = 8,
    top_k: int = 10,
    seed: int = 0,
) -> RankedLists:
    """Ranked lists of `num_queries` randomly chosen (by `seed`) SYSU queries of one trial."""
    from mmm_core.data import sysu as sysu_data

    q_paths, q_pids, q_camids = sysu_data.query_set(root, mode)
    g_paths, g_pids, g_camids = sysu_data.gallery_set(root, mode, trial, shots)
    chosen = _pick_queries(len(q_paths), num_queries, seed)
    shown = [q_paths[i] for i in chosen]
    query = _features_in_order(extract, shown, INFRARED)
    gallery = _features_in_order(extract, g_paths, VISIBLE)
    indices, correct = top_k_ranked(
        distance_matrix(query, gallery), q_pids[chosen], g_pids, q_camids[chosen], g_camids, top_k
    )
    return RankedLists(shown, list(g_paths), indices, correct)


def regdb_ranked_lists(
    extract: Extractor,
    root: str | Path,
    trial: int,
    direction: str = "visible->thermal",
    num_queries: int = 8,
    top_k: int = 10,
    seed: int = 0,
) -> RankedLists:
    """Ranked lists of `num_queries` randomly chosen (by `seed`) RegDB queries."""
    if direction not in REGDB_DIRECTIONS:
        raise ValueError(f"unknown RegDB direction {direction!r}; expected {REGDB_DIRECTIONS}")
    sets = _regdb_sets(root, trial)
    query_name, gallery_name = direction.split("->")
    q_paths, q_pids = sets[query_name]
    g_paths, g_pids = sets[gallery_name]
    chosen = _pick_queries(len(q_paths), num_queries, seed)
    shown = [q_paths[i] for i in chosen]
    query = _features_in_order(extract, shown, _REGDB_MODALITY[query_name])
    gallery = _features_in_order(extract, g_paths, _REGDB_MODALITY[gallery_name])
    indices, correct = top_k_ranked(
        distance_matrix(query, gallery), q_pids[chosen], g_pids, top_k=top_k
    )
    return RankedLists(shown, list(g_paths), indices, correct)


def cached_extractor(extract: Extractor) -> Extractor:
    """Wrap `extract` so that each (path, modality) is extracted at most once (kept in memory)."""
    cache: dict[tuple[str, str], np.ndarray] = {}

    def cached(paths: list[str], modality: str) -> np.ndarray:
        missing = list(dict.fromkeys(p for p in paths if (p, modality) not in cache))
        if missing:
            new = np.asarray(extract(missing, modality))
            if new.ndim != 2 or new.shape[0] != len(missing):
                raise ValueError(
                    f"extractor returned features of shape {new.shape}, "
                    f"expected ({len(missing)}, d)"
                )
            cache.update(zip(((p, modality) for p in missing), new, strict=True))
        if not paths:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([cache[p, modality] for p in paths])

    return cached


def _path_key(path: str, root: str | Path | None) -> str:
    if root is not None and not os.path.isabs(path):
        path = os.path.join(root, path)
    return os.path.normpath(os.path.abspath(path))


def lookup_extractor(
    paths: Sequence[str], features: np.ndarray, root: str | Path | None = None
) -> Extractor:
    """An extractor that looks features up by image path instead of running a model.

    Args:
        paths: (n,) image paths, absolute or relative to `root` (relative to the working
            directory when `root` is None). Duplicates are an error.
        features: (n, d) float features aligned with `paths` (L2-normalised for protocols).
        root: dataset root that relative `paths` are joined to.

    Requested paths (as the readers return them: root-joined) are compared after
    ``abspath`` + ``normpath``; a path missing from the table is a KeyError naming it. The
    modality argument is ignored: the table already holds each image's feature.
    """
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] != len(paths):
        raise ValueError(f"features of shape {features.shape} do not align with {len(paths)} paths")
    table: dict[str, int] = {}
    for row, path in enumerate(paths):
        key = _path_key(str(path), root)
        if key in table:
            raise ValueError(f"path listed twice in the feature table: {path}")
        table[key] = row

    def extract(requested: list[str], modality: str = "") -> np.ndarray:
        keys = [_path_key(p, None) for p in requested]
        missing = [p for p, k in zip(requested, keys, strict=True) if k not in table]
        if missing:
            raise KeyError(
                f"{len(missing)} image(s) have no features, e.g. {missing[:3]}; "
                "are the feature paths relative to the dataset root?"
            )
        return features[np.asarray([table[k] for k in keys], dtype=np.int64)]

    return extract


def save_feature_file(path: str | Path, paths: Sequence[str], features: np.ndarray) -> None:
    """Write a features file: npz with ``paths`` (str, n) and ``features`` (float32, n x d)."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != len(paths):
        raise ValueError(f"features of shape {features.shape} do not align with {len(paths)} paths")
    np.savez(path, paths=np.asarray([str(p) for p in paths], dtype=str), features=features)


def load_feature_file(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a features file written by `save_feature_file`: ``(paths, features)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: features file not found")
    with np.load(path, allow_pickle=False) as data:
        missing = {"paths", "features"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: features file lacks array(s) {sorted(missing)}")
        paths = [str(p) for p in data["paths"]]
        features = data["features"]
    if features.ndim != 2 or features.shape[0] != len(paths):
        raise ValueError(
            f"{path}: 'features' of shape {features.shape} does not align with {len(paths)} 'paths'"
        )
    return paths, features
