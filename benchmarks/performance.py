"""Every SPEC section 7 performance figure in one command, each beside its reference.

Each figure is measured together with its reference in the same run (same machine, same
load), and reported as ``ratio = ours / reference`` (a time ratio: below 1 means faster):

``jaccard``
    Sparse k-reciprocal Jaccard distance (full definition, every pair with d < 1 kept) on
    2048-d SYSU-sized clustered synthetic features (:func:`bench_clustering.clustered_features`)
    at N = 11,909 and 22,258 (k1 30, k2 6) and joint N = 34,167 (22,258 visible + 11,909
    IR, k1 40, k2 32, modality-balanced query expansion). Reference: exact faiss kNN alone
    (``IndexFlatIP``, k1 neighbours) on the same features; target ratio <= 1.3. Memory: each
    size runs in a fresh process; the row reports the process's peak resident size during
    the Jaccard call (``VmHWM`` reset just before it; it includes the interpreter, the
    imports and the features), and the notes say how much of it the call itself added
    (peak minus the resident size just before the call). Target < 1.5 GB at N = 34,167.
``scale100k``
    100,000 features clustered as the training pipeline does (Jaccard keeping pairs with
    d <= eps, then DBSCAN eps 0.6, min_samples 4), time and peak memory; reference: exact
    faiss kNN at the same N; target: within 24 GB. About 25 minutes on 2 cores, so it is
    not part of the default full run: ask for it with ``--only scale100k`` (``--quick``
    runs it at a small N).
``mmlm``
    Sub-clustering (K = 4) + Chamfer cost + Hungarian at SYSU scale (22,258 visible features
    in 1,103 clusters, 11,909 IR features in 396, 5 % noise), fastest of 3 runs, with torch
    on 1 thread and on all cores. Reference: :func:`bench_clustering.mmlm_reference_task`,
    the released code's approach (one sklearn KMeans fit per cluster, Python loops over
    cluster pairs for the cost, then Hungarian), run once on the same inputs, fully (not
    extrapolated). Target: ours under 3 s.
``evaluation``
    SYSU-MM01 10-trial evaluation (3,803 queries; single-shot 301, multi-shot 3,010 gallery)
    of ``eval_sysu`` against the community per-query loop
    (:func:`bench_evaluation.reference_eval_sysu`). Target: ratio <= 0.2 (at least 5x
    faster) and identical numbers (largest absolute difference <= 1e-9).
``training``
    One full stage-2 training iteration of the engine (``Trainer.train_round`` with one
    iteration: forward, multi-memory + cross-modality + SCA losses, backward, Adam step,
    memory update) against the network alone on the same batch (forward, a trivial loss,
    backward, Adam step) with SYSU-sized memory banks (1,103 x 4 and 396 x 4 slots) and
    the CPU preset's network and batch (resnet18, 64 x 32 images, 4 ids x 8 instances per
    modality, two visible views). The two are interleaved iteration by iteration after
    warm-up; the medians are compared. Overhead = (full - network) / full; target < 5 %,
    i.e. ratio < 1/0.95. Data loading is not part of either. Both run with torch on one
    thread: on a shared 2-core machine a two-thread step is dominated by thread contention
    (a 0.5 s step took 13 s with other jobs running), which says nothing about the engine.

Usage::

    PYTHONPATH=. .venv/bin/python -m benchmarks.performance [--quick] [--only NAME ...]

Prints one table (figure, ours, reference, ratio, target, pass) and writes
``benchmarks/results/performance.json`` and ``performance.md`` (a Markdown table for the
README); ``--quick`` (small sizes everywhere, every figure, under a minute) runs everything in
this one process (no fresh processes, so its memory figures include what earlier figures left
resident) and writes ``performance-quick.*``; ``--only`` adds the names to the file stem.
Wall-clock ratios suffer when other processes share the cores: the load average is recorded,
and the Jaccard notes give the ratio of process CPU times as well.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from benchmarks import bench_clustering, bench_evaluation

__all__ = [
    "FIGURES",
    "FULL",
    "QUICK",
    "Row",
    "Sizes",
    "TrainingSizes",
    "evaluation_figure",
    "format_table",
    "jaccard_figure",
    "markdown_table",
    "mmlm_figure",
    "run",
    "scale_figure",
    "training_figure",
    "training_task",
]

RESULTS = Path("benchmarks/results")
TARGET_JACCARD_RATIO = 1.3
TARGET_JOINT_PEAK_GB = 1.5
TARGET_SCALE_PEAK_GB = 24.0
TARGET_MMLM_S = 3.0
TARGET_EVAL_RATIO = 0.2  # at least 5x faster
TARGET_EVAL_DIFF = 1e-9
TARGET_OVERHEAD = 0.05

# SPEC section 7: the official MMM / cluster-contrast functions on this machine (seconds, GB).
SPEC_JACCARD = {
    (11909, False): (19.7, 1.9),
    (22258, False): (46.0, 6.5),
    (34167, True): (123, 14.7),
}
SPEC_MMLM_S = 79.0


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One line of the table: a measured figure beside its reference.

    ``reference`` is measured in the same run (``None`` where there is none, e.g. peak
    memory); ``ratio = ours / reference``.
    """

    figure: str
    label: str
    ours: float
    unit: str
    reference: float | None = None
    reference_label: str = ""
    target: str = ""
    passed: bool | None = None
    notes: str = ""
    ratio: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.reference is not None and self.reference > 0:
            self.ratio = self.ours / self.reference


