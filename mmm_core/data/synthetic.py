"""Synthetic visible-infrared person re-ID datasets in the SYSU-MM01 and RegDB layouts.

`generate_sysu` and `generate_regdb` write real image files exactly as the raw releases lay
them out, so every test, demo and benchmark runs the same readers (`mmm_core.data.sysu`,
`mmm_core.data.regdb`) as real data. Output is a pure function of (format, ids, seed, preset):
the same arguments give byte-identical trees. Ground truth appears only where the releases
keep it (id folder names, RegDB idx labels); the hidden appearance parameters are available
to tests and diagnostics through `identity_traits` and `render_identity`.

The model of people, cameras and the thermal signature lives in
`mmm_core.data.synthetic_render` and is described in docs/synthetic.md.

SYSU layout: ``cam1 ... cam6/<pid 4 digits>/<idx 4 digits>.jpg`` and
``exp/{train,val,test}_id.txt`` (one line of comma-separated ids each). RegDB layout:
``Visible/<pid>/<view>_v_<n 5 digits>.bmp``, ``Thermal/<pid>/<view>_t_<n>.bmp`` and
``idx/{train,test}_{visible,thermal}_{t}.txt``, t = 1..10, lines ``<relative path> <label>``:
train labels are the train ids relabelled 0..n_train-1 in sorted id order, test labels are
the original ids (the folder names). A ``synthetic.json`` at the root records how the tree
was generated (format, preset, ids, seed), never any ground truth.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mmm_core.data.synthetic_render import (
    REGDB_CAMERAS,
    SYSU_CAMERAS,
    VIEWS,
    Identity,
    Pose,
    RenderedCrop,
    SynthPreset,
    render_background,
    render_crop,
    sample_identity,
    sample_pose,
)

__all__ = [
    "PRESETS",
    "SYNTH_VERSION",
    "SynthPreset",
    "SynthSummary",
    "SysuPlan",
    "contact_sheet",
    "ensure_generated",
    "generate_regdb",
    "generate_sysu",
    "identity_traits",
    "render_identity",
    "stale_reason",
    "sysu_plan",
]

log = logging.getLogger(__name__)

PRESETS: dict[str, SynthPreset] = {
    "tiny": SynthPreset(
        name="tiny",
        height=64,
        width=32,
        default_ids=24,
        images_per_camera=(3, 8),
        colour_jitter=0.06,
        pattern_period=(0.06, 0.12),
        occlusion_prob=0.1,
    ),
    "bench": SynthPreset(
        name="bench",
        height=128,
        width=64,
        default_ids=200,
        images_per_camera=(5, 20),
        camera_miss_prob=0.25,
        view_keep_prob=0.7,
        colour_jitter=0.045,
        pattern_period=(0.035, 0.1),
        occlusion_prob=0.2,
        scale_range=(0.78, 0.96),
        shift=(0.06, 0.03),
        rotation_deg=3.0,
        # Calibrated (docs/benchmark.md, world version 2): infrared is the grayscale of
        # colour, prints mostly survive it, the cameras of a modality share one response,
        # and the infrared scenes are lit like the visible ones, so that a stage-1 baseline
        # reaches 0.6-0.65 of the supervised upper bound's mAP above chance, as on the real
        # datasets.
        ir_colour_correlation=1.0,
        print_vanish_prob=0.1,
        camera_variation=0.0,
        ir_background_gain=2.5,
    ),
}

_SYSU_CAMERA_NAMES = ("cam1", "cam2", "cam3", "cam4", "cam5", "cam6")
_INDOOR_CAMERAS = (1, 2, 3)
_OUTDOOR_CAMERAS = (4, 5, 6)
_RGB = (1, 2, 4, 5)
_IR = (3, 6)
_SYSU_OWNED = (*_SYSU_CAMERA_NAMES, "exp", "synthetic.json")
_REGDB_OWNED = ("Visible", "Thermal", "idx", "synthetic.json")
_REGDB_TRIALS = 10
# Version of the world model in synthetic.json: bump it whenever a preset draws different
# images, so that runs regenerate trees written by an older version (engine.build.dataset_root).
SYNTH_VERSION = 2
# SeedSequence stream tags: every random quantity comes from its own (seed, tag, ...) stream,
# so nothing depends on generation order, dict order, threads or time.
_SPLIT, _PRESENCE, _TRACKLET, _IMAGE, _REGDB_ID, _REGDB_IMAGE, _REGDB_TRIAL = range(20, 27)


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _preset(preset: str | SynthPreset) -> SynthPreset:
    if isinstance(preset, SynthPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; expected one of {tuple(PRESETS)}")
    return PRESETS[preset]


@dataclass(frozen=True)
class SynthSummary:
    """What a generator wrote.

    Attributes:
        format: "sysu" or "regdb".
        preset: the preset's name.
        root: the dataset root.
        ids: number of identities; seed: the seed.
        images_per_camera: image count per camera folder ("cam1".."cam6"; RegDB "visible",
            "thermal").
        images_per_modality: image count per modality ("visible", "infrared").
        ids_per_camera: number of ids with images per camera.
        ids_per_split: SYSU "train", "val", "test"; RegDB "train", "test" (every trial).
    """

    format: str
    preset: str
    root: str
    ids: int
    seed: int
    images_per_camera: dict[str, int] = field(default_factory=dict)
    images_per_modality: dict[str, int] = field(default_factory=dict)
    ids_per_camera: dict[str, int] = field(default_factory=dict)
    ids_per_split: dict[str, int] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return sum(self.images_per_camera.values())

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        cameras = ", ".join(
            f"{name} {count} ({self.ids_per_camera.get(name, 0)} ids)"
            for name, count in self.images_per_camera.items()
        )
        modalities = ", ".join(f"{k} {v}" for k, v in self.images_per_modality.items())
        splits = ", ".join(f"{k} {v}" for k, v in self.ids_per_split.items())
        return [
            f"{self.format} dataset at {self.root}: {self.ids} ids, {self.images} images "
            f"(preset {self.preset}, seed {self.seed})",
            f"  images per camera: {cameras}",
            f"  images per modality: {modalities}",
            f"  ids per split: {splits}",
        ]


# ----------------------------------------------------------------------------- output folder


def _prepare_out(out: Path, overwrite: bool, owned: Sequence[str]) -> None:
    """Create `out`; refuse a non-empty folder unless `overwrite` (then drop `owned` entries)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} is not empty; refusing to write a synthetic dataset into it. Choose a "
                "new or empty folder, or pass --overwrite to replace the generated dataset there"
            )
        if not (out / "synthetic.json").is_file():
            raise FileExistsError(
                f"{out} holds no synthetic.json: it is not a dataset this generator wrote (a "
                "real dataset?), so --overwrite will not delete anything in it; choose a new "
                "or empty folder"
            )
        for name in owned:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        log.info("overwriting the synthetic dataset in %s", out)
    out.mkdir(parents=True, exist_ok=True)


