"""SYSU-MM01-sized evaluation: vectorised `eval_sysu` against the community per-query loop.

Synthetic features shaped like the SYSU-MM01 test protocol (all-search): 3,803 IR queries
(96 ids, cameras 3 and 6) against an RGB gallery (cameras 1, 2, 4, 5) of 301 images
(single-shot: one image per id and camera where the id appears; 301 of the 384 id-camera
pairs, as in the release) or 3,010 (multi-shot, 10 per pair), 10 trials with a fresh gallery
each, 2048-d L2-normalised features with identity structure (so the metrics are neither 0
nor 1). Only the metric part is timed: the distance matrix ``-(q @ g.T)`` is built first.

The reference is the community evaluation loop (Ye et al.'s cross-modal re-ID baseline,
``eval_sysu``), written below from its algorithm with three documented changes that make
it well defined and comparable: a stable sort, float64 CMC accumulation (the original casts
to float32), and rows shorter than max_rank padded with their last value.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_evaluation [--quick]

Prints a table (time of each, speed ratio, largest absolute differences of cmc, mAP and
mINP) and writes benchmarks/results/bench_evaluation.json (``-quick.json`` with --quick).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from mmm_core.evaluation.rank import eval_sysu

NUM_IDS = 96
NUM_QUERIES = 3803
GALLERY_PAIRS = 301
RGB_CAMERAS = (1, 2, 4, 5)
IR_CAMERAS = (3, 6)
DIM = 2048
# Per-dimension noise around unit identity centres: R1 about 60 % single-shot.
NOISE = 0.1


def reference_eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """The community per-query loop (stable sort, float64 CMC sum, padded short rows)."""
    num_q = distmat.shape[0]
    indices = np.argsort(distmat, axis=1, kind="stable")
    pred_label = g_pids[indices]
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)

    new_all_cmc = []
    all_AP = []
    all_INP = []
    num_valid_q = 0.0
    for q_idx in range(num_q):
        q_pid = q_pids[q_idx]
        q_camid = q_camids[q_idx]
        order = indices[q_idx]
        remove = (q_camid == 3) & (g_camids[order] == 2)
        keep = np.invert(remove)

        # Identity-level CMC: each gallery id at its first occurrence in the kept list.
        new_cmc = pred_label[q_idx][keep]
        new_index = np.unique(new_cmc, return_index=True)[1]
        new_cmc = np.asarray([new_cmc[index] for index in sorted(new_index)])
        new_match = (new_cmc == q_pid).astype(np.int32)
        new_cmc = new_match.cumsum()[:max_rank]
        if new_cmc.size < max_rank:
            last = new_cmc[-1] if new_cmc.size else 0
            new_cmc = np.concatenate([new_cmc, np.full(max_rank - new_cmc.size, last)])
        new_all_cmc.append(new_cmc)

        orig_cmc = matches[q_idx][keep]
        if not np.any(orig_cmc):
            continue
        cmc = orig_cmc.cumsum()
        pos_idx = np.where(orig_cmc == 1)
        pos_max_idx = np.max(pos_idx)
        inp = cmc[pos_max_idx] / (pos_max_idx + 1.0)
        all_INP.append(inp)
        num_valid_q += 1.0

        num_rel = orig_cmc.sum()
        tmp_cmc = orig_cmc.cumsum()
        tmp_cmc = [x / (i + 1.0) for i, x in enumerate(tmp_cmc)]
        tmp_cmc = np.asarray(tmp_cmc) * orig_cmc
        all_AP.append(tmp_cmc.sum() / num_rel)

    assert num_valid_q > 0, "Error: all query identities do not appear in gallery"
    new_all_cmc = np.asarray(new_all_cmc).astype(np.float64).sum(0) / num_valid_q
    return new_all_cmc, float(np.mean(all_AP)), float(np.mean(all_INP))


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_queries(rng: np.random.Generator, centres: np.ndarray, num_queries: int):
    q_pids = np.sort(rng.integers(0, NUM_IDS, num_queries))
    q_camids = rng.choice(IR_CAMERAS, num_queries)
    noise = rng.standard_normal((num_queries, DIM), dtype=np.float32)
    return _normalise(centres[q_pids] + NOISE * noise).astype(np.float32), q_pids, q_camids


def make_gallery(rng: np.random.Generator, centres: np.ndarray, pairs: np.ndarray, shots: int):
    g_pids = np.repeat(pairs[:, 0], shots)
    g_camids = np.repeat(pairs[:, 1], shots)
    noise = rng.standard_normal((g_pids.size, DIM), dtype=np.float32)
    return _normalise(centres[g_pids] + NOISE * noise).astype(np.float32), g_pids, g_camids


def run(trials: int, num_queries: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    centres = _normalise(rng.standard_normal((NUM_IDS, DIM))).astype(np.float32)
    all_pairs = np.array([(pid, cam) for pid in range(NUM_IDS) for cam in RGB_CAMERAS])
    pairs = all_pairs[np.sort(rng.choice(len(all_pairs), GALLERY_PAIRS, replace=False))]
    query, q_pids, q_camids = make_queries(rng, centres, num_queries)
    rows = []
    for setting, shots in (("single-shot", 1), ("multi-shot", 10)):
        fast_time = ref_time = 0.0
        diff_cmc = diff_map = diff_minp = 0.0
        fast_values = []
        for trial in range(trials):
            trial_rng = np.random.default_rng([seed, shots, trial])
            gallery, g_pids, g_camids = make_gallery(trial_rng, centres, pairs, shots)
            distmat = -np.matmul(query, gallery.T)
            start = time.perf_counter()
            fast = eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids)
            fast_time += time.perf_counter() - start
            start = time.perf_counter()
            ref = reference_eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids)
            ref_time += time.perf_counter() - start
            diff_cmc = max(diff_cmc, float(np.abs(fast[0] - ref[0]).max()))
            diff_map = max(diff_map, abs(fast[1] - ref[1]))
            diff_minp = max(diff_minp, abs(fast[2] - ref[2]))
            fast_values.append((fast[0][0], fast[1], fast[2]))
        means = np.mean(fast_values, axis=0)
        rows.append(
            {
                "setting": setting,
                "queries": num_queries,
                "gallery": len(pairs) * shots,
                "trials": trials,
                "vectorised_s": fast_time,
                "reference_s": ref_time,
                "speedup": ref_time / fast_time,
                "max_abs_diff_cmc": diff_cmc,
                "max_abs_diff_mAP": diff_map,
                "max_abs_diff_mINP": diff_minp,
                "rank1": float(means[0]),
                "mAP": float(means[1]),
                "mINP": float(means[2]),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 trial, 500 queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/...)")
    args = parser.parse_args()
    if args.out is None:
        name = "bench_evaluation-quick.json" if args.quick else "bench_evaluation.json"
        args.out = Path("benchmarks/results") / name
    trials, num_queries = (1, 500) if args.quick else (10, NUM_QUERIES)
    rows = run(trials, num_queries, args.seed)

    header = (
        f"{'setting':<12} {'queries':>7} {'gallery':>7} {'trials':>6} {'vectorised s':>12} "
        f"{'reference s':>11} {'speedup':>8} {'|d cmc|':>9} {'|d mAP|':>9} {'|d mINP|':>9} "
        f"{'R1 %':>6} {'mAP %':>6} {'mINP %':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['setting']:<12} {r['queries']:>7} {r['gallery']:>7} {r['trials']:>6} "
            f"{r['vectorised_s']:>12.3f} {r['reference_s']:>11.3f} {r['speedup']:>7.1f}x "
            f"{r['max_abs_diff_cmc']:>9.1e} {r['max_abs_diff_mAP']:>9.1e} "
            f"{r['max_abs_diff_mINP']:>9.1e} {100 * r['rank1']:>6.2f} {100 * r['mAP']:>6.2f} "
            f"{100 * r['mINP']:>6.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "evaluation",
        "quick": args.quick,
        "seed": args.seed,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "numpy": np.__version__,
        "rows": rows,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
