"""The ablation ladder on the synthetic bench preset: does each part of MMM help?

    python -m benchmarks.accuracy                 # SYSU + RegDB layouts, seeds 1-5 (~3.3 h here)
    python -m benchmarks.accuracy --quick         # a smoke run: 1 seed, 1+1 rounds, few ids
    python -m benchmarks.accuracy --formats sysu --seeds 1 2

`--jobs N` trains N (layout, seed) units at a time in worker processes (each with
cpu_count // N torch threads; default: one per core on a CPU, 1 on a GPU);
`--base sysu=FILE` replaces a layout's bench config; `--set KEY=VALUE ...` applies settings to
every run (e.g. `--set train.amp=none` on a GPU, to train in fp32 as the CPU calibration did).

Variants (SPEC section 5, configs/ablation/*.yaml composed on the bench config):

    baseline      stage 1 without CMC (per-modality cluster contrast), R1 + R2 rounds
    +CMC          stage 1 with CMC joint clustering, R1 + R2 rounds (default expansion)
    +CMC (released expansion)  the same with cluster.joint_expansion=released
    +MMLM (K=1)   R1 CMC rounds, then R2 stage-2 rounds: single memory, Hungarian, no SCA
    +MMLM (K=4)   ... multi-memory (K=4), Hungarian, no SCA
    +SCA (MMM)    ... K=4, Hungarian, SCA (the full method)
    greedy        MMM with per-cluster greedy matching instead of Hungarian (comparison)
    supervised    MMM's network, schedule and losses with the true ids (train.supervision:
                  oracle), the upper bound

Every variant trains the same number of rounds. The stage-1 CMC rounds that +CMC and the
four method variants share are trained once per (layout, seed) and each of these variants
resumes from a copy of that checkpoint (baseline, the released-expansion CMC and supervised
train from scratch): resuming is bit-identical on CPU (tests/engine/test_loop.py) and stage 1 reads
no stage-2 setting, so this equals training each variant from scratch
(tests/test_benchmarks_accuracy.py checks it on a micro run) at a fraction of the cost.

Initial weights: no ImageNet download is possible here, so the network starts from
`mmm pretrain` weights (visible images of a disjoint synthetic identity set, world seed
1000, see mmm_core/engine/pretrain.py); `--pretrained none` starts from random weights.

Output (``--out``, default benchmarks/results/accuracy): ``runs/`` (every run's metrics.jsonl),
``accuracy.json`` (all rows + summaries), ``accuracy.md`` (tables), ``*.png`` (curves).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmm_core.arguments import add_config_arguments
from mmm_core.config import Config, ConfigError, fingerprint, load_config
from mmm_core.engine.lifecycle import parse_rows

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
ABLATIONS = ROOT / "configs" / "ablation"
BASE_CONFIGS = {
    "sysu": ROOT / "configs" / "synthetic-bench.yaml",
    "regdb": ROOT / "configs" / "synthetic-bench-regdb.yaml",
}
VARIANTS = (
    "baseline",
    "cmc",
    "cmc-released",
    "mmlm-k1",
    "mmlm-k4",
    "mmm",
    "greedy",
    "supervised",
)
LABELS = {
    "baseline": "baseline",
    "cmc": "+CMC",
    "cmc-released": "+CMC (released expansion)",
    "supervised": "supervised (oracle)",
    "mmlm-k1": "+MMLM (K=1)",
    "mmlm-k4": "+MMLM (K=4)",
    "mmm": "+SCA (MMM)",
    "greedy": "MMM, greedy matching",
}
STAGE2_VARIANTS = ("mmlm-k1", "mmlm-k4", "mmm", "greedy", "supervised")
# Variants trained from scratch; the others resume from the shared stage-1 CMC trunk.
SCRATCH_VARIANTS = ("baseline", "cmc-released", "supervised")
# (metric key in a metrics row, column title) per layout.
SETTINGS = {
    "sysu": [("sysu/all/single", "SYSU all-search"), ("sysu/indoor/single", "SYSU indoor-search")],
    "regdb": [
        ("regdb/visible->thermal", "RegDB visible->thermal"),
        ("regdb/thermal->visible", "RegDB thermal->visible"),
    ],
}
MEASURES = ("rank1", "mAP", "mINP")
CLUSTER_MEASURES = (
    "ari_visible",
    "ari_infrared",
    "correspondence_accuracy",
    "unified_ari",
    "oracle_match_accuracy",
)


@dataclass(frozen=True)
class Plan:
    """What one benchmark run trains."""

    formats: tuple[str, ...] = ("sysu", "regdb")
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    stage1_rounds: int = 6
    stage2_rounds: int = 6
    iters_per_round: int | None = None  # None: the bench config's
    ids: dict[str, int] = field(default_factory=dict)  # layout -> ids; empty: config's
    pretrained: str = "auto"  # "auto" (mmm pretrain, cached), "none", or a file
    device: str = "auto"
    variants: tuple[str, ...] = VARIANTS
    base_configs: dict[str, str] = field(default_factory=dict)  # empty: BASE_CONFIGS
    overrides: tuple[str, ...] = ()  # KEY=VALUE config settings for every run (--set)

    def base_config(self, fmt: str) -> Path:
        return Path(self.base_configs.get(fmt, BASE_CONFIGS[fmt]))


QUICK = Plan(
    formats=("sysu", "regdb"),
    seeds=(1,),
    stage1_rounds=1,
    stage2_rounds=1,
    iters_per_round=4,
    ids={"sysu": 24, "regdb": 24},
    pretrained="none",
)


def variant_config(
    fmt: str, variant: str, seed: int, plan: Plan, data_root: Path, extra: list[str] = ()
) -> Config:
    """The resolved config of one variant (full length: R1 + R2 rounds in total)."""
    files = [plan.base_config(fmt), ABLATIONS / f"{variant}.yaml"]
    r1, r2 = plan.stage1_rounds, plan.stage2_rounds
    if variant in STAGE2_VARIANTS:
        rounds = [f"train.stage1_rounds={r1}", f"train.stage2_rounds={r2}"]
    else:
        rounds = [f"train.stage1_rounds={r1 + r2}", "train.stage2_rounds=0"]
    sets = [f"seed={seed}", f"data.root={data_root}", f"train.device={plan.device}", *rounds]
    sets += ["tracking.enabled=false"]
    if plan.iters_per_round:
        sets.append(f"train.iters_per_round={plan.iters_per_round}")
    if fmt in plan.ids:
        sets.append(f"data.synthetic.ids={plan.ids[fmt]}")
    return load_config(files, [*sets, *extra])


def trunk_config(fmt: str, seed: int, plan: Plan, data_root: Path, extra: list[str] = ()) -> Config:
    """The shared stage-1 part: R1 CMC rounds (the +CMC config cut after R1 rounds)."""
    cfg = variant_config(fmt, "cmc", seed, plan, data_root, extra)
    return cfg.replace(**{"train.stage1_rounds": plan.stage1_rounds})


def _train(cfg: Config, out: Path, resume: bool = False) -> list[dict[str, Any]]:
    from mmm_core.engine.loop import run_training

    return run_training(cfg, out, resume=resume, overwrite=not resume)


def _branch(trunk: Path, out: Path) -> None:
    """A copy of the trunk's run folder (checkpoint + metrics) to resume from."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("checkpoint.pt", "metrics.jsonl"):
        shutil.copy2(trunk / name, out / name)


