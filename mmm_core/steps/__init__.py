"""The pipeline steps as plain functions over files (SPEC section 6).

Every step reads and writes files only, so the KFP components, the ``mmm step`` CLI and the
tests call the same functions. Artifact contracts (all arrays in manifest order per modality):

=============  ==================================================================================
config         ``config.yaml``: the resolved config (`mmm_core.config.dump_config`).
manifest       ``manifest.tsv``: training images, columns path, pid, label, camid, modality;
               paths relative to ``data.root`` (`mmm_core.data.Manifest`).
checkpoint     ``checkpoint.pt``: `mmm_core.engine.checkpoint.TrainingState` (model, optimiser,
               scheduler, RNG states, next round, stage).
features       ``features.npz``: ``visible`` (N_v, d) and ``infrared`` (N_r, d) float32,
               L2-normalised, flip-averaged, rows in the manifest's per-modality order.
labels         ``labels.npz``: `mmm_core.engine.labels.ClusterOutput` (int64, -1 = noise).
targets        ``targets.npz``: `mmm_core.engine.targets.Stage1Targets` / `Stage2Targets`
               (memories, matching, SCA weights).
metrics        ``metrics.json``: a flat JSON object of numbers (null where undefined).
decision       ``decision.json`` (retraining): `mmm_core.steps.ingest.Decision`, whether the run
               trains, why, the image counts, the champion it warm-starts from, the MLflow run.
snapshot       ``snapshot.json`` (retraining): ``{"version": 1, "source": root, "images":
               {relative path: fingerprint}}``, the listing ingest saw; promote commits it as
               the retraining state (`mmm_core.steps.ingest.write_state`).
result         ``result.json`` (promote): trained, promoted, reason, both scores, versions.
=============  ==================================================================================

Retraining (``pipelines/retrain.py``): ingest replaces start, the rounds are stage-2 rounds,
promote replaces register. When ingest decides not to train, the round steps write empty files
in place of their outputs (their metrics say ``skipped: 1``) and promote only reports.
"""

STEPS = (
    "start",
    "extract",
    "cluster",
    "match",
    "train",
    "evaluate",
    "register",
    "ingest",
    "promote",
)
