"""Clustering and matching kernels at SYSU-MM01 sizes: sparse Jaccard and MMLM.

1. **Jaccard** (`mmm_core.clustering.jaccard.jaccard_distance`, the full definition, every
   pair with d < 1 kept) at N = 11,909 (IR, k1 30, k2 6, ~400 blobs) and N = 34,167
   (joint 22,258 visible + 11,909 IR, k1 40, k2 32, modality-balanced query expansion, ~1,100
   blobs), on 2048-d features. Time is reported as a ratio to exact faiss kNN alone
   (``IndexFlatIP``, k1 neighbours, faiss threads = available cores) measured in the same
   process just before; the Jaccard time includes its own kNN search. Each size runs in a
   fresh child process. Peak memory: the child's peak resident set size during the Jaccard
   call (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``; the
   features, the interpreter and torch are resident already and are included), with the
   resident size before the call shown next to it. Wall-clock ratios suffer when other
   processes share the cores; the ratio of process CPU times (all threads) is printed too.
2. **MMLM** at SYSU sizes (22,258 visible features in ~1,100 clusters, 11,909 IR features in
   ~400 clusters, 2048-d, 5 % noise labels): batched k-means sub-clustering with K = 4
   (20 iterations at most) of both modalities, the symmetric Chamfer cost, Hungarian matching
   with progressive rounds, and the SCA weights; fastest of 3 runs, with torch on one thread
   and on all cores (on a shared machine the multi-threaded run can be the slower one).

The child tasks (:func:`jaccard_task`, :func:`mmlm_task`, and the loop reference of the
released code's approach, :func:`mmlm_reference_task`) are also what
``benchmarks.performance`` runs; :func:`in_child` runs one in a fresh process.

Features: deterministic hierarchical Gaussian blobs on the unit sphere. Each blob (an
"identity") has a centre drawn around one of blobs/10 super-centres (similar-looking
identities), three sub-centres (cameras) and per-sample noise; IR samples get a global and a
per-blob modality shift. Same-blob cosine is about 0.65, k1-neighbour purity 0.8-0.9. The
sparsity of the Jaccard graph depends on this structure: with kNN errors spread uniformly
over all blobs instead, each point shares support with ~8,000 others at N = 34,167 and the
full output alone would exceed 2 GB (``max_distance=eps`` keeps it small).

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_clustering [--quick]

Prints a table and writes benchmarks/results/bench_clustering.json (``-quick.json`` with
--quick, which uses N = 3,000 / 6,000 and a quarter of the MMLM sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

DIM = 2048
TARGET_RATIO = 1.3
TARGET_PEAK_GB = 1.5
TARGET_MMLM_S = 3.0


def clustered_features(
    n: int,
    blobs: int,
    *,
    dim: int = DIM,
    seed: int = 0,
    n_visible: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(n, dim) float32 unit rows, their blob ids, and (if ``n_visible``) the modality mask.

    Rows ``[0, n_visible)`` are visible, the rest infrared (with a modality shift).
    """
    rng = np.random.default_rng(seed)
    sizes = rng.lognormal(0.0, 0.5, blobs)
    sizes = np.maximum(1, np.round(sizes / sizes.sum() * n)).astype(np.int64)
    while sizes.sum() > n:
        sizes[np.argmax(sizes)] -= 1
    while sizes.sum() < n:
        sizes[np.argmin(sizes)] += 1
    labels = np.repeat(np.arange(blobs), sizes)
    rng.shuffle(labels)

    def gaussian(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(dim))

    supers = max(1, blobs // 10)
    centres = 1.0 * gaussian(supers, dim)[rng.integers(0, supers, blobs)]
    centres += 0.8 * gaussian(blobs, dim)
    cameras = 0.5 * gaussian(blobs, 3, dim)
    x = centres[labels]
    x += cameras[labels, rng.integers(0, 3, n)]
    x += 0.9 * gaussian(n, dim)
    modality = None
    if n_visible is not None:
        modality = np.arange(n) < n_visible
        shift = 0.5 * gaussian(1, dim) + 0.3 * gaussian(blobs, dim)
        x[~modality] += shift[labels[~modality]]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32, copy=False), labels, modality


