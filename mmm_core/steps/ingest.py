"""Step "ingest" (retraining): find the images that arrived since the last retraining and decide.

What counts as new. The dataset root (``s3://bucket/prefix`` in MinIO, or a local folder/PVC)
is listed, not downloaded: every image file below it (suffixes of
`mmm_core.data.manifest.IMAGE_SUFFIXES`, hidden files and the ``.mmm/`` state folder skipped)
with a fingerprint, the object's ETag in S3 and the MD5 of the file locally (the same value
for a file uploaded in one part, so a dataset moved from a PVC to MinIO keeps its state). An
image is *new* when its path is absent from the state and *changed* when its fingerprint
differs; both count towards ``min_new_images``. Removed images are reported, not counted.

The state. What the last finished retraining consumed is one JSON object, by default
``<data root>/.mmm/retrain-<model name>.json`` (``state_uri`` chooses another place, e.g.
when the data bucket is read-only): ``{"version": 1, "source": ..., "images": {path:
fingerprint}, ...}``. This step never writes it; it hands its snapshot of the listing on
(``snapshot.json``) and the promote step commits that snapshot as the very last thing of a
successful run. A run that fails anywhere leaves the state as it was, so its images are still
new for the next run; images that arrive while a run is going are not in its snapshot and are
new for the next run too. Keeping the state beside the data rather than in the champion's
MLflow run keeps it independent of promotion: a run whose model did not beat the champion
still consumed its images (it trained on them), so the next scheduled run does not train on
the same images again and again; a skipped run consumes nothing, so a trickle of images
accumulates until the threshold is reached. One state file per model name keeps two
retraining schedules on the same data apart. ``min_new_images: 0`` forces a run.

When training, the step is the retraining pipeline's "start": it mirrors the dataset, writes
the resolved config (stage-2 rounds only: ``train.stage1_rounds=0``, ``train.stage2_rounds=
rounds``, tracking forced on), the manifest of *all* current training images (old and new:
unsupervised clustering works on the whole set), an empty history, and creates the MLflow
run (`mmm_core.steps.start`). The initial checkpoint is a warm start: the weights of the
version that alias ``champion`` of ``tracking.model_name`` points at, downloaded from the
MLflow registry, with a fresh optimiser and round counter (``model.pretrained`` is set to
``none``: the champion's weights replace any initialisation). Without a champion (the first
retraining) the network is initialised as the config says, and the decision says so.

When not training, nothing is downloaded and no MLflow run is created: the outputs are the
decision, the snapshot, the resolved config and empty placeholder files; every later step
sees ``train`` false and does nothing (`skip_outputs`).

Outputs: ``decision.json`` (`Decision`), ``snapshot.json``, config.yaml, manifest.tsv,
checkpoint.pt, an empty history (metrics.jsonl).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mmm_core import storage
from mmm_core.data.manifest import IMAGE_SUFFIXES
from mmm_core.engine.champion import CHAMPION, champion_checkpoint

__all__ = [
    "CHAMPION",
    "STATE_FOLDER",
    "STATE_VERSION",
    "Decision",
    "ImageChanges",
    "compare_images",
    "decide",
    "default_state_uri",
    "list_images",
    "read_state",
    "run",
    "skip_outputs",
    "write_state",
]

log = logging.getLogger(__name__)

STATE_FOLDER = ".mmm"
STATE_VERSION = 1


# --------------------------------------------------------------------------- pure decisions


@dataclass(frozen=True)
class ImageChanges:
    """How a listing differs from the state: sorted relative paths of each kind."""

    new: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    total: int  # images in the current listing

    @property
    def arrived(self) -> int:
        """New plus changed images: what counts towards the threshold."""
        return len(self.new) + len(self.changed)


def compare_images(current: Mapping[str, str], previous: Mapping[str, str]) -> ImageChanges:
    """Compare two ``{relative path: fingerprint}`` listings (current against the state)."""
    new = sorted(p for p in current if p not in previous)
    changed = sorted(p for p in current if p in previous and previous[p] != current[p])
    removed = sorted(p for p in previous if p not in current)
    return ImageChanges(tuple(new), tuple(changed), tuple(removed), len(current))


def decide(changes: ImageChanges, min_new_images: int) -> tuple[bool, str]:
    """(train, reason): train when at least `min_new_images` images are new or changed.

    ``min_new_images <= 0`` always trains (a forced run), unless there are no images at all.
    """
    if changes.total == 0:
        return False, "no images under the dataset root"
    arrived = changes.arrived
    if arrived >= min_new_images:
        if arrived == 0:
            return True, f"forced (min_new_images {min_new_images}): no new images"
        return True, f"{arrived} new or changed images >= min_new_images {min_new_images}"
    return False, (
        f"only {arrived} new or changed images < min_new_images {min_new_images}; they stay "
        "pending until enough have arrived"
    )


@dataclass(frozen=True)
class Decision:
    """What the ingest step decided (``decision.json``); every later step reads it.

    Attributes:
        train: whether this run trains (false: every later step is a no-op).
        reason: the decision in words.
        new_images, changed_images, removed_images, total_images: counts of `ImageChanges`.
        min_new_images: the threshold the counts were compared with.
        source: the dataset root that was listed.
        state_uri: where the state lives (read here, committed by promote).
        model_name: the registered model retrained.
        rounds: stage-2 rounds of the run.
        champion_version: the version the run warm-starts from ("" = no champion).
        champion_run_id: the MLflow run that produced the champion ("" = none).
        run_id: the MLflow run of this retraining ("" when not training).
    """

    train: bool
    reason: str
    new_images: int
    changed_images: int
    removed_images: int
    total_images: int
    min_new_images: int
    source: str
    state_uri: str
    model_name: str
    rounds: int
    champion_version: str = ""
    champion_run_id: str = ""
    run_id: str = ""

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> Decision:
        data = json.loads(Path(path).read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def metrics(self) -> dict[str, float]:
        """The numbers, for the KFP UI and MLflow."""
        return {
            "train": float(self.train),
            "new_images": float(self.new_images),
            "changed_images": float(self.changed_images),
            "removed_images": float(self.removed_images),
            "total_images": float(self.total_images),
            "min_new_images": float(self.min_new_images),
        }


# --------------------------------------------------------------------------- listing and state


def _is_image(relative: str) -> bool:
    parts = PurePosixPath(relative).parts
    if not parts or parts[0] == STATE_FOLDER or any(p.startswith(".") for p in parts):
        return False
    return PurePosixPath(relative).suffix.lower() in IMAGE_SUFFIXES


def list_images(root: str | os.PathLike[str]) -> dict[str, str]:
    """``{relative POSIX path: fingerprint}`` of the images under a dataset root.

    ``s3://bucket/prefix``: one listing request stream, fingerprint = ETag (nothing is
    downloaded). A local folder: fingerprint = MD5 of the file. Raises StorageError (S3) or
    FileNotFoundError (a missing local folder).
    """
    if storage.is_remote(root):
        return _list_s3(str(root))
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset root {folder} is not a folder")
    found = {}
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and _is_image(relative):
            found[relative] = storage.file_md5(path)
    return dict(sorted(found.items()))


def _list_s3(uri: str) -> dict[str, str]:
    listing = storage.list_objects(uri)
    return {path: etag for path, etag in sorted(listing.items()) if _is_image(path)}


def default_state_uri(data_root: str, model_name: str) -> str:
    """``<data root>/.mmm/retrain-<model name>.json`` (an object URI or a local path)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", model_name) or "model"
    return f"{str(data_root).rstrip('/')}/{STATE_FOLDER}/retrain-{name}.json"