@dataclass(frozen=True)
class TrainingSizes:
    arch: str = "resnet18"
    height: int = 64
    width: int = 32
    ids: int = 4  # per modality
    instances: int = 8
    visible_clusters: int = 1103
    infrared_clusters: int = 396
    slots: int = 4
    warmup: int = 2
    iters: int = 10
    threads: int = 1  # torch threads of both variants (see the module docstring)


@dataclass(frozen=True)
class Sizes:
    # (N, blobs, k1, k2, N visible or None)
    jaccard: tuple[tuple[int, int, int, int, int | None], ...]
    scale: tuple[int, int]  # (N, blobs)
    mmlm: tuple[int, int, int, int]  # visible / IR features, visible / IR clusters
    mmlm_repeats: int
    eval_trials: int
    eval_queries: int
    training: TrainingSizes


FULL = Sizes(
    jaccard=((11909, 400, 30, 6, None), (22258, 1103, 30, 6, None), (34167, 1100, 40, 32, 22258)),
    scale=(100_000, 3300),
    mmlm=(22258, 11909, 1103, 396),
    mmlm_repeats=3,
    eval_trials=10,
    eval_queries=bench_evaluation.NUM_QUERIES,
    training=TrainingSizes(),
)
QUICK = Sizes(
    jaccard=((1000, 35, 30, 6, None), (1500, 50, 30, 6, None), (2000, 70, 40, 32, 1300)),
    scale=(2500, 85),
    mmlm=(800, 400, 40, 15),
    mmlm_repeats=1,
    eval_trials=1,
    eval_queries=100,
    training=TrainingSizes(
        height=16,
        width=8,
        ids=2,
        instances=2,
        visible_clusters=110,
        infrared_clusters=40,
        warmup=1,
        iters=2,
    ),
)


def _call(function: Callable[..., dict], *args, isolated: bool) -> dict:
    """``function(*args)``, in a fresh process when ``isolated``."""
    return bench_clustering.in_child(function, *args) if isolated else function(*args)


def _n(value: int) -> str:
    return f"{value:,}"


# --------------------------------------------------------------------------- figures


