"""benchmarks.performance: table / JSON structure on tiny sizes (no timing assertions)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from benchmarks import bench_clustering, performance
from benchmarks.performance import FIGURES, Row, Sizes, TrainingSizes

TINY = Sizes(
    jaccard=((300, 10, 10, 4, None), (400, 12, 12, 6, 250)),
    scale=(300, 10),
    mmlm=(200, 100, 10, 5),
    mmlm_repeats=1,
    eval_trials=1,
    eval_queries=20,
    training=TrainingSizes(
        height=16,
        width=8,
        ids=2,
        instances=2,
        visible_clusters=12,
        infrared_clusters=5,
        warmup=0,
        iters=1,
    ),
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``main(["--quick"])`` with the quick sizes replaced by TINY; payload and out folder."""
    out = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(performance, "QUICK", TINY)
        payload = performance.main(["--quick", "--out", str(out)])
    return payload, out


def test_every_figure_is_measured_and_written(quick_run) -> None:
    payload, out = quick_run
    assert payload["figures"] == list(FIGURES)  # --quick runs all of them, scale100k too
    assert {row["figure"] for row in payload["rows"]} == set(FIGURES)
    assert set(payload["details"]) == set(FIGURES)
    on_disk = json.loads((out / "performance-quick.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(payload["rows"]))
    assert on_disk["quick"] is True
    fields = {"figure", "label", "ours", "unit", "reference", "reference_label", "target"}
    for row in on_disk["rows"]:
        assert fields | {"passed", "notes", "ratio"} == set(row)
        assert row["unit"] in ("s", "GB") and row["ours"] > 0


def test_ratios_are_ours_over_the_reference_measured_in_the_run(quick_run) -> None:
    payload, _ = quick_run
    rows, details = payload["rows"], payload["details"]
    for row in rows:
        if row["reference"] is None:
            assert row["ratio"] is None
        else:
            assert row["ratio"] == pytest.approx(row["ours"] / row["reference"])

    jaccard_times = [r for r in rows if r["figure"] == "jaccard" and r["unit"] == "s"]
    assert len(jaccard_times) == len(TINY.jaccard)
    for row, measured in zip(jaccard_times, details["jaccard"], strict=True):
        assert (row["ours"], row["reference"]) == (measured["jaccard_s"], measured["knn_s"])
        assert row["passed"] == (row["ratio"] <= performance.TARGET_JACCARD_RATIO)
    memory = [r for r in rows if r["figure"] == "jaccard" and r["unit"] == "GB"]
    assert [r["ours"] for r in memory] == [m["peak_rss_gb"] for m in details["jaccard"]]
    # The 1.5 GB target belongs to the joint (modality-balanced) case only.
    assert [r["passed"] is None for r in memory] == [True, False]

    scale = details["scale100k"]
    scale_time = next(r for r in rows if r["figure"] == "scale100k" and r["unit"] == "s")
    assert scale_time["ours"] == scale["jaccard_s"] + scale["dbscan_s"]
    assert scale_time["reference"] == scale["knn_s"] and scale["clusters"] >= 1

    mmlm = [r for r in rows if r["figure"] == "mmlm"]
    reference = details["mmlm"]["reference"]
    assert len(mmlm) == len(details["mmlm"]["ours"]) >= 1
    for row, ours in zip(mmlm, details["mmlm"]["ours"], strict=True):
        assert (row["ours"], row["reference"]) == (ours["mmlm_s"], reference["total_s"])
        assert ours["mmlm_s"] <= ours["total_s"]  # total adds the SCA weights

    evaluation = [r for r in rows if r["figure"] == "evaluation"]
    for row, measured in zip(evaluation, details["evaluation"], strict=True):
        assert (row["ours"], row["reference"]) == (
            measured["vectorised_s"],
            measured["reference_s"],
        )

    (training,) = [r for r in rows if r["figure"] == "training"]
    result = details["training"]
    assert training["ours"] == result["full_median_s"]
    assert training["reference"] == result["network_median_s"]
    overhead = (result["full_median_s"] - result["network_median_s"]) / result["full_median_s"]
    assert result["overhead_median"] == pytest.approx(overhead)
    assert training["passed"] == (overhead < performance.TARGET_OVERHEAD)


def test_training_full_step_runs_the_stage_two_losses(quick_run) -> None:
    result = quick_run[0]["details"]["training"]
    assert {"loss", "loss_visible", "loss_infrared", "loss_cross", "loss_sca"} <= set(
        result["loss_components"]
    )
    assert len(result["full_step_s"]) == len(result["network_step_s"]) == TINY.training.iters
    assert result["images_per_step"] == 3 * TINY.training.ids * TINY.training.instances


def test_evaluation_is_identical_to_the_reference_loop(quick_run) -> None:
    for measured in quick_run[0]["details"]["evaluation"]:
        assert measured["max_abs_diff_cmc"] <= 1e-12 and measured["max_abs_diff_mAP"] <= 1e-12


def test_mmlm_reference_cost_loop_equals_the_vectorised_one_sided_cost(quick_run) -> None:
    reference = quick_run[0]["details"]["mmlm"]["reference"]
    assert reference["every_cluster_matched"]
    assert reference["max_abs_diff_cost"] < 1e-4
    assert (reference["visible_clusters"], reference["infrared_clusters"]) == (10, 5)


def test_tables_have_one_line_per_row(quick_run) -> None:
    payload, out = quick_run
    text = performance.format_table(payload["rows"])
    assert text.splitlines()[0].split()[:2] == ["figure", "ours"]
    for row in payload["rows"]:
        assert row["label"] in text
    markdown = (out / "performance-quick.md").read_text()
    assert markdown == performance.markdown_table(payload)
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table) == len(payload["rows"]) + 2
    assert set(table[1]) == {"|", "-"}
    # Pipes inside cells are escaped, so every line has exactly the header's columns + notes.
    assert all(line.count(" | ") == len(performance.HEADER) for line in table[:1] + table[2:])
    assert "\\|difference\\|" in markdown


def test_row_ratio() -> None:
    assert Row("x", "a", 2.0, "s", 4.0).ratio == 0.5
    assert Row("x", "a", 2.0, "GB").ratio is None
    assert Row("x", "a", 2.0, "s", 0.0).ratio is None


def test_unknown_figure_rejected() -> None:
    with pytest.raises(ValueError, match="unknown figures"):
        performance.run(["nope"], TINY, isolated=False)


def test_reference_hungarian_rounds_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    cost = rng.random((5, 3))  # 5 visible clusters, 3 infrared
    v2r, r2v = bench_clustering._hungarian_until_all_matched(cost)
    assert (v2r >= 0).all() and (r2v >= 0).all()
    # Round 1: the optimal one-to-one assignment of the 3 infrared clusters.
    best = min(
        itertools.permutations(range(5), 3), key=lambda rows: cost[list(rows), [0, 1, 2]].sum()
    )
    assert r2v.tolist() == list(best)
    assert all(v2r[row] == col for col, row in enumerate(best))
    # Later rounds: the two left-over visible clusters, optimally, against all 3 columns.
    left = sorted(set(range(5)) - set(best))
    pairs = min(itertools.permutations(range(3), 2), key=lambda cols: cost[left, list(cols)].sum())
    assert v2r[left].tolist() == list(pairs)
    # Transposed input gives the transposed answer.
    r2v_t, v2r_t = bench_clustering._hungarian_until_all_matched(cost.T)
    assert (v2r_t.tolist(), r2v_t.tolist()) == (v2r.tolist(), r2v.tolist())


def test_run_all_passes_quick_through_and_reports_failures(monkeypatch) -> None:
    from benchmarks import accuracy, run_all

    calls = []
    for module in (performance, accuracy):
        name = module.__name__.rsplit(".", 1)[1]
        monkeypatch.setattr(module, "main", lambda argv, name=name: calls.append((name, argv)))
    assert run_all.main(["--quick"]) == 0 and run_all.main([]) == 0
    assert calls == [
        ("performance", ["--quick"]),
        ("accuracy", ["--quick"]),
        ("performance", []),
        ("accuracy", []),
    ]
    calls.clear()
    assert run_all.main(["--only", "accuracy"]) == 0
    assert calls == [("accuracy", [])]

    def broken(argv):
        raise RuntimeError("boom")

    monkeypatch.setattr(performance, "main", broken)
    assert run_all.main(["--quick"]) == 1
    monkeypatch.setattr(performance, "main", lambda argv: 2)
    assert run_all.main([]) == 1
