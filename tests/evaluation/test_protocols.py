"""SYSU-MM01 / RegDB protocol runners, ProtocolResult, feature lookup (tiny real layouts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmm_core.data import regdb as regdb_data
from mmm_core.data import sysu as sysu_data
from mmm_core.evaluation import protocols
from mmm_core.evaluation.protocols import (
    ProtocolResult,
    TrialMetrics,
    cached_extractor,
    evaluate_regdb,
    evaluate_sysu,
    load_feature_file,
    lookup_extractor,
    save_feature_file,
)
from mmm_core.evaluation.rank import eval_regdb, eval_sysu


class RecordingExtractor:
    """Random unit features per path (fixed per path), or one-hot of the path's id."""

    def __init__(self, dim: int = 8, seed: int = 0, by_id: bool = False) -> None:
        self.dim, self.by_id = dim, by_id
        self.rng = np.random.default_rng(seed)
        self.table: dict[str, np.ndarray] = {}
        self.calls: list[tuple[str, list[str]]] = []

    def feature(self, path: str) -> np.ndarray:
        if path not in self.table:
            if self.by_id:
                vector = np.zeros(self.dim, dtype=np.float32)
                vector[int(Path(path).parent.name) % self.dim] = 1.0
            else:
                vector = self.rng.standard_normal(self.dim).astype(np.float32)
            self.table[path] = vector / np.linalg.norm(vector)
        return self.table[path]

    def __call__(self, paths: list[str], modality: str) -> np.ndarray:
        self.calls.append((modality, list(paths)))
        return np.stack([self.feature(p) for p in paths])


def test_sysu_equals_direct_evaluation_and_extracts_once(sysu_root):
    extract = RecordingExtractor(seed=1)
    result = evaluate_sysu(extract, sysu_root, modes=("all", "indoor"), shots=(1, 10), trials=3)
    # One call per modality: IR queries (cam3, cam6), RGB galleries (cam1, 2, 4, 5), no repeats.
    assert [modality for modality, _ in extract.calls] == ["infrared", "visible"]
    for modality, paths in extract.calls:
        assert len(paths) == len(set(paths))
        cameras = {Path(p).parts[-3] for p in paths}
        assert cameras <= (
            {"cam3", "cam6"} if modality == "infrared" else {"cam1", "cam2", "cam4", "cam5"}
        )
    assert list(result.settings) == [
        "sysu/all/single",
        "sysu/all/multi",
        "sysu/indoor/single",
        "sysu/indoor/multi",
    ]
    for mode in ("all", "indoor"):
        q_paths, q_pids, q_cams = sysu_data.query_set(sysu_root, mode)
        query = np.stack([extract.table[p] for p in q_paths])
        for shots, name in ((1, "single"), (10, "multi")):
            trials = result.settings[f"sysu/{mode}/{name}"]
            assert [m.trial for m in trials] == [0, 1, 2]
            for trial in range(3):
                g_paths, g_pids, g_cams = sysu_data.gallery_set(sysu_root, mode, trial, shots)
                gallery = np.stack([extract.table[p] for p in g_paths])
                cmc, mAP, mINP = eval_sysu(-(query @ gallery.T), q_pids, g_pids, q_cams, g_cams)
                np.testing.assert_allclose(trials[trial].cmc, cmc, atol=1e-12)
                assert trials[trial].mAP == pytest.approx(mAP, abs=1e-12)
                assert trials[trial].mINP == pytest.approx(mINP, abs=1e-12)


def test_sysu_identity_features_score_perfectly(sysu_root):
    result = evaluate_sysu(RecordingExtractor(by_id=True), sysu_root, trials=2)
    for setting in result.settings:
        assert result.summary(setting) == {
            "rank1": 1.0,
            "rank5": 1.0,
            "rank10": 1.0,
            "rank20": 1.0,
            "mAP": 1.0,
            "mINP": 1.0,
        }