def jaccard_figure(
    cases: Sequence[tuple[int, int, int, int, int | None]], *, isolated: bool = True
) -> tuple[list[Row], list[dict]]:
    """Jaccard time vs exact kNN and peak memory, one fresh process per size."""
    rows, details = [], []
    for n, blobs, k1, k2, n_visible in cases:
        result = _call(
            bench_clustering.jaccard_task, n, blobs, k1, k2, n_visible, isolated=isolated
        )
        details.append(result)
        joint = n_visible is not None
        name = f"Jaccard N={_n(n)}{' joint' if joint else ''} (k1 {k1}, k2 {k2})"
        spec = SPEC_JACCARD.get((n, joint))
        ratio = result["jaccard_s"] / result["knn_s"]
        rows.append(
            Row(
                "jaccard",
                f"{name}: time",
                result["jaccard_s"],
                "s",
                result["knn_s"],
                "exact faiss kNN",
                f"<= {TARGET_JACCARD_RATIO}x",
                ratio <= TARGET_JACCARD_RATIO,
                f"CPU-time ratio {result['cpu_ratio_to_knn']:.2f}x"
                + (f"; official code {spec[0]:g} s" if spec else ""),
            )
        )
        peak = result["peak_rss_gb"]
        rows.append(
            Row(
                "jaccard",
                f"{name}: peak memory",
                peak,
                "GB",
                target=f"< {TARGET_JOINT_PEAK_GB} GB" if joint else "",
                passed=peak < TARGET_JOINT_PEAK_GB if joint else None,
                notes=(
                    f"whole process; the call added {result['added_gb']:.2f} GB to "
                    f"{result['rss_before_gb']:.2f} GB (imports {result['rss_imports_gb']:.2f}"
                    f" GB + features)" + (f"; official code {spec[1]:g} GB" if spec else "")
                ),
            )
        )
    return rows, details


def scale_figure(n: int, blobs: int, *, isolated: bool = True) -> tuple[list[Row], dict]:
    """N features clustered (Jaccard with max_distance = eps, then DBSCAN) in one process."""
    result = _call(bench_clustering.jaccard_task, n, blobs, 30, 6, None, 0.6, 4, isolated=isolated)
    name = f"{_n(n)} features clustered (Jaccard + DBSCAN)"
    rows = [
        Row(
            "scale100k",
            f"{name}: time",
            result["clustered_s"],
            "s",
            result["knn_s"],
            "exact faiss kNN",
            notes=(
                f"Jaccard {result['jaccard_s']:.1f} s + DBSCAN {result['dbscan_s']:.1f} s, "
                f"{result['clusters']} clusters"
            ),
        ),
        Row(
            "scale100k",
            f"{name}: peak memory",
            result["peak_rss_gb"],
            "GB",
            target=f"< {TARGET_SCALE_PEAK_GB:g} GB",
            passed=result["peak_rss_gb"] < TARGET_SCALE_PEAK_GB,
            notes=(
                f"whole process; the call added {result['added_gb']:.2f} GB to "
                f"{result['rss_before_gb']:.2f} GB"
            ),
        ),
    ]
    return rows, result


def mmlm_figure(
    sizes: tuple[int, int, int, int],
    repeats: int,
    threads: Sequence[int],
    *,
    isolated: bool = True,
) -> tuple[list[Row], dict]:
    """Our MMLM (fastest of ``repeats``, per BLAS thread count) vs the loop reference."""
    reference = _call(bench_clustering.mmlm_reference_task, *sizes, isolated=isolated)
    ours = [
        _call(bench_clustering.mmlm_task, *sizes, count, repeats, isolated=isolated)
        for count in threads
    ]
    rows = []
    for result in ours:
        count = result["threads"]
        rows.append(
            Row(
                "mmlm",
                f"MMLM {_n(result['visible_clusters'])} x {_n(result['infrared_clusters'])} "
                f"clusters, numpy {count} thread{'s' if count > 1 else ''}",
                result["mmlm_s"],
                "s",
                reference["total_s"],
                "per-cluster KMeans + loops",
                f"< {TARGET_MMLM_S:g} s",
                result["mmlm_s"] < TARGET_MMLM_S and result["every_cluster_matched"],
                f"fastest of {result['repeats']}, median {result['median_mmlm_s']:.2f} s; "
                f"reference KMeans {reference['kmeans_s']:.1f} s + cost "
                f"{reference['cost_s']:.1f} s + Hungarian {reference['hungarian_s']:.2f} s; "
                f"released code {SPEC_MMLM_S:g} s",
            )
        )
    return rows, {"reference": reference, "ours": ours}


