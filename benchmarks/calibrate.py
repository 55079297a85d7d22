"""Calibrate the synthetic bench world (SPEC section 8) from the supervised and baseline runs.

For one candidate world (the bench preset with ``--world key=value`` changes), one layout and
one training budget, it measures, side by side on the same data:

* ``chance``: the protocol's mAP of random features (i.i.d. Gaussian per image, normalised;
  mean of ``--chance-draws`` draws);
* ``supervised``: the upper bound, ``train.supervision: oracle`` with MMM's losses and schedule
  (configs/ablation/mmm.yaml, R1 stage-1 + R2 stage-2 rounds);
* ``baseline``: the stage-1 cluster-contrast baseline (configs/ablation/baseline.yaml, the
  same number of rounds, all stage 1, no CMC);

both from the same initial weights (``mmm pretrain`` on the visible images of a disjoint
world seed, as the ladder starts; ``--pretrain-iters 0``: random). Printed and written to
``--out`` (``calibration.json`` and the run folders): each run's test mAP per round, and

* ``ratio = (baseline - chance) / (supervised - chance)`` on the last round (the target band
  is [0.5, 0.85]);
* ``converged``: the supervised mAP gained less than ``--flat`` points over the last quarter
  of its rounds (its curve is flat there).

Calibration reads only these two runs, never MMM's own numbers. Usage::

    PYTHONPATH=. .venv/bin/python -m benchmarks.calibrate --layout sysu --ids 100 \\
        --model-width 16 --size 64x32 --rounds 6+6 --iters 60
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BASE = {
    "sysu": ROOT / "configs" / "synthetic-bench.yaml",
    "regdb": ROOT / "configs" / "synthetic-bench-regdb.yaml",
}
ABLATIONS = ROOT / "configs" / "ablation"


def world_preset(changes: dict[str, Any]):
    from mmm_core.data.synthetic import PRESETS

    return dataclasses.replace(PRESETS["bench"], **changes)


def _key(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def make_data(layout: str, ids: int, world: dict[str, Any], cache: Path) -> Path:
    from mmm_core.data.synthetic import SYNTH_VERSION, generate_regdb, generate_sysu

    # world version 1 trees keep their old names; later versions are part of the name
    version = [] if SYNTH_VERSION == 1 else [SYNTH_VERSION]
    root = cache / f"{layout}-{ids}ids-{_key([world, *version] if version else world)}"
    if not (root / "synthetic.json").exists():
        generate = generate_sysu if layout == "sysu" else generate_regdb
        generate(root, ids, 0, world_preset(world), overwrite=root.exists())
        (root / "world.json").write_text(json.dumps(world, sort_keys=True) + "\n")
    return root


def make_weights(args: argparse.Namespace, world: dict[str, Any], cache: Path) -> str:
    """`mmm pretrain`'s stand-in weights for this world, width and input size (cached)."""
    if args.pretrained:
        return args.pretrained
    if args.pretrain_iters == 0:
        return "none"
    import torch

    from mmm_core.data import sysu
    from mmm_core.data.synthetic import SYNTH_VERSION, generate_sysu
    from mmm_core.engine.pretrain import pretrain_classifier

    height, width = args.size
    spec = [world, args.model_width, height, width, args.pretrain_iters, args.pretrain_ids]
    if args.pretrain_gray != 0.3:  # files made before the option keep their names
        spec.append(args.pretrain_gray)
    if SYNTH_VERSION != 1:  # and those of world version 1 too
        spec.append(SYNTH_VERSION)
    out = cache / f"pretrain-{_key(spec)}.pt"
    if out.exists():
        return str(out)
    source = cache / f"pretrain-data-{args.pretrain_ids}ids-{_key([world, SYNTH_VERSION])}"
    if not (source / "synthetic.json").exists():
        generate_sysu(source, args.pretrain_ids, 1000, world_preset(world), overwrite=True)
    visible = sysu.train_manifest(source).modality("visible")
    state, result = pretrain_classifier(
        visible.full_paths(),
        visible.pids,
        arch="resnet18",
        model_width=args.model_width,
        height=height,
        width=width,
        iterations=args.pretrain_iters,
        seed=0,
        gray_prob=args.pretrain_gray,
    )
    torch.save(state, out)
    Path(f"{out}.json").write_text(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    return str(out)


def _train(job: tuple[str, list[str], list[str], str]) -> list[dict[str, Any]]:
    import torch

    from mmm_core.config import load_config
    from mmm_core.engine.loop import run_training

    torch.set_num_threads(1)
    name, files, overrides, out = job
    cfg = load_config(files, overrides)
    started = time.perf_counter()
    rows = run_training(cfg, out, overwrite=True)
    print(f"  {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=("sysu", "regdb"), default="sysu")
    parser.add_argument("--ids", type=int, default=100, help="identities generated [100]")
    parser.add_argument(
        "--world", action="append", default=[], metavar="KEY=VALUE",
        help="a bench-preset field to change (YAML value), e.g. ir_colour_correlation=0.8",
    )  # fmt: skip
    parser.add_argument("--model-width", type=int, default=16)
    parser.add_argument("--size", default="64x32", help="input HxW [64x32]")
    parser.add_argument("--rounds", default="6+6", help="R1+R2 rounds [6+6]")
    parser.add_argument("--iters", type=int, default=60, help="iterations per round [60]")
    parser.add_argument("--pretrain-iters", type=int, default=600)
    parser.add_argument("--pretrain-ids", type=int, default=200)
    parser.add_argument(
        "--pretrain-gray", type=float, default=1.0,
        help="the stand-in pretraining's grayscale probability [1.0, as calibrated]",
    )  # fmt: skip
    parser.add_argument(
        "--pretrained",
        default="",
        help="initial weights file instead of pretraining (e.g. one made for a world whose "
        "visible images are the same: infrared-only changes)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--runs", nargs="+", choices=("supervised", "baseline"),
        default=["supervised", "baseline"],
        help="which runs to train (one alone gives no ratio: a quicker probe) [both]",
    )  # fmt: skip
    parser.add_argument("--chance-draws", type=int, default=5)
    parser.add_argument("--flat", type=float, default=1.5, help="points; see the docstring")
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        help="extra config override for both runs")  # fmt: skip
    parser.add_argument("--cache", default=str(ROOT / "runs" / "calibration" / "cache"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    args.size = (height, width)
    world = {}
    for item in args.world:
        key, _, value = item.partition("=")
        world[key] = yaml.safe_load(value)
    world_preset(world)  # validate
    r1, r2 = (int(v) for v in args.rounds.split("+"))
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    label = _key([args.layout, args.ids, world, args.model_width, args.size, args.rounds,
                  args.iters, args.pretrain_iters, args.pretrained, args.seed,
                  args.overrides, args.pretrain_gray, sorted(args.runs)])  # fmt: skip
    out = Path(args.out or ROOT / "runs" / "calibration" / f"{args.layout}-{label}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    root = make_data(args.layout, args.ids, world, cache)
    weights = make_weights(args, world, cache)
    common = [
        f"data.root={root}",
        "data.synthetic.enabled=false",
        f"data.height={height}",
        f"data.width={width}",
        f"model.width={args.model_width}",
        f"model.pretrained={weights}",
        f"train.iters_per_round={args.iters}",
        # the bench's schedule: the rate drops for the last third of the run's rounds, counted
        # over the whole run, so the one-stage baseline and the two-stage supervised run train
        # each round at the same rate (probes 1-23 used step_size=max(R1, R2) + 1 per stage:
        # no drop in a two-stage run, a drop after round 7 in the 12-round baseline)
        f"train.step_size={max(1, round(2 * (r1 + r2) / 3))}",
        "train.schedule_per=run",
        f"seed={args.seed}",
        "eval.sysu_modes=[all]",
        *args.overrides,
    ]
    base = BASE[args.layout]
    jobs = [
        (
            "supervised",
            [base, ABLATIONS / "mmm.yaml"],
            [*common, "train.supervision=oracle", f"train.stage1_rounds={r1}",
             f"train.stage2_rounds={r2}"],
            str(out / "supervised"),
        ),
        (
            "baseline",
            [base, ABLATIONS / "baseline.yaml"],
            [*common, f"train.stage1_rounds={r1 + r2}", "train.stage2_rounds=0"],
            str(out / "baseline"),
        ),
    ]  # fmt: skip
    from mmm_core.config import load_config
    from mmm_core.engine.phases import chance_summary

    chance = chance_summary(load_config(base, common), root, args.chance_draws)["mAP"]
    jobs = [job for job in jobs if job[0] in args.runs]
    with ProcessPoolExecutor(max_workers=min(2, len(jobs), os.cpu_count() or 1)) as pool:
        results = dict(zip([job[0] for job in jobs], pool.map(_train, jobs), strict=True))
    curves = {
        name: [100 * r["mAP"] for r in rows if r.get("mAP") is not None]
        for name, rows in results.items()
    }
    chance_pct = 100 * chance
    sup = curves["supervised"][-1] if "supervised" in curves else None
    bas = curves["baseline"][-1] if "baseline" in curves else None
    gain = None
    if sup is not None:
        quarter = max(1, len(curves["supervised"]) // 4)
        gain = curves["supervised"][-1] - curves["supervised"][-1 - quarter]
    ratio = None
    if sup is not None and bas is not None and sup > chance_pct:
        ratio = (bas - chance_pct) / (sup - chance_pct)
    summary = {
        "layout": args.layout,
        "ids": args.ids,
        "world": world,
        "model_width": args.model_width,
        "size": f"{height}x{width}",
        "rounds": args.rounds,
        "iters_per_round": args.iters,
        "pretrain_iters": args.pretrain_iters,
        "pretrain_gray": args.pretrain_gray,
        "pretrained": weights,
        "seed": args.seed,
        "overrides": args.overrides,
        "chance_mAP": chance_pct,
        "supervised_mAP": sup,
        "baseline_mAP": bas,
        "ratio": ratio,
        "supervised_last_quarter_gain": gain,
        "converged": None if gain is None else gain < args.flat,
        "curves": curves,
        "ari_last": {
            name: [rows[-1]["ari_visible"], rows[-1]["ari_infrared"]]
            for name, rows in results.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "curves"}, indent=None))
    for name, curve in curves.items():
        print(f"  {name:>10}: " + " ".join(f"{v:5.1f}" for v in curve))
    print(f"wrote {out / 'calibration.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