def test_sysu_trials_are_averaged(monkeypatch):
    # Stub readers: one cam6 query of id 1; trial 0 ranks id 1 first, trial 1 second.
    def query_set(root, mode="all"):
        return ["q.jpg"], np.array([1]), np.array([6])

    def gallery_set(root, mode="all", trial=0, shots=1):
        names = ["g1.jpg", "g2.jpg"] if trial == 0 else ["g3.jpg", "g1.jpg"]
        pids = [1, 2] if trial == 0 else [2, 1]
        return names, np.array(pids), np.array([1, 4])

    vectors = {
        "q.jpg": [1.0, 0.0],
        "g1.jpg": [1.0, 0.0],
        "g2.jpg": [0.6, 0.8],
        "g3.jpg": [1.0, 0.0],
    }
    monkeypatch.setattr(sysu_data, "query_set", query_set)
    monkeypatch.setattr(sysu_data, "gallery_set", gallery_set)
    result = evaluate_sysu(
        lambda paths, modality: np.array([vectors[p] for p in paths]),
        "unused",
        modes=("all",),
        trials=2,
    )
    summary = result.summary("sysu/all/single")
    assert summary["rank1"] == 0.5 and summary["rank5"] == 1.0
    assert summary["mAP"] == pytest.approx((1.0 + 0.5) / 2)
    assert [m.mAP for m in result.settings["sysu/all/single"]] == [1.0, 0.5]


def test_regdb_both_directions(regdb_root):
    extract = RecordingExtractor(seed=3)
    result = evaluate_regdb(extract, regdb_root, trial=1)
    assert list(result.settings) == ["regdb/visible->thermal", "regdb/thermal->visible"]
    assert [modality for modality, _ in extract.calls] == ["visible", "infrared"]
    assert all("/Thermal/" in p for p in extract.calls[1][1])
    v_paths, v_pids = regdb_data.test_set(regdb_root, 1, "visible")
    t_paths, t_pids = regdb_data.test_set(regdb_root, 1, "thermal")
    visible = np.stack([extract.table[p] for p in v_paths])
    thermal = np.stack([extract.table[p] for p in t_paths])
    for setting, (q, g, qp, gp) in {
        "regdb/visible->thermal": (visible, thermal, v_pids, t_pids),
        "regdb/thermal->visible": (thermal, visible, t_pids, v_pids),
    }.items():
        cmc, mAP, mINP = eval_regdb(-(q @ g.T), qp, gp)
        (metrics,) = result.settings[setting]
        assert metrics.trial == 1
        np.testing.assert_allclose(metrics.cmc, cmc, atol=1e-12)
        assert metrics.mAP == pytest.approx(mAP) and metrics.mINP == pytest.approx(mINP)


def test_regdb_identity_features_score_perfectly(regdb_root):
    result = evaluate_regdb(RecordingExtractor(by_id=True), regdb_root, trial=1)
    assert all(v == 1.0 for v in result.metrics().values())


def test_unnormalised_or_misshapen_features_are_rejected(regdb_root):
    with pytest.raises(ValueError, match="L2-normalised"):
        evaluate_regdb(lambda paths, _: np.full((len(paths), 4), 2.0), regdb_root, trial=1)
    with pytest.raises(ValueError, match="shape"):
        evaluate_regdb(lambda paths, _: np.ones((1, 4)), regdb_root, trial=1)


def _result() -> ProtocolResult:
    result = ProtocolResult()
    result.add("sysu/all/single", TrialMetrics(0, tuple([0.5] * 4 + [0.75] * 16), 0.4, 0.2))
    result.add("sysu/all/single", TrialMetrics(1, tuple([0.25] * 4 + [1.0] * 16), 0.3, 0.1))
    result.add("regdb/visible->thermal", TrialMetrics(1, tuple([1.0] * 20), 0.9, 0.8))
    return result