def evaluation_figure(trials: int, queries: int, seed: int = 0) -> tuple[list[Row], list[dict]]:
    """``eval_sysu`` vs the per-query reference loop (in this process: no memory figure)."""
    results = bench_evaluation.run(trials, queries, seed)
    rows = []
    for result in results:
        diff = max(
            result["max_abs_diff_cmc"], result["max_abs_diff_mAP"], result["max_abs_diff_mINP"]
        )
        ratio = result["vectorised_s"] / result["reference_s"]
        rows.append(
            Row(
                "evaluation",
                f"SYSU {result['setting']} eval, {trials} trial{'s' if trials > 1 else ''}, "
                f"{_n(result['queries'])} x {_n(result['gallery'])}",
                result["vectorised_s"],
                "s",
                result["reference_s"],
                "per-query loop",
                f"<= {TARGET_EVAL_RATIO}x, identical",
                ratio <= TARGET_EVAL_RATIO and diff <= TARGET_EVAL_DIFF,
                f"largest |difference| {diff:.1e} (cmc, mAP, mINP)",
            )
        )
    return rows, results


def training_task(sizes: TrainingSizes, seed: int = 0) -> dict:
    """Full stage-2 engine iteration vs the network step alone, interleaved; per-step times.

    Both use the same model (in training mode), optimiser and pre-built batch; every
    iteration runs one full step (``Trainer.train_round`` with ``iters=1``) and one
    network-only step (forward, ``neck.square().mean()``, backward, Adam step), in
    alternating order. The first ``sizes.warmup`` pairs are discarded. Torch runs on
    ``sizes.threads`` threads (restored afterwards).
    """
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(sizes.threads)
    try:
        return _training_measurements(sizes, seed)
    finally:
        torch.set_num_threads(previous_threads)