def _done(out: Path, rounds: int, cfg: Config) -> list[dict[str, Any]] | None:
    """The rows of a finished run folder of `cfg` (reused when the benchmark is rerun), else
    None: a folder whose stored config trains something else (another default, say) is not
    reused, whatever it holds."""
    path, stored = out / "metrics.jsonl", out / "config.yaml"
    if not (out / "done").exists() or not path.exists() or not stored.exists():
        return None
    if fingerprint(load_config([stored])) != fingerprint(cfg):
        log.info("%s: its config.yaml differs from this plan's (not reused)", out)
        return None
    rows = parse_rows(path)
    return rows if len(rows) == rounds else None


class MissingRunsError(RuntimeError):
    """`--report` found unfinished runs."""


def _require(rows: list[dict[str, Any]] | None, out: Path) -> list[dict[str, Any]]:
    if rows is None:
        raise MissingRunsError(f"{out}: no finished run of this plan (run without --report)")
    return rows


def run_layout_seed(
    fmt: str,
    seed: int,
    plan: Plan,
    data_root: Path,
    out: Path,
    extra: list[str] = (),
    report: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Train every variant of `plan` for one layout and seed; returns variant -> rows.

    `report`: train nothing, read the finished runs (`MissingRunsError` when one is not there).
    """
    total = plan.stage1_rounds + plan.stage2_rounds
    results: dict[str, list[dict[str, Any]]] = {}
    trunk = out / "trunk"
    needs_trunk = any(v not in SCRATCH_VARIANTS for v in plan.variants)
    trunk_cfg = trunk_config(fmt, seed, plan, data_root, extra)
    if needs_trunk and not report and _done(trunk, plan.stage1_rounds, trunk_cfg) is None:
        log.info("%s seed %d: %d shared CMC rounds", fmt, seed, plan.stage1_rounds)
        _train(trunk_cfg, trunk)
        (trunk / "done").touch()
    for variant in plan.variants:
        run_dir = out / variant
        cfg = variant_config(fmt, variant, seed, plan, data_root, extra)
        rows = _done(run_dir, total, cfg)
        if report:
            rows = _require(rows, run_dir)
        if rows is None:
            started = time.perf_counter()
            if variant in SCRATCH_VARIANTS:
                rows = _train(cfg, run_dir)
            else:
                _branch(trunk, run_dir)
                rows = _train(cfg, run_dir, resume=True)
            (run_dir / "done").touch()
            log.info("%s seed %d %s: %.0f s", fmt, seed, variant, time.perf_counter() - started)
        results[variant] = rows
    return results


# ------------------------------------------------------------------------------ summaries


def final_metrics(fmt: str, rows: list[dict[str, Any]]) -> dict[str, float]:
    """The last round's retrieval metrics (per setting) and the last clustering diagnostics.

    A setting the config did not evaluate (e.g. ``eval.sysu_modes=[all]``) is NaN ("-").
    """
    last = rows[-1]
    out: dict[str, float] = {}
    for key, _title in SETTINGS[fmt]:
        for measure in MEASURES:
            value = last.get(f"{key}/{measure}")
            out[f"{key}/{measure}"] = float("nan") if value is None else float(value)
    for measure in CLUSTER_MEASURES:
        values = [r[measure] for r in rows if r.get(measure) is not None]
        out[measure] = float(values[-1]) if values else float("nan")
    out["last_quarter_gain"] = last_quarter_gain(fmt, rows)
    return out


def last_quarter_gain(fmt: str, rows: list[dict[str, Any]]) -> float:
    """Primary-setting mAP of the last round minus that of the round before the last quarter
    of training began (12 rounds: round 11 - round 8); NaN when either was not evaluated.

    The convergence test of the calibration: a run is flat when this is near 0.
    """
    quarter = max(1, -(-len(rows) // 4))
    if len(rows) <= quarter:
        return float("nan")
    key = f"{SETTINGS[fmt][0][0]}/mAP"
    first, last = rows[-1 - quarter].get(key), rows[-1].get(key)
    return float("nan") if first is None or last is None else float(last) - float(first)


def curves(
    by_seed: dict[int, dict[str, list[dict[str, Any]]]], variant: str, key: str
) -> np.ndarray:
    """(seeds, rounds) values of `key` per round (NaN where a round has none)."""
    values = [[np.nan if r.get(key) is None else r[key] for r in by_seed[s][variant]]
              for s in sorted(by_seed)]  # fmt: skip
    return np.asarray(values, dtype=np.float64)


def round_means(
    by_seed: dict[int, dict[str, list[dict[str, Any]]]], variant: str, key: str
) -> list[float]:
    """Per round, the mean of `key` over the seeds (NaN for a round where no seed has it)."""
    with warnings.catch_warnings():  # rounds with no value
        warnings.simplefilter("ignore", RuntimeWarning)
        return [float(v) for v in np.nanmean(curves(by_seed, variant, key), axis=0)]


def diagnostics_table(fmt: str, by_seed: dict[int, dict[str, list[dict[str, Any]]]]) -> str:
    """Per round, means over seeds (%): stage-2 correspondence accuracy and `xmod` (true-id
    centroid matching of the features entering the round) of the variants that have them."""
    variants = next(iter(by_seed.values()))
    rounds = max(len(rows) for rows in variants.values())
    lines = [
        f"**{fmt.upper()} layout, per round** (mean over {len(by_seed)} seeds, %; "
        "corr. = correspondence accuracy of the pseudo-labels, xmod = true-id centroid "
        "matching of the features entering the round)\n",
        "| variant | measure | " + " | ".join(str(r) for r in range(rounds)) + " |",
        "|---|---|" + "---|" * rounds,
    ]
    for variant in variants:
        for key, name in (("correspondence_accuracy", "corr."), ("oracle_match_accuracy", "xmod")):
            means = round_means(by_seed, variant, key)
            if all(m != m for m in means):
                continue
            cells = ["-" if m != m else f"{100 * m:.1f}" for m in means]
            lines.append(f"| {LABELS[variant]} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), NaNs ignored."""
    array = np.asarray([v for v in values if v == v], dtype=np.float64)
    if array.size == 0:
        return float("nan"), float("nan")
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def summarise(
    results: dict[str, dict[int, dict[str, list[dict[str, Any]]]]],
) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """layout -> variant -> metric -> (mean, std) over seeds of the final values.

    Also ``"diff vs MMM"`` entries: per-seed paired differences (variant - MMM), mean and std.
    """
    summary: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for fmt, by_seed in results.items():
        summary[fmt] = {}
        finals = {
            variant: [final_metrics(fmt, by_seed[seed][variant]) for seed in sorted(by_seed)]
            for variant in next(iter(by_seed.values()))
        }
        for variant, per_seed in finals.items():
            entry = {key: mean_std([m[key] for m in per_seed]) for key in per_seed[0]}
            if "mmm" in finals and variant != "mmm":
                for key in per_seed[0]:
                    diffs = [m[key] - r[key] for m, r in zip(per_seed, finals["mmm"], strict=True)]
                    entry[f"diff/{key}"] = mean_std(diffs)
            summary[fmt][variant] = entry
    return summary


def _pm(value: tuple[float, float], scale: float = 100.0, digits: int = 1) -> str:
    mean, std = value
    if mean != mean:
        return "-"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def markdown_tables(summary: dict, plan: Plan) -> str:
    """One table per layout: final R1 / mAP / mINP per setting, ARI and correspondence."""
    lines: list[str] = []
    n = len(plan.seeds)
    for fmt, variants in summary.items():
        settings = SETTINGS[fmt]
        head = ["variant"]
        for _key, title in settings:
            head += [f"{title} R1", "mAP", "mINP"]
        head += ["ARI vis", "ARI IR", "corr. acc.", "unified ARI", "xmod", "last-quarter mAP gain"]
        lines.append(f"**{fmt.upper()} layout** (mean ± std over {n} seeds, %, last round)\n")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for variant, entry in variants.items():
            cells = [LABELS[variant]]
            for key, _title in settings:
                cells += [_pm(entry[f"{key}/{m}"]) for m in MEASURES]
            cells += [_pm(entry[m], 1.0, 3) for m in ("ari_visible", "ari_infrared")]
            cells.append(_pm(entry["correspondence_accuracy"]))
            cells.append(_pm(entry["unified_ari"], 1.0, 3))
            cells.append(_pm(entry["oracle_match_accuracy"]))
            cells.append(_pm(entry["last_quarter_gain"]))
            lines.append("| " + " | ".join(cells) + " |")
        primary = settings[0][0]
        lines.append("")
        lines.append(
            f"Paired difference to MMM on {settings[0][1]} mAP (variant - MMM, per seed, "
            "mean ± std): "
            + "; ".join(
                f"{LABELS[v]} {_pm(e[f'diff/{primary}/mAP'])}"
                for v, e in variants.items()
                if f"diff/{primary}/mAP" in e
            )
        )
        lines.append("")
    return "\n".join(lines)


def calibration_table(
    fmt: str, by_seed: dict[int, dict[str, list[dict[str, Any]]]], chance: float
) -> str:
    """Per seed: the calibration measures re-read from the ladder's own runs (primary-setting
    mAP %): baseline, supervised, ratio = (baseline - chance) / (supervised - chance), the
    supervised run's last-quarter gain, and MMM - baseline (paired). Rows missing a variant
    show "-"."""
    key = f"{SETTINGS[fmt][0][0]}/mAP"
    title = SETTINGS[fmt][0][1]

    def final(rows: list[dict[str, Any]] | None) -> float:
        value = rows[-1].get(key) if rows else None
        return float("nan") if value is None else 100 * float(value)

    def cell(value: float, sign: bool = False, digits: int = 1) -> str:
        return "-" if value != value else f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"

    lines = [
        f"**{title}: the calibration re-measured by the ladder** (mAP %, last round; chance "
        f"{100 * chance:.1f} = random features on the same protocol)\n",
        "| seed | baseline | supervised | ratio | supervised gain, last quarter | MMM - baseline |",
        "|---|---|---|---|---|---|",
    ]
    columns: list[list[float]] = [[], [], [], [], []]
    for seed in sorted(by_seed):
        runs = by_seed[seed]
        baseline, supervised = final(runs.get("baseline")), final(runs.get("supervised"))
        ratio = (baseline - 100 * chance) / (supervised - 100 * chance)
        gain = 100 * last_quarter_gain(fmt, runs["supervised"]) if "supervised" in runs else np.nan
        mmm = final(runs.get("mmm")) - baseline
        values = [baseline, supervised, ratio, gain, mmm]
        for column, value in zip(columns, values, strict=True):
            column.append(value)
        lines.append(
            f"| {seed} | {cell(baseline)} | {cell(supervised)} | {cell(ratio, digits=2)} | "
            f"{cell(gain, True)} | {cell(mmm, True)} |"
        )
    means = [mean_std(column) for column in columns]
    lines.append(
        f"| mean ± std | {_pm(means[0], 1)} | {_pm(means[1], 1)} | {_pm(means[2], 1, 2)} | "
        f"{_pm(means[3], 1)} | {_pm(means[4], 1)} |"
    )
    return "\n".join(lines) + "\n"


def plot_curves(results: dict, out: Path) -> list[Path]:
    """Per layout: primary mAP, ARI (IR) and correspondence accuracy per round, by variant."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    panels = [("mAP", "mAP (primary setting)"), ("ari_infrared", "ARI, infrared"),
              ("correspondence_accuracy", "correspondence accuracy"),
              ("oracle_match_accuracy", "xmod (true-id centroid matching)")]  # fmt: skip
    for fmt, by_seed in results.items():
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
        variants = next(iter(by_seed.values()))
        for index, variant in enumerate(variants):
            colour = f"C{VARIANTS.index(variant) if variant in VARIANTS else index}"
            for ax, (key, title) in zip(axes, panels, strict=True):
                array = curves(by_seed, variant, key)
                if np.all(np.isnan(array)):
                    continue
                with warnings.catch_warnings():  # rounds with no value (e.g. stage 1)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.nanmean(array, axis=0)
                    low, high = np.nanmin(array, 0), np.nanmax(array, 0)
                x = np.arange(len(mean))
                ax.plot(x, mean, marker="o", ms=3, color=colour, label=LABELS[variant])
                if array.shape[0] > 1:
                    ax.fill_between(x, low, high, color=colour, alpha=0.15)
                ax.set_title(title)
                ax.set_xlabel("round")
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axes[0].legend(fontsize=7)
        fig.suptitle(f"synthetic bench, {fmt.upper()} layout (mean over seeds, band = min-max)")
        fig.tight_layout()
        path = out / f"accuracy-{fmt}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# ------------------------------------------------------------------------------ driver


def ensure_pretrained(plan: Plan, out: Path) -> str:
    """The weights file to start from (trains it once with `mmm pretrain` when "auto").

    "auto" is the calibrated stand-in pretraining (docs/benchmark.md): the visible images of
    200 ids of the bench world at seed 1000 (no person of the bench data), every image
    grayscale, the bench network (width 16) at the bench input size (64x32), 600 steps.
    """
    if plan.pretrained != "auto":
        return plan.pretrained
    weights = out / "pretrain" / "resnet18-w16-bench-gray.pt"
    if not weights.exists():
        from mmm_cli import main as cli

        argv = ["pretrain", "--out", str(weights), "--preset", "bench", "--ids", "200",
                "--world-seed", "1000", "--model-width", "16", "--height", "64", "--width",
                "32", "--iters", "600", "--gray-prob", "1.0", "--no-progress",
                "--device", "cpu" if plan.device == "auto" else plan.device]  # fmt: skip
        if cli.main(argv) != 0:
            raise RuntimeError("mmm pretrain failed")
    return str(weights)


def _unit(
    fmt: str, seed: int, plan: Plan, data_root: Path, out: Path, extra: list[str], threads: int
) -> dict[str, list[dict[str, Any]]]:
    """One (layout, seed) unit in a worker process with `threads` torch threads."""
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(threads)
    return run_layout_seed(fmt, seed, plan, data_root, out, extra)


def resolve_jobs(jobs: int, units: int, device: str) -> int:
    """Worker processes to use: `jobs` when > 0; else one per CPU core up to `units`, or 1
    when `device` resolves to a GPU (one process keeps the GPU busy)."""
    if jobs > 0:
        return jobs
    from mmm_core.engine.features import resolve_device

    if resolve_device(device).type != "cpu":
        return 1
    return max(1, min(units, os.cpu_count() or 1))


def compute_seconds(results: dict, plan: Plan) -> float:
    """The rounds' own time (the ``time_*`` columns), summed over every round trained once:
    a branched variant's first R1 rows are the shared trunk's, counted once per unit."""
    total = 0.0
    for by_seed in results.values():
        for variants in by_seed.values():
            trunk_counted = False
            for variant, rows in variants.items():
                shared = variant not in SCRATCH_VARIANTS
                start = plan.stage1_rounds if shared and trunk_counted else 0
                trunk_counted = trunk_counted or shared
                for row in rows[start:]:
                    total += sum(v for k, v in row.items() if k.startswith("time_") and v)
    return total


def run(plan: Plan, out: Path, jobs: int = 1, report: bool = False) -> dict[str, Any]:
    """Train every (layout, seed) unit of `plan`, `jobs` of them at a time, then summarise.

    `report`: train nothing; summarise the finished runs under `out` (`MissingRunsError` when
    one of the plan's runs is missing or was trained with another config).

    ``jobs <= 0`` picks: one process per CPU core up to the number of units, or 1 on a GPU.

    With ``jobs > 1`` each unit runs in its own process with ``cpu_count // jobs`` torch
    threads: on a small CPU, processes with one thread each use the cores better than one
    process with many threads (small convolutions do not scale across threads).
    """
    for fmt in plan.formats:  # a bad --set ends here, before any pretraining or training
        load_config([plan.base_config(fmt)], plan.overrides)
    out = out.resolve()  # the runs' config.yaml files hold absolute paths
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if report and plan.pretrained == "auto":
        pretrained = str(out / "pretrain" / "resnet18-w16-bench-gray.pt")
        if not Path(pretrained).is_file():
            raise MissingRunsError(f"{pretrained}: no stand-in weights (run without --report)")
    else:
        pretrained = ensure_pretrained(plan, out)
    extra = [f"model.pretrained={pretrained}", *plan.overrides]
    from mmm_core.engine.build import dataset_root

    units = []
    for fmt in plan.formats:
        ids = plan.ids.get(fmt, load_config([plan.base_config(fmt)]).data.synthetic.ids)
        data_root = out / "data" / f"bench-{fmt}-{ids}ids"
        if not report:  # generated here, once, before workers could race to write it
            dataset_root(variant_config(fmt, "baseline", plan.seeds[0], plan, data_root, extra))
        for seed in plan.seeds:
            units.append((fmt, seed, data_root, out / "runs" / fmt / f"seed{seed}"))
    jobs = resolve_jobs(jobs, len(units), plan.device)
    results: dict[str, dict[int, dict[str, list[dict[str, Any]]]]] = {
        fmt: {} for fmt in plan.formats
    }

    def finished(fmt: str, seed: int, rows: dict[str, list[dict[str, Any]]]) -> None:
        results[fmt][seed] = rows
        print(f"[{time.perf_counter() - started:6.0f} s] {fmt} seed {seed} done", flush=True)

    if jobs <= 1 or report:
        for fmt, seed, data_root, run_out in units:
            rows = run_layout_seed(fmt, seed, plan, data_root, run_out, extra, report)
            finished(fmt, seed, rows)
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = {
                pool.submit(_unit, fmt, seed, plan, root, run_out, extra, threads): (fmt, seed)
                for fmt, seed, root, run_out in units
            }
            for future, (fmt, seed) in futures.items():
                finished(fmt, seed, future.result())
    results = {fmt: dict(sorted(by_seed.items())) for fmt, by_seed in results.items()}
    summary = summarise(results)
    tables = markdown_tables(summary, plan)
    tables += "\n" + "\n".join(diagnostics_table(f, by_seed) for f, by_seed in results.items())
    from mmm_core.engine.phases import chance_summary

    for fmt, by_seed in results.items():
        ids = plan.ids.get(fmt, load_config([plan.base_config(fmt)]).data.synthetic.ids)
        root = out / "data" / f"bench-{fmt}-{ids}ids"
        cfg = variant_config(fmt, "baseline", plan.seeds[0], plan, root, extra)
        chance = chance_summary(cfg, dataset_root(cfg))["mAP"]
        tables += "\n" + calibration_table(fmt, by_seed, chance)
    plots = plot_curves(results, out)
    compute = compute_seconds(results, plan)
    tables += (
        f"\nThe rounds' own time (`time_*` columns, every round trained once counted once): "
        f"{compute / 3600:.2f} h in all, {compute / 3600 / max(1, jobs):.2f} h per worker "
        f"with {jobs} worker(s).\n"
    )
    summary_file = {
        "plan": {**asdict(plan), "pretrained": pretrained},
        "seconds": round(time.perf_counter() - started, 1),
        "compute_seconds": round(compute, 1),
        "summary": summary,
        "rows": {fmt: {str(s): r for s, r in by_seed.items()} for fmt, by_seed in results.items()},
        "plots": [str(p) for p in plots],
    }
    (out / "accuracy.json").write_text(json.dumps(summary_file, indent=1, default=str) + "\n")
    (out / "accuracy.md").write_text(tables + "\n")
    print(tables)
    print(f"total {summary_file['seconds']:.0f} s; results in {out}")
    return summary_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (minutes)")
    parser.add_argument("--formats", nargs="+", choices=tuple(BASE_CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS)
    parser.add_argument("--rounds", nargs=2, type=int, metavar=("R1", "R2"))
    parser.add_argument("--iters", type=int, help="training iterations per round")
    parser.add_argument("--pretrained", help="auto (default), none, or a weights file")
    parser.add_argument("--device", help="auto (default), cpu, cuda")
    add_config_arguments(
        parser,
        config=False,
        set_help="a config setting for every run, e.g. train.amp=none (after the variant's "
        "own; repeatable)",
    )
    parser.add_argument(
        "--base",
        nargs="+",
        metavar="LAYOUT=YAML",
        help="bench config per layout (default configs/synthetic-bench{,-regdb}.yaml)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="(layout, seed) units trained in parallel processes; 0 (default): one per CPU "
        "core up to the number of units on a CPU, 1 on a GPU",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="train nothing: summarise the plan's finished runs under --out (tables, plots)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "accuracy")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    plan = QUICK if args.quick else Plan()
    changes: dict[str, Any] = {}
    if args.formats:
        changes["formats"] = tuple(args.formats)
    if args.seeds:
        changes["seeds"] = tuple(args.seeds)
    if args.variants:
        changes["variants"] = tuple(args.variants)
    if args.rounds:
        changes["stage1_rounds"], changes["stage2_rounds"] = args.rounds
    if args.iters:
        changes["iters_per_round"] = args.iters
    if args.pretrained:
        changes["pretrained"] = args.pretrained
    if args.device:
        changes["device"] = args.device
    if args.overrides:  # checked by load_config at the start of `run`
        changes["overrides"] = tuple(args.overrides)
    if args.base:
        pairs = [item.split("=", 1) for item in args.base]
        bases = {pair[0]: pair[1] for pair in pairs if len(pair) == 2}
        if (
            len(bases) != len(args.base)
            or set(bases) - set(BASE_CONFIGS)
            or not all(Path(v).is_file() for v in bases.values())
        ):
            parser.error(f"--base takes sysu=FILE / regdb=FILE of existing files, got {args.base}")
        changes["base_configs"] = bases
    plan = Plan(**{**asdict(plan), **changes})
    if args.quick and args.out == parser.get_default("out"):
        args.out = args.out.with_name("accuracy-quick")
    try:
        run(plan, args.out, jobs=args.jobs, report=args.report)
    except (MissingRunsError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
