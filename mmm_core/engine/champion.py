"""The one promotion rule: when a registered model becomes alias ``champion``.

Training (``mmm train``, the pipeline's register step) and retraining (the promote step) follow
it. A model becomes champion when

- there is no champion yet and the run trained the whole method (stage 1, then stage 2, from
  the config's initial weights): a full training run founds the line. A stage-2-only run from
  initial weights (a first retraining with nothing to warm-start from) does not, unless asked
  (``allow_first``, the retraining pipeline's ``promote_without_champion``);
- or it beats the champion on the same protocol: both are evaluated here, in one process, on
  the same mirrored test set with the same gallery draws; the score is `METRIC` (mAP) of the
  dataset's primary setting, averaged over the trials. The new model must score more than the
  champion's plus ``min_improvement`` (a tie keeps the champion). The champion's stored mAP is
  not used: it was measured on the test set of its day, possibly with other settings.

A champion logged with its config (an MLflow Model of this project, `mmm_core.serving`) is
evaluated with its own network settings (``model.*``) and input size; the protocol (data,
trials, evaluation settings) is the run's.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmm_core.config import Config, load_config

__all__ = [
    "CHAMPION",
    "METRIC",
    "Promotion",
    "champion_checkpoint",
    "decide",
    "first_champion_allowed",
    "judge",
    "score",
    "should_promote",
]

log = logging.getLogger(__name__)

CHAMPION = "champion"
METRIC = "mAP"


@dataclass(frozen=True)
class Promotion:
    """A decision of the rule: ``promote``, why, and the two scores (None when not measured)."""

    promote: bool
    reason: str
    new_score: float | None = None
    champion_score: float | None = None
    champion_version: str = ""  # the champion compared with ("" when none)


def should_promote(
    new_score: float, champion_score: float | None, min_improvement: float = 0.0
) -> bool:
    """Whether the new model replaces the champion: no champion, or a strict improvement of
    more than `min_improvement` (scores of the same metric on the same protocol)."""
    if champion_score is None:
        return True
    return new_score > champion_score + min_improvement


def first_champion_allowed(cfg: Config, allow_first: bool = False) -> tuple[bool, str]:
    """Whether a run may become the first champion, and why."""
    if cfg.train.stage1_rounds > 0:
        return True, "no champion yet: a full training run (stage 1 + stage 2) becomes the first"
    if allow_first:
        return True, "no champion yet: a stage-2-only run, promoted as asked"
    return False, (
        "no champion yet, and a stage-2-only run from initial weights does not become the "
        "first one (train the full method, or ask for it: promote_without_champion)"
    )


def score(cfg: Config, checkpoint: str | Path, out_result: str | Path) -> float:
    """`METRIC` of the primary setting for `checkpoint` under `cfg` (writes the full result)."""
    from mmm_core.engine.build import dataset_root, load_network
    from mmm_core.engine.features import resolve_device
    from mmm_core.engine.phases import evaluate_round

    device = resolve_device(cfg.train.device)
    model = load_network(cfg, checkpoint, device)
    return float(evaluate_round(cfg, model, dataset_root(cfg), device, out_result)[METRIC])


def champion_checkpoint(folder: Path) -> Path:
    """The checkpoint file among a downloaded model version's files: an MLflow Model's
    ``data/files/checkpoint.pt``, or the one file beside ``metadata.json`` of a version
    registered before models were MLflow Models."""
    files = sorted(p for p in folder.rglob("*.pt") if p.is_file())
    if not files and not (folder / "MLmodel").exists():
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "metadata.json")
    if len(files) != 1:
        everything = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
        raise ValueError(
            f"expected one checkpoint file (*.pt) in the champion's model files, found "
            f"{len(files)} among {everything}"
        )
    return files[0]


def _champion_config(cfg: Config, files: Path) -> Config:
    """The run's config with the champion's own network and input size, when it has a config."""
    found = sorted(files.rglob("config.yaml"))
    if not found:
        return cfg
    theirs = load_config(found[0])
    keys = ("arch", "width", "non_local", "gem_p", "last_stride")
    overrides: dict[str, Any] = {f"model.{k}": getattr(theirs.model, k) for k in keys}
    overrides.update({"data.height": theirs.data.height, "data.width": theirs.data.width})
    return cfg.replace(**overrides)


def decide(
    cfg: Config,
    tracker: Any,
    checkpoint: str | Path,
    *,
    allow_first: bool = False,
    min_improvement: float = 0.0,
    log_to: Any = None,
) -> Promotion:
    """Apply the rule to the model `checkpoint` trained with `cfg` against the current champion
    of ``cfg.tracking.model_name`` (evaluating both when there is one). `log_to` (a tracker
    with a run) receives both evaluation files under ``promotion/``."""
    name = cfg.tracking.model_name
    current = tracker.get_alias_version(name, CHAMPION)
    if current is None:
        allowed, reason = first_champion_allowed(cfg, allow_first)
        return Promotion(allowed, reason)
    with tempfile.TemporaryDirectory() as folder:
        files = tracker.download_model(name, CHAMPION, Path(folder) / "champion")
        new_file, old_file = Path(folder) / "new.json", Path(folder) / "champion.json"
        new_score = score(cfg, checkpoint, new_file)
        champion_score = score(_champion_config(cfg, files), champion_checkpoint(files), old_file)
        if log_to is not None:
            log_to.log_artifact(new_file, "promotion")
            log_to.log_artifact(old_file, "promotion")
    verdict = judge(new_score, champion_score, current.version, min_improvement)
    log.info("%s: %s", "promote" if verdict.promote else "keep the champion", verdict.reason)
    return verdict


def judge(
    new_score: float, champion_score: float, champion_version: str, min_improvement: float = 0.0
) -> Promotion:
    """The rule's comparison of two scores measured on the same protocol, with its reason."""
    promote = should_promote(new_score, champion_score, min_improvement)
    relation = ">" if promote else "<="
    reason = (
        f"{METRIC} {new_score:.4f} {relation} champion v{champion_version} "
        f"{champion_score:.4f} + {min_improvement}"
    )
    return Promotion(promote, reason, new_score, champion_score, champion_version)
