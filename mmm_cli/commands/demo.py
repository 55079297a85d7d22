"""``mmm demo``: a small synthetic dataset, then the real pipeline on it, results printed.

The pipeline runs through ``kfp.local.SubprocessRunner`` (``mmm run``) with the tiny CPU
preset; ``--in-process`` runs the same rounds with ``mmm train`` instead.

The result is printed beside the same seed's stage-1 baseline and supervised upper bound
(``train.supervision: oracle``) on the same data and schedule, and the chance level, read from
``configs/demo-reference.json``. Those figures are computed once per config by
``mmm demo --make-reference`` (about twice a demo's time) and kept by the config's
fingerprint: a demo whose method settings differ says there is no reference for them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["HELP", "configure_parser", "main"]

HELP = "set up a small synthetic dataset and run the method on it"
REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "configs" / "demo-reference.json"


def make_reference(cfg, out: Path) -> dict:
    """Train the baseline and the supervised upper bound of `cfg` in-process; their final
    R1 / mAP and the chance mAP of the protocol (random features)."""
    from mmm_core.config import fingerprint, load_config
    from mmm_core.engine.build import dataset_root
    from mmm_core.engine.loop import run_training
    from mmm_core.engine.phases import chance_summary

    ablations = REPO / "configs" / "ablation"
    total = cfg.train.stage1_rounds + cfg.train.stage2_rounds
    result: dict = {"fingerprint": fingerprint(cfg), "seed": cfg.seed, "rounds": total}
    for name in ("baseline", "supervised"):
        # The ablation file's departures from the defaults; the demo's own settings stay.
        changes = _changed(load_config(ablations / f"{name}.yaml"))
        if name == "baseline":
            changes.update({"train.stage1_rounds": total, "train.stage2_rounds": 0})
        run_cfg = cfg.replace(**changes)
        print(f"reference: training the {name} ({total} rounds) ...")
        final = run_training(run_cfg, out / name, overwrite=True)[-1]
        result[name] = {"rank1": final["rank1"], "mAP": final["mAP"]}
    chance = chance_summary(cfg, dataset_root(cfg))
    result["chance"] = {k: chance[k] for k in ("rank1", "mAP")}
    return result


def _changed(variant) -> dict:
    """The keys an ablation file sets away from the defaults, as ``--set`` strings."""
    from mmm_core.config import Config, config_to_dict, flatten

    defaults = flatten(config_to_dict(Config()))
    return {k: v for k, v in flatten(config_to_dict(variant)).items() if defaults[k] != v}


def read_references() -> dict:
    import json

    return json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from mmm_core.arguments import add_config_arguments

    parser.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    parser.add_argument(
        "--config",
        default=str(REPO / "configs" / "synthetic-tiny.yaml"),
        help="config (default: configs/synthetic-tiny.yaml)",
    )
    add_config_arguments(parser, config=False)
    parser.add_argument(
        "--in-process", action="store_true", help="run `mmm train` instead of the pipeline"
    )
    parser.add_argument(
        "--make-reference",
        action="store_true",
        help="compute the baseline / supervised / chance figures printed beside the demo's "
        "result for this config and store them in configs/demo-reference.json",
    )


def main(args: argparse.Namespace) -> int:
    from mmm_core.config import load_config
    from mmm_core.data.inspect import dataset_statistics
    from mmm_core.engine.build import dataset_root

    out = Path(args.out)
    root = out / "data" / "sysu"
    cfg = load_config(
        args.config, [f"data.root={root}", "data.synthetic.enabled=true", *args.overrides]
    )
    started = time.perf_counter()
    if not root.exists():
        print(f"generating a synthetic SYSU-MM01-layout dataset in {root} ...")
    dataset_root(cfg)
    stats = dataset_statistics(cfg.data.format, root)
    print(
        f"dataset: {stats['train_ids']} training ids ({stats['train_visible_images']} RGB / "
        f"{stats['train_infrared_images']} IR images), {stats['test_ids']} test ids, "
        f"{stats['test_query_images']} queries"
    )
    rounds = cfg.train.stage1_rounds + cfg.train.stage2_rounds
    if args.make_reference:
        import json

        reference = make_reference(cfg, out / "reference")
        references = read_references()
        references[reference["fingerprint"]] = reference
        REFERENCE.write_text(json.dumps(references, indent=2, sort_keys=True) + "\n")
        print(f"wrote {REFERENCE} ({reference['fingerprint']})")
        return 0
    if args.in_process:
        from mmm_core.engine.loop import run_training

        print(f"training {rounds} rounds in one process ...")
        rows = run_training(cfg, out, overwrite=True, echo=print)
    else:
        from pipelines.local import run_local

        print(f"running the KFP pipeline locally ({rounds} rounds x 5 steps) ...")
        try:
            rows = run_local(cfg, out)
        except Exception as err:  # the pipeline's error names the failing task
            print(f"error: the pipeline failed: {err}\nsee {out / 'pipeline.log'}")
            return 1
    final = rows[-1]
    print(f"\nfinished in {time.perf_counter() - started:.0f} s; run folder: {out}")
    if not args.in_process:  # the in-process run draws its own
        from mmm_core.evaluation.visualize import save_round_curves

        save_round_curves({"demo": rows}, out / "rounds.png")
    print(f"per-round curves: {out / 'rounds.png'}")
    if final.get("rank1") is not None:
        print(
            f"final model (last round, SYSU-MM01 protocol all-search single-shot, 10 trials):\n"
            f"  R1 {100 * final['rank1']:.2f}  R10 {100 * final['rank10']:.2f}  "
            f"mAP {100 * final['mAP']:.2f}  mINP {100 * final['mINP']:.2f}"
        )
        print(reference_table(cfg, final))
    return 0


def reference_table(cfg, final: dict) -> str:
    """The demo's R1 / mAP beside the stored baseline, supervised and chance figures."""
    from mmm_core.config import fingerprint

    reference = read_references().get(fingerprint(cfg))
    if reference is None:
        return (
            "no reference figures for these settings (configs/demo-reference.json); "
            "`mmm demo --make-reference` with the same options computes them"
        )
    rows = [
        ("this run (MMM)", final),
        (f"baseline, stage 1 only (seed {reference['seed']})", reference["baseline"]),
        (f"supervised upper bound (seed {reference['seed']})", reference["supervised"]),
        ("chance (random features)", reference["chance"]),
    ]
    lines = [f"{'':<38} {'R1':>6} {'mAP':>6}"]
    for label, values in rows:
        lines.append(f"{label:<38} {100 * values['rank1']:6.2f} {100 * values['mAP']:6.2f}")
    return "\n".join(lines)