# --------------------------------------------------------------------------- memory helpers


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- child tasks


def _rss_gb(field: str = "VmRSS") -> float:
    kb = _status_kb(field)
    return (kb or 0) / 2**20


def jaccard_task(
    n: int,
    blobs: int,
    k1: int,
    k2: int,
    n_visible: int | None,
    dbscan_eps: float | None = None,
    min_samples: int = 4,
) -> dict:
    """Faiss kNN alone, then the full Jaccard (and DBSCAN if ``dbscan_eps``); time and memory.

    Meant for a fresh process (:func:`in_child`), so that the memory figures belong to this
    computation alone:

    * ``rss_imports_gb``: resident size after the imports (interpreter, numpy, torch, faiss);
    * ``rss_before_gb``: just before the Jaccard call (imports + the features);
    * ``peak_rss_gb``: the process's peak resident size during the Jaccard (+ DBSCAN) call,
      read as ``VmHWM`` after resetting it through ``/proc/self/clear_refs`` (Linux); where
      that is unavailable, ``ru_maxrss`` (the whole child's lifetime peak, an upper bound);
    * ``added_gb = peak_rss_gb - rss_before_gb``: what the computation itself adds;
    * ``ru_maxrss_gb``: the child's lifetime peak (also covers generating the features).

    With ``dbscan_eps`` the Jaccard keeps only pairs with ``d <= eps`` (what the training
    pipeline does) and DBSCAN(eps, min_samples) runs on it; otherwise every pair with
    ``d < 1`` is kept (the full definition).
    """
    import faiss

    from mmm_core.clustering.dbscan import dbscan_labels
    from mmm_core.clustering.jaccard import jaccard_distance

    faiss.omp_set_num_threads(_cores())
    rss_imports = _rss_gb()
    x, _, modality = clustered_features(n, blobs, n_visible=n_visible)

    warm = faiss.IndexFlatIP(x.shape[1])  # load the BLAS and thread pool before timing
    warm.add(x[:256])
    warm.search(x[:256], 8)
    del warm
    start, cpu = time.perf_counter(), time.process_time()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    index.search(x, k1)
    knn_s, knn_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    del index

    rss_before = _rss_gb()
    exact_peak = _reset_peak()
    start, cpu = time.perf_counter(), time.process_time()
    dist = jaccard_distance(x, k1, k2, modality=modality, max_distance=dbscan_eps)
    jaccard_s, jaccard_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    dbscan_s, clusters, noise = 0.0, None, None
    if dbscan_eps is not None:
        mark = time.perf_counter()
        labels = dbscan_labels(dist, dbscan_eps, min_samples)
        dbscan_s = time.perf_counter() - mark
        clusters, noise = int(labels.max()) + 1, int((labels < 0).sum())
    peak = _rss_gb("VmHWM") if exact_peak else 0.0
    ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if not exact_peak or peak == 0.0:  # fall back to the process-lifetime peak
        exact_peak, peak = False, ru_maxrss
    result = {
        "n": n,
        "blobs": blobs,
        "k1": k1,
        "k2": k2,
        "modality_balanced": modality is not None,
        "knn_s": knn_s,
        "jaccard_s": jaccard_s,
        "ratio_to_knn": jaccard_s / knn_s,
        "knn_cpu_s": knn_cpu_s,
        "jaccard_cpu_s": jaccard_cpu_s,
        "cpu_ratio_to_knn": jaccard_cpu_s / knn_cpu_s,
        "load_average": os.getloadavg(),
        "rss_imports_gb": rss_imports,
        "rss_before_gb": rss_before,
        "peak_rss_gb": peak,
        "added_gb": peak - rss_before,
        "ru_maxrss_gb": ru_maxrss,
        "peak_method": "VmHWM after clear_refs" if exact_peak else "ru_maxrss (whole child)",
        "max_distance": dbscan_eps,
        "stored_per_row": dist.nnz / n,
        "output_mb": (dist.data.nbytes + dist.indices.nbytes + dist.indptr.nbytes) / 2**20,
    }
    if dbscan_eps is not None:
        result.update(
            dbscan_s=dbscan_s,
            clustered_s=jaccard_s + dbscan_s,
            clustered_ratio_to_knn=(jaccard_s + dbscan_s) / knn_s,
            dbscan_eps=dbscan_eps,
            min_samples=min_samples,
            clusters=clusters,
            noise=noise,
        )
    return result


