"""``mmm evaluate``: run a dataset's protocol (`mmm_core.evaluation.protocols`) on features or a
checkpoint.

Features file format (``--features FILE.npz``, written by `protocols.save_feature_file`):
- ``paths``: (n,) str, image paths, absolute or relative to ``--root``;
- ``features``: (n, d) float32, L2-normalised (``--normalize`` renormalises instead of
  failing), one row per path, covering every test image of the protocol.

With ``--checkpoint`` (a training checkpoint of `mmm_core.engine.checkpoint`) the model is
rebuilt from the checkpoint's arch and the model section of ``--config`` (the run's resolved
config; defaults otherwise, ``--set`` overrides), and features are computed per modality with
``mmm_core.engine.features.extract_features`` at the config's ``data.height`` x
``data.width``, flip-averaged unless ``--no-flip`` (``eval.flip`` otherwise). Torch and the
engine are imported only then.

Outputs under ``--out DIR``: ``metrics.json`` (`ProtocolResult.to_json`), ``table.txt``,
``cmc.png`` and, unless ``--ranked-list 0``, ``ranked_list.png`` / ``ranked_list.html`` for
the first setting's first trial. The table is printed either way.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mmm_cli.errors import UsageError

if TYPE_CHECKING:
    from mmm_core.evaluation import protocols

__all__ = ["HELP", "configure_parser", "main"]

HELP = "evaluate saved features or a checkpoint"

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``mmm evaluate`` options to `parser`."""
    from mmm_core.arguments import add_config_arguments

    parser.description = "Evaluate features or a checkpoint on the SYSU-MM01 or RegDB protocol."
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--features",
        type=Path,
        help="npz with 'paths' (str, relative to --root or absolute) and 'features' "
        "(float32, n x d, L2-normalised) of the test images",
    )
    source.add_argument(
        "--checkpoint",
        type=Path,
        help="training checkpoint; test features are extracted with the model on the fly",
    )
    parser.add_argument("--format", required=True, choices=("sysu", "regdb"), help="dataset")
    parser.add_argument("--root", required=True, type=Path, help="dataset root folder")
    parser.add_argument(
        "--trial", type=int, default=1, help="RegDB trial 1..10 (each trial is its own model)"
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("all", "indoor"),
        default=["all", "indoor"],
        help="SYSU-MM01 search modes",
    )
    parser.add_argument(
        "--shots",
        nargs="+",
        type=int,
        choices=(1, 10),
        default=[1],
        help="SYSU-MM01 gallery shots: 1 (single-shot), 10 (multi-shot)",
    )
    parser.add_argument("--trials", type=int, default=10, help="SYSU-MM01 gallery trials (0..N-1)")
    parser.add_argument("--max-rank", type=int, default=20, help="CMC length")
    parser.add_argument("--out", type=Path, help="folder for metrics.json, table.txt, plots")
    parser.add_argument(
        "--ranked-list",
        type=int,
        default=8,
        metavar="N",
        help="queries drawn in ranked_list.png/html under --out (0: none)",
    )
    parser.add_argument(
        "--normalize",
        action="store_true",
        help="L2-normalise the features of --features instead of rejecting unnormalised ones",
    )
    add_config_arguments(
        parser,
        config_help="for --checkpoint: the run's YAML config (model and input size); repeatable",
        set_help="for --checkpoint: config override, e.g. data.height=128",
    )
    parser.add_argument(
        "--device", default="auto", help="for --checkpoint: auto (CUDA if present), cpu, cuda"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="for --checkpoint")
    parser.add_argument(
        "--no-flip",
        dest="flip",
        action="store_false",
        default=None,
        help="for --checkpoint: no horizontal-flip averaging (default: the config's eval.flip)",
    )


def _features_extractor(args: argparse.Namespace) -> protocols.Extractor:
    import numpy as np

    from mmm_core.evaluation import protocols

    paths, features = protocols.load_feature_file(args.features)
    features = features.astype(np.float32, copy=False)
    if args.normalize:
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        features = features / np.maximum(norms, 1e-12)
    log.info("loaded %d features of dim %d from %s", *features.shape, args.features)
    return protocols.lookup_extractor(paths, features, root=args.root)