def _training_measurements(sizes: TrainingSizes, seed: int) -> dict:
    import torch

    from mmm_core.engine.targets import Stage2Targets
    from mmm_core.engine.trainer import Trainer
    from mmm_core.matching.assignment import match_clusters
    from mmm_core.matching.cost import memory_cost
    from mmm_core.matching.soft import sca_weights
    from mmm_core.models import build_model

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model(sizes.arch, "none")
    dim, slots = model.feature_dim, sizes.slots

    def memories(clusters: int) -> tuple[torch.Tensor, torch.Tensor]:
        centres = torch.nn.functional.normalize(
            torch.randn(clusters, slots, dim, generator=generator), dim=2
        )
        valid = torch.randint(1, slots + 1, (clusters,), generator=generator)
        mask = torch.arange(slots)[None, :] < valid[:, None]
        return centres * mask[..., None], mask

    centres_v, mask_v = memories(sizes.visible_clusters)
    centres_r, mask_r = memories(sizes.infrared_clusters)
    cost = memory_cost(centres_v.numpy(), mask_v.numpy(), centres_r.numpy(), mask_r.numpy())
    v2r, r2v = match_clusters(cost)
    weights_v2r, weights_r2v = sca_weights(cost, topk=3, temperature=0.05)
    targets = Stage2Targets(
        labels_visible=np.zeros(0, np.int64),
        labels_infrared=np.zeros(0, np.int64),
        centres_visible=centres_v.numpy(),
        centres_infrared=centres_r.numpy(),
        mask_visible=mask_v.numpy(),
        mask_infrared=mask_r.numpy(),
        v2r=v2r,
        r2v=r2v,
        weights_v2r=weights_v2r,
        weights_r2v=weights_r2v,
    )

    def batch(clusters: int, views: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = torch.randperm(clusters, generator=generator)[: sizes.ids]
        labels = ids.repeat_interleave(sizes.instances)
        images = torch.randn(
            labels.numel(), views, 3, sizes.height, sizes.width, generator=generator
        )
        return images, labels, torch.arange(labels.numel())

    visible, infrared = batch(sizes.visible_clusters, 2), batch(sizes.infrared_clusters, 1)
    trainer = Trainer(model, torch.device("cpu"))
    trainer.start_stage(2)
    trainer.start_round(targets)
    optimizer = trainer.optimizer
    assert optimizer is not None
    images = torch.cat([visible[0].flatten(0, 1), infrared[0].flatten(0, 1)])
    modality = torch.cat(
        [
            torch.zeros(visible[0].shape[0] * 2, dtype=torch.long),
            torch.ones(infrared[0].shape[0], dtype=torch.long),
        ]
    )

    def network_step() -> None:
        output = model(images, modality)
        loss = output.neck.float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def full_step() -> dict[str, float]:
        return trainer.train_round([visible], [infrared], iters=1)

    model.train()
    full, network = [], []
    losses: dict[str, float] = {}
    for iteration in range(sizes.warmup + sizes.iters):
        # Alternate which of the two goes first, so that neither always follows the other.
        for kind in ("full", "network") if iteration % 2 == 0 else ("network", "full"):
            start = time.perf_counter()
            if kind == "full":
                losses = full_step()
                full.append(time.perf_counter() - start)
            else:
                network_step()
                network.append(time.perf_counter() - start)
    full, network = full[sizes.warmup :], network[sizes.warmup :]
    full_median, network_median = float(np.median(full)), float(np.median(network))
    return {
        "sizes": asdict(sizes),
        "feature_dim": dim,
        "images_per_step": int(images.shape[0]),
        "torch_threads": torch.get_num_threads(),
        "loss_components": sorted(losses),
        "full_step_s": full,
        "network_step_s": network,
        "full_median_s": full_median,
        "network_median_s": network_median,
        "overhead_median": (full_median - network_median) / full_median,
        "overhead_mean": (np.mean(full) - np.mean(network)) / np.mean(full),
        "load_average": os.getloadavg(),
    }


def training_figure(sizes: TrainingSizes, *, isolated: bool = True) -> tuple[list[Row], dict]:
    """Training-step overhead outside the network (median full step vs network step)."""
    result = _call(training_task, sizes, isolated=isolated)
    overhead = result["overhead_median"]
    row = Row(
        "training",
        f"Training step, stage 2 ({sizes.arch} {sizes.height}x{sizes.width}, "
        f"{result['images_per_step']} images, {_n(sizes.visible_clusters)} x "
        f"{_n(sizes.infrared_clusters)} x {sizes.slots} memories)",
        result["full_median_s"],
        "s",
        result["network_median_s"],
        "network fwd+bwd+Adam",
        f"<= {1 / (1 - TARGET_OVERHEAD):.3f}x (overhead < {TARGET_OVERHEAD:.0%})",
        overhead < TARGET_OVERHEAD,
        f"overhead {overhead:.1%} (means: {result['overhead_mean']:.1%}); medians of "
        f"{sizes.iters} interleaved steps, torch {result['torch_threads']} thread(s)",
    )
    return [row], result


# --------------------------------------------------------------------------- driver

FIGURES = ("jaccard", "scale100k", "mmlm", "evaluation", "training")
NOT_BY_DEFAULT = ("scale100k",)  # full mode only; --quick runs everything


def run(
    names: Sequence[str],
    sizes: Sizes,
    *,
    isolated: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Measure the named figures; returns the JSON payload (``rows`` and ``details``).

    ``progress`` receives one line per finished figure.
    """
    unknown = set(names) - set(FIGURES)
    if unknown:
        raise ValueError(f"unknown figures {sorted(unknown)}; choose from {FIGURES}")
    threads = sorted({1, bench_clustering._cores()})
    measure: dict[str, Callable[[], tuple[list[Row], object]]] = {
        "jaccard": lambda: jaccard_figure(sizes.jaccard, isolated=isolated),
        "scale100k": lambda: scale_figure(*sizes.scale, isolated=isolated),
        "mmlm": lambda: mmlm_figure(sizes.mmlm, sizes.mmlm_repeats, threads, isolated=isolated),
        "evaluation": lambda: evaluation_figure(sizes.eval_trials, sizes.eval_queries),
        "training": lambda: training_figure(sizes.training, isolated=isolated),
    }
    start = time.perf_counter()
    load_start = os.getloadavg()
    rows: list[Row] = []
    details: dict[str, object] = {}
    seconds: dict[str, float] = {}
    for name in FIGURES:
        if name not in names:
            continue
        mark = time.perf_counter()
        figure_rows, details[name] = measure[name]()
        seconds[name] = time.perf_counter() - mark
        rows.extend(figure_rows)
        if progress is not None:
            load = " ".join(f"{v:.2f}" for v in os.getloadavg())
            progress(f"{name}: {seconds[name]:.1f} s (load average {load})")
    return {
        "benchmark": "performance",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cores": bench_clustering._cores(),
        },
        "figures": [name for name in FIGURES if name in names],
        "wall_s": time.perf_counter() - start,
        "figure_wall_s": seconds,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "rows": [asdict(row) for row in rows],
        "details": details,
    }


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "GB":
        return f"{value:.2f} GB"
    return f"{value:.3g} s" if value < 10 else f"{value:.1f} s"


def _ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    text = f"{ratio:.3g}x"
    return text + f" ({1 / ratio:.1f}x faster)" if ratio < 0.5 else text


def _verdict(passed: bool | None) -> str:
    return "-" if passed is None else ("pass" if passed else "FAIL")


def _cells(row: dict) -> list[str]:
    reference = _value(row["reference"], row["unit"])
    if row["reference"] is not None and row["reference_label"]:
        reference = f"{reference} ({row['reference_label']})"
    return [
        row["label"],
        _value(row["ours"], row["unit"]),
        reference,
        _ratio(row["ratio"]),
        row["target"] or "-",
        _verdict(row["passed"]),
    ]


HEADER = ["figure", "ours", "reference (same run)", "ratio", "target", "pass"]


def format_table(rows: Sequence[dict]) -> str:
    """Plain-text table of row dicts (``asdict(Row)``), notes on indented lines."""
    cells = [_cells(row) for row in rows]
    widths = [max(len(HEADER[i]), *(len(c[i]) for c in cells)) for i in range(len(HEADER))]
    line = "  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))
    out = [line, "-" * len(line)]
    for row, cell in zip(rows, cells, strict=True):
        out.append("  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip())
        if row["notes"]:
            out.append(f"    {row['notes']}")
    return "\n".join(out)


def markdown_table(payload: dict) -> str:
    """The README table: the rows, a notes column, and one line on the conditions."""
    lines = [
        "| " + " | ".join([*HEADER, "notes"]) + " |",
        "|" + "---|" * (len(HEADER) + 1),
    ]
    for row in payload["rows"]:
        cells = [cell.replace("|", "\\|") for cell in [*_cells(row), row["notes"] or ""]]
        lines.append("| " + " | ".join(cells) + " |")
    load = " ".join(f"{v:.2f}" for v in payload["load_average_start"])
    lines.append("")
    lines.append(
        f"`python -m benchmarks.performance{' --quick' if payload['quick'] else ''}` on "
        f"{payload['machine']['cores']} cores ({payload['machine']['platform']}), "
        f"{payload['wall_s'] / 60:.1f} min, load average at the start {load}. Ratio = ours / "
        "reference, both measured in this run. Peak memory is the whole process's peak "
        "resident size during the call (interpreter, imports and features included)."
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=FIGURES,
        metavar="NAME",
        help=f"figures to run (default: all but {', '.join(NOT_BY_DEFAULT)}; --quick: all); "
        f"choices: {', '.join(FIGURES)}",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    names = args.only or [name for name in FIGURES if args.quick or name not in NOT_BY_DEFAULT]
    sizes = QUICK if args.quick else FULL
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"figures: {', '.join(names)}  quick: {args.quick}  load average: {load}", flush=True)
    payload = run(
        names, sizes, isolated=not args.quick, progress=lambda line: print(line, flush=True)
    )
    payload["quick"] = args.quick
    payload["command"] = "python -m benchmarks.performance" + (" --quick" if args.quick else "")
    print()
    print(format_table(payload["rows"]))
    print()
    print(
        f"wall time {payload['wall_s']:.1f} s; load average "
        f"{' '.join(f'{v:.2f}' for v in payload['load_average_end'])} at the end"
    )
    stem = "performance" + ("-quick" if args.quick else "")
    if args.only:  # a partial run does not overwrite the complete one
        stem += "-" + "-".join(names)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    (args.out / f"{stem}.md").write_text(markdown_table(payload))
    print(f"results written to {args.out / stem}.json and .md")
    return payload


if __name__ == "__main__":
    main()