def read_state(uri: str) -> dict[str, Any] | None:
    """The state at `uri` (S3 object or local file), or None when there is none yet."""
    if storage.is_remote(uri):
        data = storage.read_bytes(uri)
        if data is None:
            return None
        text = data.decode()
    else:
        path = Path(uri)
        if not path.is_file():
            return None
        text = path.read_text()
    state = json.loads(text)
    if state.get("version") != STATE_VERSION or not isinstance(state.get("images"), dict):
        raise ValueError(f"{uri}: not a retraining state of version {STATE_VERSION}")
    return state


def write_state(uri: str, state: Mapping[str, Any]) -> None:
    """Write the state atomically: one S3 PUT, or a temporary file renamed into place."""
    data = (json.dumps(state, indent=1, sort_keys=True) + "\n").encode()
    if storage.is_remote(uri):
        storage.write_bytes(uri, data, content_type="application/json")
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# --------------------------------------------------------------------------- no-op steps


def skip_outputs(step: str, output_paths: Sequence[str | Path], metrics: Any) -> None:
    """A step of a retraining run that does not train: empty files at its output paths.

    `metrics` is the step's KFP Metrics artifact (``.path``, ``.log_metric``); it gets
    ``{"skipped": 1}``. Imports nothing heavy, so a skipped step takes a second.
    """
    for path in output_paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"")
    Path(metrics.path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics.path).write_text(json.dumps({"skipped": 1.0}) + "\n")
    metrics.log_metric("skipped", 1.0)
    log.info("%s: skipped (the ingest step decided not to train)", step)


# --------------------------------------------------------------------------- the step