def mmlm_inputs(
    n_visible: int, n_infrared: int, c_visible: int, c_infrared: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SYSU-like MMLM inputs: visible and infrared features (float32, unit rows) and labels.

    Labels are the blob ids with 5 % of the samples turned into DBSCAN noise (-1), renumbered
    0..C-1. Deterministic: the same arguments give the same arrays.
    """
    from mmm_core.clustering.dbscan import renumber_labels

    rng = np.random.default_rng(1)
    visible, v_labels, _ = clustered_features(n_visible, c_visible, seed=1)
    infrared, r_labels, _ = clustered_features(n_infrared, c_infrared, seed=2)
    v_labels = renumber_labels(np.where(rng.random(n_visible) < 0.05, -1, v_labels))
    r_labels = renumber_labels(np.where(rng.random(n_infrared) < 0.05, -1, r_labels))
    return visible, v_labels, infrared, r_labels


def mmlm_task(
    n_visible: int,
    n_infrared: int,
    c_visible: int,
    c_infrared: int,
    threads: int,
    repeats: int = 3,
) -> dict:
    """Runs in a fresh process: sub-clustering (K = 4) + cost + Hungarian + SCA weights.

    The BLAS under numpy uses ``threads`` threads (threadpoolctl; the kernels are numpy since
    the match step stopped importing torch). Repeated ``repeats`` times; the fastest run is
    reported (and the median total). ``mmlm_s`` is sub-clustering + cost + Hungarian (the
    SPEC's MMLM figure), ``total_s`` adds the SCA weights.
    """
    from threadpoolctl import threadpool_limits

    from mmm_core.clustering.subcluster import subcluster
    from mmm_core.matching.assignment import match_clusters
    from mmm_core.matching.cost import memory_cost
    from mmm_core.matching.soft import sca_weights

    visible, v_labels, infrared, r_labels = mmlm_inputs(
        n_visible, n_infrared, c_visible, c_infrared
    )

    runs = []
    with threadpool_limits(threads):
        for _ in range(repeats):
            times = {}
            start = time.perf_counter()
            rng = np.random.default_rng(0)
            v_memory = subcluster(visible, v_labels, 4, iters=20, rng=rng)
            r_memory = subcluster(infrared, r_labels, 4, iters=20, rng=rng)
            times["subcluster_s"] = time.perf_counter() - start
            mark = time.perf_counter()
            cost = memory_cost(v_memory.centres, v_memory.mask, r_memory.centres, r_memory.mask)
            times["cost_s"] = time.perf_counter() - mark
            mark = time.perf_counter()
            v2r, r2v = match_clusters(cost)
            times["hungarian_s"] = time.perf_counter() - mark
            times["mmlm_s"] = time.perf_counter() - start
            mark = time.perf_counter()
            sca_weights(cost, topk=3, temperature=0.05)
            times["sca_s"] = time.perf_counter() - mark
            times["total_s"] = time.perf_counter() - start
            runs.append(times)
    best = min(runs, key=lambda run: run["total_s"])
    median_total = float(np.median([run["total_s"] for run in runs]))
    median_mmlm = float(np.median([run["mmlm_s"] for run in runs]))
    return {
        "visible_features": n_visible,
        "infrared_features": n_infrared,
        "visible_clusters": v_memory.num_clusters,
        "infrared_clusters": r_memory.num_clusters,
        "every_cluster_matched": bool((v2r >= 0).all() and (r2v >= 0).all()),
        "threads": threads,
        "repeats": repeats,
        "median_total_s": median_total,
        "median_mmlm_s": median_mmlm,
        "load_average": os.getloadavg(),
        **best,
    }


def _hungarian_until_all_matched(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian rounds on the unmatched rows of the larger side until all are matched."""
    from scipy.optimize import linear_sum_assignment

    transposed = cost.shape[0] < cost.shape[1]
    larger = cost.T if transposed else cost
    big_to_small = np.full(larger.shape[0], -1, dtype=np.int64)
    small_to_big = np.full(larger.shape[1], -1, dtype=np.int64)
    rows, cols = linear_sum_assignment(larger)
    big_to_small[rows], small_to_big[cols] = cols, rows
    while (big_to_small < 0).any():
        left = np.flatnonzero(big_to_small < 0)
        rows, cols = linear_sum_assignment(larger[left])
        big_to_small[left[rows]] = cols
    return (small_to_big, big_to_small) if transposed else (big_to_small, small_to_big)


def mmlm_reference_task(
    n_visible: int, n_infrared: int, c_visible: int, c_infrared: int, k: int = 4
) -> dict:
    """The released code's approach to MMLM, for timing: one sklearn fit per cluster, loops.

    Written for this benchmark from a description of that approach (not its code):

    * sub-clustering: for every cluster of each modality, select its members with a boolean
      mask and fit ``sklearn.cluster.KMeans(n_clusters=min(k, |c|))`` (sklearn's defaults:
      k-means++, ``n_init="auto"``, up to 300 iterations; ``random_state=0``); the memories
      are its normalised ``cluster_centers_``;
    * cost: two Python loops over (infrared cluster, visible cluster) pairs, each computing
      ``scipy.spatial.distance.cdist`` between the two clusters' memories and the sum over
      the infrared memories of the distance to the nearest visible one (the one-sided sum);
    * matching: ``scipy.optimize.linear_sum_assignment``, repeated on the unmatched clusters
      of the larger side until every cluster has a partner.

    Same inputs as :func:`mmlm_task` (:func:`mmlm_inputs`). Runs once. Also checks the loop
    cost against the project's vectorised ``memory_cost(..., variant="one_sided")`` on the
    same memories (``max_abs_diff_cost``, not timed).
    """
    import warnings

    from scipy.spatial.distance import cdist
    from sklearn.cluster import KMeans

    from mmm_core.matching.cost import memory_cost

    visible, v_labels, infrared, r_labels = mmlm_inputs(
        n_visible, n_infrared, c_visible, c_infrared
    )

    def memories(features: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
        out = []
        for cluster in range(int(labels.max()) + 1):
            members = features[labels == cluster]
            kmeans = KMeans(n_clusters=min(k, len(members)), random_state=0).fit(members)
            centres = kmeans.cluster_centers_
            out.append(centres / np.linalg.norm(centres, axis=1, keepdims=True))
        return out

    start = time.perf_counter()
    with warnings.catch_warnings():  # duplicate points in tiny clusters
        warnings.simplefilter("ignore")
        v_memories = memories(visible, v_labels)
        r_memories = memories(infrared, r_labels)
    kmeans_s = time.perf_counter() - start
    mark = time.perf_counter()
    cost_rv = np.zeros((len(r_memories), len(v_memories)))
    for i, r_centres in enumerate(r_memories):
        for j, v_centres in enumerate(v_memories):
            cost_rv[i, j] = cdist(r_centres, v_centres).min(axis=1).sum()
    cost_s = time.perf_counter() - mark
    mark = time.perf_counter()
    v2r, r2v = _hungarian_until_all_matched(cost_rv.T)
    hungarian_s = time.perf_counter() - mark
    total_s = time.perf_counter() - start

    def padded(memory_list: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        centres = np.zeros((len(memory_list), k, visible.shape[1]), dtype=np.float32)
        mask = np.zeros((len(memory_list), k), dtype=bool)
        for c, memory in enumerate(memory_list):
            centres[c, : len(memory)], mask[c, : len(memory)] = memory, True
        return centres, mask

    vectorised = memory_cost(*padded(v_memories), *padded(r_memories), variant="one_sided")
    return {
        "visible_features": n_visible,
        "infrared_features": n_infrared,
        "visible_clusters": len(v_memories),
        "infrared_clusters": len(r_memories),
        "every_cluster_matched": bool((v2r >= 0).all() and (r2v >= 0).all()),
        "kmeans_s": kmeans_s,
        "cost_s": cost_s,
        "hungarian_s": hungarian_s,
        "total_s": total_s,
        "max_abs_diff_cost": float(np.abs(vectorised - cost_rv.T).max()),
        "load_average": os.getloadavg(),
    }


def in_child(function, *args) -> dict:
    """``function(*args)`` in a fresh spawned Python process (its own memory, its own peak)."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        return pool.submit(function, *args).result()


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, well under a minute")
    parser.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/...)")
    args = parser.parse_args()
    if args.out is None:
        name = "bench_clustering-quick.json" if args.quick else "bench_clustering.json"
        args.out = Path("benchmarks/results") / name

    if args.quick:
        jaccard_cases = [(3000, 100, 30, 6, None), (6000, 200, 40, 32, 3900)]
        mmlm_case = (5565, 2977, 275, 100)
    else:
        jaccard_cases = [(11909, 400, 30, 6, None), (34167, 1100, 40, 32, 22258)]
        mmlm_case = (22258, 11909, 1100, 400)

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"cores: {_cores()}  dim: {DIM}  quick: {args.quick}  load average: {load}")
    print()
    header = (
        f"{'Jaccard':<22}{'kNN alone':>10}{'Jaccard':>10}{'ratio':>8}{'CPU ratio':>10}"
        f"{'target':>8}{'RSS before':>12}{'peak RSS':>10}{'target':>8}{'stored/row':>12}"
    )
    print(header)
    print("-" * len(header))
    jaccard_results = []
    for n, blobs, k1, k2, n_visible in jaccard_cases:
        result = in_child(jaccard_task, n, blobs, k1, k2, n_visible)
        jaccard_results.append(result)
        kind = "joint" if n_visible else "intra"
        label = f"N={n} {kind} {k1}/{k2}"
        print(
            f"{label:<22}{result['knn_s']:>9.2f}s{result['jaccard_s']:>9.2f}s"
            f"{result['ratio_to_knn']:>7.2f}x{result['cpu_ratio_to_knn']:>9.2f}x"
            f"{TARGET_RATIO:>7.1f}x{result['rss_before_gb']:>10.2f}GB"
            f"{result['peak_rss_gb']:>8.2f}GB{TARGET_PEAK_GB:>6.1f}GB"
            f"{result['stored_per_row']:>12.1f}"
        )
    print(f"peak memory: {jaccard_results[0]['peak_method']}")
    print()

    mmlm_runs = [in_child(mmlm_task, *mmlm_case, threads) for threads in sorted({1, _cores()})]
    mmlm = mmlm_runs[0]
    print(
        f"MMLM {mmlm['visible_features']} x {mmlm['infrared_features']} features, "
        f"{mmlm['visible_clusters']} x {mmlm['infrared_clusters']} clusters, K = 4 "
        f"(fastest of {mmlm['repeats']} runs)"
    )
    header = (
        f"{'BLAS threads':>13}{'sub-cluster':>12}{'cost':>8}{'Hungarian':>11}{'SCA':>8}"
        f"{'total':>8}{'median':>8}{'target':>8}"
    )
    print(header)
    print("-" * len(header))
    for run in mmlm_runs:
        print(
            f"{run['threads']:>13}{run['subcluster_s']:>11.2f}s{run['cost_s']:>7.2f}s"
            f"{run['hungarian_s']:>10.2f}s{run['sca_s']:>7.2f}s{run['total_s']:>7.2f}s"
            f"{run['median_total_s']:>7.2f}s{TARGET_MMLM_S:>7.1f}s"
        )
    matched = all(run["every_cluster_matched"] for run in mmlm_runs)
    print(f"every cluster matched: {matched}")
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    payload = {
        "benchmark": "bench_clustering",
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "cores": _cores()},
        "dim": DIM,
        "jaccard": jaccard_results,
        "mmlm": mmlm_runs,
        "targets": {
            "jaccard_ratio_to_knn": TARGET_RATIO,
            "jaccard_peak_gb_at_34167": TARGET_PEAK_GB,
            "mmlm_s": TARGET_MMLM_S,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