def test_protocol_result_summary_metrics_table_json():
    result = _result()
    summary = result.summary("sysu/all/single")
    assert summary == pytest.approx(
        {
            "rank1": 0.375,
            "rank5": 0.875,
            "rank10": 0.875,
            "rank20": 0.875,
            "mAP": 0.35,
            "mINP": 0.15,
        }
    )
    metrics = result.metrics()
    assert metrics["sysu/all/single/rank1"] == pytest.approx(0.375)
    assert metrics["regdb/visible->thermal/mINP"] == pytest.approx(0.8)
    assert len(metrics) == 12
    table = result.table()
    assert "37.50" in table and "87.50" in table and "35.00" in table and "90.00" in table
    assert table.splitlines()[0].split() == [
        "setting",
        "trials",
        "R1",
        "R5",
        "R10",
        "R20",
        "mAP",
        "mINP",
    ]
    written = json.loads(result.to_json())
    assert written["format"] and set(written["settings"]) == set(result.settings)
    entry = written["settings"]["sysu/all/single"]
    assert entry["mean"]["mAP"] == 0.35 and entry["mean"] == result.summary("sysu/all/single")
    assert entry["trials"] == [m.to_dict() for m in result.settings["sysu/all/single"]]
    with pytest.raises(KeyError, match="no results"):
        result.summary("sysu/indoor/single")


def test_protocol_result_merge_sorts_trials():
    first, second = ProtocolResult(), ProtocolResult()
    second.add("regdb/visible->thermal", TrialMetrics(2, (0.5,), 0.5, 0.5))
    first.add("regdb/visible->thermal", TrialMetrics(1, (1.0,), 1.0, 1.0))
    merged = ProtocolResult.merge([second, first])
    assert [m.trial for m in merged.settings["regdb/visible->thermal"]] == [1, 2]
    assert merged.summary("regdb/visible->thermal") == {"rank1": 0.75, "mAP": 0.75, "mINP": 0.75}


def test_lookup_extractor_resolves_relative_paths(tmp_path, sysu_root):
    rel = ["cam1/0001/0001.jpg", "cam3/0002/0001.jpg"]
    features = np.eye(2, dtype=np.float32)
    extract = lookup_extractor(rel, features, root=sysu_root)
    got = extract(
        [str(sysu_root / rel[1]), str(sysu_root / "cam1/../cam1/0001/0001.jpg")], "visible"
    )
    np.testing.assert_array_equal(got, features[[1, 0]])
    with pytest.raises(KeyError, match="no features"):
        extract([str(sysu_root / "cam6/0001/0001.jpg")], "infrared")
    with pytest.raises(ValueError, match="twice"):
        lookup_extractor([rel[0], rel[0]], features, root=sysu_root)
    path = tmp_path / "features.npz"
    save_feature_file(path, rel, features)
    paths, loaded = load_feature_file(path)
    assert paths == rel and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, features)
    np.savez(tmp_path / "bad.npz", features=features)
    with pytest.raises(ValueError, match="paths"):
        load_feature_file(tmp_path / "bad.npz")


def test_cached_extractor_extracts_each_path_once():
    inner = RecordingExtractor(seed=5)
    cached = cached_extractor(inner)
    first = cached(["a", "b", "a"], "visible")
    second = cached(["b", "c"], "visible")
    cached(["a"], "infrared")
    assert inner.calls == [("visible", ["a", "b"]), ("visible", ["c"]), ("infrared", ["a"])]
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(first[1], second[0])


def test_ranked_lists(sysu_root, regdb_root):
    ranked = protocols.sysu_ranked_lists(
        RecordingExtractor(by_id=True), sysu_root, num_queries=3, top_k=4
    )
    assert len(ranked.query_paths) == 3 and ranked.indices.shape == (3, 4)
    # Identity features: the first item is always a correct match.
    assert ranked.correct[:, 0].all()
    for row, query in enumerate(ranked.query_paths):
        if "/cam3/" in query:
            shown = [ranked.gallery_paths[i] for i in ranked.indices[row] if i >= 0]
            assert not any("/cam2/" in p for p in shown)
    ranked = protocols.regdb_ranked_lists(
        RecordingExtractor(by_id=True), regdb_root, 1, "thermal->visible", num_queries=10
    )
    assert ranked.indices.shape == (6, 10)
    assert (ranked.indices[:, 6:] == -1).all() and ranked.correct[:, :2].all()