def _warm_start(cfg: Any, tracker: Any, out_checkpoint: str | Path) -> None:
    """Replace the initial checkpoint by the champion's weights (fresh optimiser, round 0)."""
    from mmm_core.engine.checkpoint import TrainingState, load_checkpoint, save_checkpoint

    name = cfg.tracking.model_name
    with tempfile.TemporaryDirectory() as folder:
        files = tracker.download_model(name, CHAMPION, folder)
        champion = load_checkpoint(champion_checkpoint(Path(files)))
    if champion.arch and champion.arch != cfg.model.arch:
        raise ValueError(
            f"the champion of {name!r} is a {champion.arch} but the config builds a "
            f"{cfg.model.arch}: retrain with the champion's architecture (model.arch)"
        )
    save_checkpoint(
        out_checkpoint,
        TrainingState(
            next_round=0,
            stage=0,
            model=champion.model,
            arch=champion.arch,
            feature_dim=champion.feature_dim,
            extra={"warm_start": f"{name}@{CHAMPION}"},
        ),
    )


def run(
    config_paths: Sequence[str | Path],
    overrides: Sequence[str],
    rounds: int,
    min_new_images: int,
    state_uri: str,
    out_decision: str | Path,
    out_snapshot: str | Path,
    out_config: str | Path,
    out_manifest: str | Path,
    out_checkpoint: str | Path,
    out_history: str | Path,
) -> dict[str, float]:
    """List the dataset, compare with the state, decide; set up training when due.

    `rounds` stage-2 rounds are forced (``train.stage1_rounds=0``), and ``tracking.enabled``
    (the champion lives in the MLflow registry). An empty `state_uri` means
    `default_state_uri`. Returns the decision's numbers; `Decision` goes to `out_decision`.
    """
    from mmm_core.config import dump_config, load_config
    from mmm_core.steps import start

    if rounds < 1:
        raise ValueError(f"retraining needs at least one round, got {rounds}")
    forced = ["train.stage1_rounds=0", f"train.stage2_rounds={rounds}", "tracking.enabled=true"]
    overrides = [*overrides, *forced]
    cfg = load_config(list(config_paths), overrides)
    source = cfg.data.root
    state_uri = state_uri or default_state_uri(source, cfg.tracking.model_name)
    current = list_images(source)
    state = read_state(state_uri)
    changes = compare_images(current, state["images"] if state else {})
    train, reason = decide(changes, min_new_images)
    log.info(
        "%s: %d images, %d new, %d changed, %d removed since %s; %s",
        source,
        changes.total,
        len(changes.new),
        len(changes.changed),
        len(changes.removed),
        "the last retraining" if state else "ever (no state yet)",
        reason,
    )
    Path(out_snapshot).write_text(
        json.dumps({"version": STATE_VERSION, "source": source, "images": current}) + "\n"
    )
    decision = Decision(
        train=train,
        reason=reason,
        new_images=len(changes.new),
        changed_images=len(changes.changed),
        removed_images=len(changes.removed),
        total_images=changes.total,
        min_new_images=min_new_images,
        source=source,
        state_uri=state_uri,
        model_name=cfg.tracking.model_name,
        rounds=rounds,
    )
    if not train:
        dump_config(cfg, out_config)
        for path in (out_manifest, out_checkpoint, out_history):
            Path(path).write_bytes(b"")
        decision.write(out_decision)
        return decision.metrics()

    from mmm_core.engine.build import tracker_for

    tracker = tracker_for(cfg)
    champion = tracker.get_alias_version(cfg.tracking.model_name, CHAMPION)
    if champion is None:
        log.info(
            "no %s of %r yet: the network starts from the config's initialisation "
            "(model.pretrained=%s)",
            CHAMPION,
            cfg.tracking.model_name,
            cfg.model.pretrained,
        )
    else:
        overrides.append("model.pretrained=none")  # the champion's weights replace it
    start.run(config_paths, overrides, out_config, out_manifest, out_checkpoint, out_history)
    resolved = load_config(out_config)
    if champion is not None:
        _warm_start(resolved, tracker, out_checkpoint)
        log.info("warm start from %s version %s", cfg.tracking.model_name, champion.version)
    decision = dataclasses.replace(
        decision,
        champion_version=champion.version if champion else "",
        champion_run_id=champion.run_id if champion else "",
        run_id=resolved.tracking.run_id,
    )
    tracker.resume(resolved.tracking.run_id)
    retrain = {k: v for k, v in dataclasses.asdict(decision).items() if k != "train"}
    retrain["init"] = f"champion v{champion.version}" if champion else "config"
    tracker.log_params({"retrain": retrain})
    tracker.log_metrics({f"retrain/{k}": v for k, v in decision.metrics().items()}, step=0)
    decision.write(out_decision)
    return decision.metrics()