def _write_metadata(out: Path, fmt: str, ids: int, seed: int, preset: SynthPreset) -> None:
    meta = {
        "format": fmt,
        "generator": "mmm synth",
        "ids": ids,
        "preset": preset.name,
        "seed": seed,
        "version": SYNTH_VERSION,
    }
    (out / "synthetic.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def stale_reason(
    root: str | Path, fmt: str, ids: int, seed: int, preset: str | SynthPreset
) -> str | None:
    """Why the generated tree at `root` is not what these arguments generate now, or None.

    None also when `root` holds no ``synthetic.json`` (not a generated tree: never touched).
    """
    meta_path = Path(root) / "synthetic.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        return f"unreadable {meta_path}: {err}"
    name = preset.name if isinstance(preset, SynthPreset) else preset
    wanted = {"format": fmt, "ids": ids, "seed": seed, "preset": name, "version": SYNTH_VERSION}
    changed = [f"{k} {meta.get(k)!r} -> {v!r}" for k, v in wanted.items() if meta.get(k) != v]
    return ", ".join(changed) or None


def ensure_generated(
    root: str | Path,
    fmt: str,
    ids: int,
    seed: int,
    preset: str | SynthPreset,
    *,
    progress: bool = False,
) -> str | None:
    """Make `root` hold the tree these arguments generate: generate it when missing, again
    when its ``synthetic.json`` records other arguments or an older world (`stale_reason`);
    a folder without ``synthetic.json`` is never touched.

    Returns None when the tree was kept, else why it was written: "new" or the stale reason.
    """
    root = Path(root)
    stale = root.exists() and stale_reason(root, fmt, ids, seed, preset)
    if root.exists() and not stale:
        return None
    if stale:
        log.warning("regenerating the synthetic dataset at %s (%s)", root, stale)
    else:
        log.info("generating a synthetic %s dataset at %s", fmt, root)
    generate = generate_sysu if fmt == "sysu" else generate_regdb
    generate(root, ids, seed, preset, overwrite=bool(stale), progress=progress)
    return stale or "new"