def _checkpoint_extractor(args: argparse.Namespace) -> protocols.Extractor:
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"{args.checkpoint}: checkpoint not found")
    try:
        from mmm_core.config import ConfigError, ModelConfig, load_config
        from mmm_core.engine.build import make_extractor
        from mmm_core.engine.checkpoint import CheckpointError, load_checkpoint
        from mmm_core.engine.features import resolve_device
        from mmm_core.models import build_model
    except ImportError as error:
        raise RuntimeError(
            f"evaluating a checkpoint needs the model and engine packages ({error}); "
            "extract features into an npz ('paths', 'features') and pass --features instead"
        ) from error

    cfg = load_config(args.config or None, args.overrides)
    state = load_checkpoint(args.checkpoint)
    if state.input_size is not None:  # checkpoints written since the input size is stored
        size = (cfg.data.height, cfg.data.width)
        if (args.config or args.overrides) and size != tuple(state.input_size):
            raise ConfigError(
                "data.height/width",
                f"is {size[0]}x{size[1]}, but {args.checkpoint} was trained at "
                f"{state.input_size[0]}x{state.input_size[1]}; drop the setting to evaluate "
                "at the checkpoint's size",
            )
        height, width = state.input_size
        cfg = cfg.replace(**{"data.height": height, "data.width": width})
    defaults = ModelConfig()  # a value that differs from these was given
    for key, wanted, default, stored in (
        ("model.arch", cfg.model.arch, defaults.arch, state.arch),
        ("model.width", cfg.model.width, defaults.width, state.width),
    ):
        if wanted != default and stored is not None and wanted != stored:
            raise ConfigError(
                key,
                f"is {wanted}, but {args.checkpoint} holds a {key.split('.')[1]} {stored} model; "
                "drop the setting to evaluate the checkpoint's network",
            )
    arch = state.arch or cfg.model.arch
    model = build_model(
        arch,
        pretrained="none",
        non_local=cfg.model.non_local,
        gem_p=cfg.model.gem_p,
        last_stride=cfg.model.last_stride,
        width=state.width,
    )
    try:
        model.load_state_dict(state.model)
    except RuntimeError as error:
        raise CheckpointError(
            f"{args.checkpoint}: weights do not fit a {arch} model of width {state.width} "
            f"with non_local={cfg.model.non_local}; pass the run's config with --config ({error})"
        ) from None
    device = resolve_device(args.device)
    model.to(device)
    flip = cfg.eval.flip if args.flip is None else args.flip
    log.info(
        "evaluating %s (%s) on %s, input %dx%d",
        args.checkpoint,
        arch,
        device,
        cfg.data.height,
        cfg.data.width,
    )

    from mmm_core.evaluation import protocols

    settings = cfg.replace(**{"train.batch_size_eval": args.batch_size, "eval.flip": flip})
    extract = make_extractor(settings, model, device)
    return protocols.cached_extractor(extract)


def _evaluate(args: argparse.Namespace, extract: protocols.Extractor) -> protocols.ProtocolResult:
    from mmm_core.evaluation import protocols

    if args.format == "sysu":
        return protocols.evaluate_sysu(
            extract,
            args.root,
            modes=tuple(dict.fromkeys(args.modes)),
            shots=tuple(dict.fromkeys(args.shots)),
            trials=args.trials,
            max_rank=args.max_rank,
        )
    return protocols.evaluate_regdb(extract, args.root, args.trial, max_rank=args.max_rank)


def _ranked_lists(args: argparse.Namespace, extract: protocols.Extractor) -> protocols.RankedLists:
    from mmm_core.evaluation import protocols

    if args.format == "sysu":
        return protocols.sysu_ranked_lists(
            extract,
            args.root,
            mode=args.modes[0],
            trial=0,
            shots=args.shots[0],
            num_queries=args.ranked_list,
        )
    return protocols.regdb_ranked_lists(
        extract, args.root, args.trial, num_queries=args.ranked_list
    )


def _write_outputs(
    args: argparse.Namespace, result: protocols.ProtocolResult, extract: protocols.Extractor
) -> None:
    from mmm_core.evaluation import visualize

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(result.to_json() + "\n")
    (out / "table.txt").write_text(result.table() + "\n")
    visualize.save_cmc_curve(
        {setting: result.mean_cmc(setting) for setting in result.settings},
        out / "cmc.png",
        title=f"CMC ({args.format})",
    )
    if args.ranked_list > 0:
        ranked = _ranked_lists(args, extract)
        lists = (ranked.query_paths, ranked.gallery_paths, ranked.indices, ranked.correct)
        visualize.save_ranked_grid(*lists, out / "ranked_list.png")
        visualize.save_ranked_html(*lists, out / "ranked_list.html")
    log.info("evaluation written to %s", out)


def main(args: argparse.Namespace) -> int:
    """Run ``mmm evaluate``; errors go to the `mmm` boundary (exit 2 for bad input)."""
    from mmm_core.config import ConfigError
    from mmm_core.data.manifest import DatasetError
    from mmm_core.engine.checkpoint import CheckpointError

    if args.trials < 1 or args.max_rank < 1 or args.ranked_list < 0:
        raise UsageError("--trials and --max-rank must be >= 1, --ranked-list >= 0")
    try:
        extract = (
            _features_extractor(args) if args.features is not None else _checkpoint_extractor(args)
        )
        result = _evaluate(args, extract)
        print(result.table())
        if args.out is not None:
            _write_outputs(args, result, extract)
    except (ConfigError, DatasetError, CheckpointError):
        raise  # already named and classified
    except (ValueError, KeyError) as error:  # features that do not fit the protocol
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise UsageError(f"evaluate: {message}") from None
    return 0