# ----------------------------------------------------------------------------- SYSU


@dataclass(frozen=True)
class SysuPlan:
    """Which ids go where (SYSU): the split and the images per (camera, id).

    Attributes:
        train, val, test: sorted ids of each split.
        images: ``images[(camera number, pid)]`` = number of images; absent = not seen.
    """

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    images: dict[tuple[int, int], int]


def _split_sizes(ids: int) -> tuple[int, int, int]:
    """(train, val, test) sizes: about 60 / 20 / 20 %, at least 2 test ids (6 of 24)."""
    n_test = max(2, round(0.2 * ids), min(6, ids // 3))
    n_val = max(1, round(0.2 * ids))
    return ids - n_val - n_test, n_val, n_test


def sysu_plan(ids: int, seed: int, preset: str | SynthPreset = "tiny") -> SysuPlan:
    """The split and camera coverage of a synthetic SYSU dataset (no images drawn).

    Each id walks through the indoor room (cam1, cam2, cam3) and/or the outdoor area (cam4,
    cam5, cam6); each camera of a visited place misses it with `camera_miss_prob`. Every id
    has at least one RGB and one IR camera; every camera sees at least one training id; at
    least one test id is seen by cam1 and about a third of the test ids by cam1 or cam2 (the
    indoor-search gallery), the others only outdoors or by cam3.
    """
    preset = _preset(preset)
    if not 4 <= ids <= 9999:
        raise ValueError(f"SYSU layout needs 4..9999 ids (4-digit folders), got {ids}")
    pids = np.arange(1, ids + 1)
    order = _rng(seed, _SPLIT).permutation(pids).tolist()
    _, n_val, n_test = _split_sizes(ids)
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    lo, hi = preset.images_per_camera
    cameras: dict[int, set[int]] = {}
    counts: dict[int, np.ndarray] = {}
    for pid in pids.tolist():
        rng = _rng(seed, _PRESENCE, pid)
        counts[pid] = rng.integers(lo, hi + 1, size=7)  # index = camera number
        indoor = rng.random() < preset.indoor_prob
        outdoor = rng.random() < preset.outdoor_prob
        if not (indoor or outdoor):
            indoor, outdoor = (True, False) if rng.random() < 0.5 else (False, True)
        places = (_INDOOR_CAMERAS if indoor else ()) + (_OUTDOOR_CAMERAS if outdoor else ())
        miss = rng.random(len(places)) < preset.camera_miss_prob
        seen = {cam for cam, missed in zip(places, miss, strict=True) if not missed}
        rgb_choices = [c for c in places if c in _RGB]
        ir_choices = [c for c in places if c in _IR]
        fallback_rgb, fallback_ir = int(rng.choice(rgb_choices)), int(rng.choice(ir_choices))
        if not seen & set(_RGB):
            seen.add(fallback_rgb)
        if not seen & set(_IR):
            seen.add(fallback_ir)
        cameras[pid] = seen
    # Indoor search needs test ids in cam1 / cam2, and cam3 queries need cam1 (cam2 is removed).
    need_indoor = min(n_test, max(2, n_test // 3))
    if not any(1 in cameras[pid] for pid in test):
        cameras[test[0]].add(1)
    missing = need_indoor - sum(bool(cameras[pid] & {1, 2}) for pid in test)
    for pid in [pid for pid in test if not cameras[pid] & {1, 2}][: max(0, missing)]:
        cameras[pid].add(1)
    training = train + val
    for cam in range(1, 7):
        if not any(cam in cameras[pid] for pid in training):
            cameras[training[0]].add(cam)
    images = {
        (cam, pid): int(counts[pid][cam]) for pid in pids.tolist() for cam in sorted(cameras[pid])
    }
    return SysuPlan(tuple(sorted(train)), tuple(sorted(val)), tuple(sorted(test)), images)


def _tracklet(
    identity: Identity,
    cam: int,
    count: int,
    seed: int,
    preset: SynthPreset,
) -> list[np.ndarray]:
    """The `count` crops of one id in one SYSU camera: (H, W, 3) uint8 each.

    One tracklet: one scene region (the background shifts as the person walks), a dominant
    viewpoint (people sometimes turn), per-image pose, light, occlusion and noise.
    """
    camera = SYSU_CAMERAS[f"cam{cam}"]
    rng = _rng(seed, _TRACKLET, cam, identity.pid)
    base_view = str(rng.choice(VIEWS, p=camera.views))
    height, width = preset.height, preset.width
    channels = 1 if camera.infrared else 3
    scene = render_background(camera.background, rng, height, width + width // 2, channels)
    carries_bag = identity.bag_indoors or cam in _OUTDOOR_CAMERAS
    crops = []
    for index in range(1, count + 1):
        image_rng = _rng(seed, _IMAGE, cam, identity.pid, index)
        view = base_view
        if image_rng.random() >= preset.view_keep_prob:
            view = str(image_rng.choice([v for v in VIEWS if v != base_view]))
        pose = sample_pose(image_rng, identity, preset, view, carries_bag)
        offset = int(image_rng.integers(0, width // 2 + 1))
        background = scene[:, offset : offset + width]
        crops.append(render_crop(identity, pose, camera, background, image_rng, preset).image)
    return crops


def generate_sysu(
    out: str | Path,
    ids: int,
    seed: int,
    preset: str | SynthPreset = "tiny",
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> SynthSummary:
    """Write a synthetic SYSU-MM01 dataset at `out`.

    Args:
        out: dataset root; created; refused when it exists and is not empty unless
            `overwrite` (which removes the camera folders, exp/ and synthetic.json there).
        ids: number of identities (4..9999), numbered 1..ids.
        seed: world seed; the same arguments give byte-identical files.
        preset: "tiny", "bench" or a SynthPreset.
        progress: show a tqdm progress bar.
    Raises:
        FileExistsError: `out` is not empty (and not `overwrite`) or is a file.
        ValueError: bad `ids` or preset.
    """
    preset = _preset(preset)
    out = Path(out)
    plan = sysu_plan(ids, seed, preset)
    _prepare_out(out, overwrite, _SYSU_OWNED)
    for name in _SYSU_CAMERA_NAMES:
        (out / name).mkdir()
    identities = {pid: sample_identity(pid, seed, preset) for pid in range(1, ids + 1)}
    total = sum(plan.images.values())
    with tqdm(total=total, desc="synth sysu", unit="img", disable=not progress) as bar:
        for (cam, pid), count in sorted(plan.images.items()):
            folder = out / f"cam{cam}" / f"{pid:04d}"
            folder.mkdir()
            crops = _tracklet(identities[pid], cam, count, seed, preset)
            for index, crop in enumerate(crops, start=1):
                Image.fromarray(crop, mode="RGB").save(
                    folder / f"{index:04d}.jpg", format="JPEG", quality=preset.jpeg_quality
                )
            bar.update(count)
    exp = out / "exp"
    exp.mkdir()
    for name, split in (("train", plan.train), ("val", plan.val), ("test", plan.test)):
        (exp / f"{name}_id.txt").write_text(",".join(str(pid) for pid in split) + "\n")
    _write_metadata(out, "sysu", ids, seed, preset)
    per_camera = {name: 0 for name in _SYSU_CAMERA_NAMES}
    ids_per_camera = {name: 0 for name in _SYSU_CAMERA_NAMES}
    for (cam, _), count in plan.images.items():
        per_camera[f"cam{cam}"] += count
        ids_per_camera[f"cam{cam}"] += 1
    summary = SynthSummary(
        format="sysu",
        preset=preset.name,
        root=str(out),
        ids=ids,
        seed=seed,
        images_per_camera=per_camera,
        images_per_modality={
            "visible": sum(per_camera[f"cam{c}"] for c in _RGB),
            "infrared": sum(per_camera[f"cam{c}"] for c in _IR),
        },
        ids_per_camera=ids_per_camera,
        ids_per_split={"train": len(plan.train), "val": len(plan.val), "test": len(plan.test)},
    )
    log.info("wrote %d SYSU-layout images for %d ids to %s", summary.images, ids, out)
    return summary


# ----------------------------------------------------------------------------- RegDB


def _regdb_pair(
    identity: Identity, seed: int, preset: SynthPreset, scenes: tuple[np.ndarray, np.ndarray]
) -> tuple[str, list[np.ndarray], list[np.ndarray]]:
    """(view, visible crops, thermal crops) of one RegDB id; crop k of both is one moment.

    The two cameras are co-located: the thermal pose is the visible pose with a small parallax
    shift and scale change; the person walks towards (front) or away from (back) them.
    """
    rng = _rng(seed, _REGDB_ID, identity.pid)
    view = "front" if rng.random() < 0.5 else "back"
    phase = rng.uniform(0.0, 2.0 * np.pi)
    offsets = rng.integers(0, preset.width // 2 + 1, size=2)
    parallax = (rng.normal(0.03, 0.01), rng.normal(0.0, 0.01))
    visible_camera, thermal_camera = REGDB_CAMERAS["visible"], REGDB_CAMERAS["thermal"]
    width = preset.width
    backgrounds = [scene[:, o : o + width] for scene, o in zip(scenes, offsets, strict=True)]
    visible, thermal = [], []
    for k in range(preset.regdb_images):
        image_rng = _rng(seed, _REGDB_IMAGE, identity.pid, k)
        pose = sample_pose(image_rng, identity, preset, view, True, preset.occlusion_prob / 3)
        pose = dataclasses.replace(pose, stride=float(np.sin(phase + 0.9 * k)))
        cx, cy = pose.centre
        thermal_pose: Pose = dataclasses.replace(
            pose, centre=(cx + parallax[0], cy + parallax[1]), scale=pose.scale * 0.97
        )
        visible.append(
            render_crop(identity, pose, visible_camera, backgrounds[0], image_rng, preset).image
        )
        thermal.append(
            render_crop(
                identity, thermal_pose, thermal_camera, backgrounds[1], image_rng, preset
            ).image
        )
    return view, visible, thermal


def generate_regdb(
    out: str | Path,
    ids: int,
    seed: int,
    preset: str | SynthPreset = "tiny",
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> SynthSummary:
    """Write a synthetic RegDB dataset at `out`.

    `regdb_images` (10) visible and thermal images per id, ids 1..`ids`; ten trials, each a
    different random split (deterministic by seed) of ``ids // 2`` train ids and the rest
    test ids. Train idx labels: train ids relabelled 0..n_train-1 in sorted order; test idx
    labels: the original ids. Arguments and errors as `generate_sysu` (ids >= 2).
    """
    preset = _preset(preset)
    out = Path(out)
    if ids < 2:
        raise ValueError(f"RegDB layout needs at least 2 ids (one train, one test), got {ids}")
    _prepare_out(out, overwrite, _REGDB_OWNED)
    for name in ("Visible", "Thermal", "idx"):
        (out / name).mkdir()
    scene_rng = _rng(seed, _REGDB_ID, 0)
    height, width = preset.height, preset.width
    scenes = (
        render_background(
            REGDB_CAMERAS["visible"].background, scene_rng, height, width * 3 // 2, 3
        ),
        render_background(
            REGDB_CAMERAS["thermal"].background, scene_rng, height, width * 3 // 2, 1
        ),
    )
    files: dict[int, dict[str, list[str]]] = {}
    per_id = preset.regdb_images
    with tqdm(total=2 * ids * per_id, desc="synth regdb", unit="img", disable=not progress) as bar:
        for pid in range(1, ids + 1):
            identity = sample_identity(pid, seed, preset)
            view, visible, thermal = _regdb_pair(identity, seed, preset, scenes)
            files[pid] = {}
            for folder, tag, crops in (("Visible", "v", visible), ("Thermal", "t", thermal)):
                (out / folder / str(pid)).mkdir()
                rels = []
                for k, crop in enumerate(crops):
                    rel = f"{folder}/{pid}/{view}_{tag}_{(pid - 1) * per_id + k + 1:05d}.bmp"
                    Image.fromarray(crop, mode="RGB").save(out / rel, format="BMP")
                    rels.append(rel)
                files[pid][folder] = rels
                bar.update(len(crops))
    n_train = ids // 2
    for trial in range(1, _REGDB_TRIALS + 1):
        order = _rng(seed, _REGDB_TRIAL, trial).permutation(np.arange(1, ids + 1)).tolist()
        train, test = sorted(order[:n_train]), sorted(order[n_train:])
        for modality, folder in (("visible", "Visible"), ("thermal", "Thermal")):
            train_lines = [
                f"{rel} {label}" for label, pid in enumerate(train) for rel in files[pid][folder]
            ]
            test_lines = [f"{rel} {pid}" for pid in test for rel in files[pid][folder]]
            idx = out / "idx"
            (idx / f"train_{modality}_{trial}.txt").write_text("\n".join(train_lines) + "\n")
            (idx / f"test_{modality}_{trial}.txt").write_text("\n".join(test_lines) + "\n")
    _write_metadata(out, "regdb", ids, seed, preset)
    count = ids * per_id
    summary = SynthSummary(
        format="regdb",
        preset=preset.name,
        root=str(out),
        ids=ids,
        seed=seed,
        images_per_camera={"visible": count, "thermal": count},
        images_per_modality={"visible": count, "infrared": count},
        ids_per_camera={"visible": ids, "thermal": ids},
        ids_per_split={"train": n_train, "test": ids - n_train},
    )
    log.info("wrote %d RegDB-layout images for %d ids to %s", summary.images, ids, out)
    return summary


# ----------------------------------------------------------------------------- diagnostics


def identity_traits(ids: int, seed: int, preset: str | SynthPreset = "tiny") -> list[Identity]:
    """The hidden appearance of ids 1..`ids` (tests and diagnostics only; never on disk)."""
    preset = _preset(preset)
    return [sample_identity(pid, seed, preset) for pid in range(1, ids + 1)]


def render_identity(
    identity: Identity,
    camera: str,
    preset: str | SynthPreset = "tiny",
    seed: int = 0,
    view: str = "front",
    occlusion: bool = False,
) -> RenderedCrop:
    """One crop of `identity` by a SYSU camera ("cam1".."cam6") or RegDB camera ("visible",
    "thermal"), with its region map (diagnostics: which pixel is skin, upper garment, ...)."""
    preset = _preset(preset)
    model = SYSU_CAMERAS.get(camera) or REGDB_CAMERAS.get(camera)
    if model is None:
        raise ValueError(f"unknown camera {camera!r}")
    rng = _rng(seed, 99, identity.pid, sorted([*SYSU_CAMERAS, *REGDB_CAMERAS]).index(camera))
    pose = sample_pose(rng, identity, preset, view, True, 1.0 if occlusion else 0.0)
    channels = 1 if model.infrared else 3
    background = render_background(model.background, rng, preset.height, preset.width, channels)
    return render_crop(identity, pose, model, background, rng, preset)


def contact_sheet(root: str | Path, pids: Sequence[int], zoom: int = 2) -> Image.Image:
    """A picture of a SYSU-layout tree: one row per id, the first image of cam1..cam6 (blank
    where the id is not seen), enlarged `zoom` times."""
    root = Path(root)
    rows = []
    for pid in pids:
        cells = []
        for name in _SYSU_CAMERA_NAMES:
            folder = root / name / f"{pid:04d}"
            files = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
            cells.append(np.asarray(Image.open(files[0]).convert("RGB")) if files else None)
        shape = next(c.shape for c in cells if c is not None)
        blank = np.full(shape, 255, dtype=np.uint8)
        gap = np.full((shape[0], 2, 3), 255, dtype=np.uint8)
        row = [x for c in cells for x in (blank if c is None else c, gap)]
        rows.append(np.concatenate(row[:-1], axis=1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, dtype=np.uint8))
    sheet = Image.fromarray(np.concatenate(rows[:-1], axis=0))
    return sheet.resize((sheet.width * zoom, sheet.height * zoom), Image.Resampling.NEAREST)
