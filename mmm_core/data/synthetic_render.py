"""The model behind the synthetic VI-ReID data: people, cameras, and how one crop is drawn.

Everything here is a pure function of its arguments (a seeded ``numpy.random.Generator`` is an
argument): no files, no printing. `mmm_core.data.synthetic` lays the crops out on disk in the
SYSU-MM01 and RegDB layouts; docs/synthetic.md describes the model.

Coordinates. A person is drawn in a *person frame*: ``u`` horizontal (0 = body axis, + = the
person's facing side in side views), ``v`` vertical from the top of the head (0) to the soles
(1); one unit is the person's height. A pose maps the frame to pixels with a similarity
transform (scale, rotation, translation). Shapes are drawn with PIL at ``supersample`` times
the crop size as a *region map* (one code per pixel: skin, hair, upper garment, ...); colour
(visible) or intensity (infrared) is then looked up per region in numpy, garment prints are
evaluated in the person frame, and the result is box-averaged down to the crop size.

The thermal signature. Every garment, bag, hat, hair and skin has a hidden infrared value
(``ir``), drawn so that it is only weakly correlated with the visible brightness of its
colour (``ir_colour_correlation``): colour, the strongest cue in RGB, says little about what
an infrared camera sees. Skin is warm (bright); many prints are invisible in infrared.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "REGDB_CAMERAS",
    "REGION_NAMES",
    "SYSU_CAMERAS",
    "VIEWS",
    "BackgroundStyle",
    "CameraModel",
    "Garment",
    "Identity",
    "Pose",
    "RenderedCrop",
    "SynthPreset",
    "draw_regions",
    "luma",
    "person_frame",
    "render_background",
    "render_crop",
    "sample_identity",
    "sample_pose",
]

# Region codes of the region map.
BACKGROUND, SKIN, HAIR, UPPER, LOWER, SHOES, BAG, HAT, OCCLUDER = range(9)
REGION_NAMES = ("background", "skin", "hair", "upper", "lower", "shoes", "bag", "hat", "occluder")
VIEWS = ("front", "back", "side")

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luma(rgb: np.ndarray | tuple[float, float, float]) -> np.ndarray:
    """Rec. 601 brightness of colours in [0, 1]: (..., 3) -> (...,) float32."""
    return np.asarray(rgb, dtype=np.float32) @ _LUMA


# ----------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class SynthPreset:
    """All parameters of one preset (see docs/synthetic.md for the model they drive).

    Attributes:
        name: "tiny" or "bench".
        height, width: crop size in pixels (H x W), SYSU and RegDB alike.
        default_ids: number of identities when none is asked for.
        supersample: shapes are drawn at this multiple of the crop size, then box-averaged.
        images_per_camera: inclusive range of SYSU images per (id, camera) tracklet.
        regdb_images: images per id per modality in RegDB (10 in the real release).
        indoor_prob: probability that an id walks through the indoor room (cam1, cam2, cam3).
        outdoor_prob: probability that an id walks through the outdoor area (cam4, cam5, cam6).
        camera_miss_prob: probability that a camera of a visited place never records the id.
        view_keep_prob: probability that an image keeps its tracklet's viewpoint.
        colour_jitter: std of a garment's deviation from its palette colour (0..1 units);
            smaller means more look-alike identities.
        pattern_prob: probability that an upper garment has a print (stripes, checks, dots,
            logo); lower garments get one with a quarter of it.
        pattern_period: range of print periods, as a fraction of the person's height.
        ir_colour_correlation: correlation between a garment's hidden infrared signature and
            its visible brightness (0 = unrelated, 1 = infrared is the grayscale of colour).
        print_vanish_prob: probability that a print has the same infrared signature as its
            fabric (it vanishes in infrared).
        bag_left_prob: probability that a bag carried outdoors is not carried indoors.
        occlusion_prob: per-image probability of a partial occluder.
        scale_range: person height as a fraction of the crop height.
        shift: std of the person's offset from the crop centre, fractions of (W, H).
        rotation_deg: std of the in-plane rotation, degrees.
        noise_scale: multiplier of every camera's sensor noise.
        blur_scale: multiplier of every camera's blur (camera blur is given for 128-px crops
            and scaled with the crop height).
        camera_variation: how far each camera's response (colour cast, saturation,
            brightness, gamma, blur, resolution, noise) departs from the mean camera of its
            modality: 1 = the camera table, 0 = every camera of a modality alike (scenes and
            viewpoints still differ).
        ir_background_gain: multiplier of the infrared cameras' scene levels (1 = the scene
            tables: dark surroundings behind a bright person; larger values light the scene
            like the visible cameras', so a person's contrast against it has the same sign in
            both modalities).
        jpeg_quality: JPEG quality of SYSU images.
    """

    name: str
    height: int
    width: int
    default_ids: int = 24
    supersample: int = 2
    images_per_camera: tuple[int, int] = (3, 8)
    regdb_images: int = 10
    indoor_prob: float = 0.6
    outdoor_prob: float = 0.8
    camera_miss_prob: float = 0.2
    view_keep_prob: float = 0.75
    colour_jitter: float = 0.06
    pattern_prob: float = 0.5
    pattern_period: tuple[float, float] = (0.06, 0.12)
    ir_colour_correlation: float = 0.3
    print_vanish_prob: float = 0.5
    bag_left_prob: float = 0.25
    occlusion_prob: float = 0.1
    scale_range: tuple[float, float] = (0.8, 0.95)
    shift: tuple[float, float] = (0.05, 0.025)
    rotation_deg: float = 2.5
    noise_scale: float = 1.0
    blur_scale: float = 1.0
    camera_variation: float = 1.0
    ir_background_gain: float = 1.0
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.height < 16 or self.width < 8:
            raise ValueError(f"crop size {self.height}x{self.width} is too small (min 16x8)")
        lo, hi = self.images_per_camera
        if not 1 <= lo <= hi:
            raise ValueError(f"images_per_camera must be 1 <= lo <= hi, got {lo, hi}")
        if not 0.0 <= self.ir_colour_correlation <= 1.0:
            raise ValueError("ir_colour_correlation must lie in [0, 1]")
        if self.camera_variation < 0.0:
            raise ValueError("camera_variation must be >= 0")
        if self.ir_background_gain <= 0.0:
            raise ValueError("ir_background_gain must be > 0")


# ----------------------------------------------------------------------------- identities

# Clothing palette: name, colour, weight as an upper garment, weight as a lower garment.
# Dark and neutral colours dominate, as in real surveillance footage.
_PALETTE: tuple[tuple[str, tuple[float, float, float], float, float], ...] = (
    ("black", (0.07, 0.07, 0.08), 0.16, 0.26),
    ("white", (0.90, 0.90, 0.88), 0.13, 0.03),
    ("gray", (0.50, 0.50, 0.52), 0.09, 0.10),
    ("charcoal", (0.26, 0.26, 0.28), 0.07, 0.10),
    ("navy", (0.11, 0.14, 0.33), 0.07, 0.08),
    ("blue", (0.15, 0.33, 0.72), 0.06, 0.02),
    ("light blue", (0.55, 0.70, 0.88), 0.05, 0.03),
    ("denim", (0.24, 0.33, 0.52), 0.02, 0.22),
    ("red", (0.74, 0.12, 0.12), 0.05, 0.01),
    ("maroon", (0.42, 0.09, 0.14), 0.03, 0.01),
    ("pink", (0.92, 0.58, 0.68), 0.04, 0.01),
    ("orange", (0.93, 0.50, 0.14), 0.02, 0.00),
    ("yellow", (0.94, 0.84, 0.26), 0.03, 0.00),
    ("khaki", (0.70, 0.63, 0.44), 0.03, 0.09),
    ("brown", (0.40, 0.27, 0.15), 0.03, 0.03),
    ("green", (0.18, 0.48, 0.24), 0.03, 0.00),
    ("olive", (0.38, 0.40, 0.19), 0.02, 0.01),
    ("purple", (0.44, 0.24, 0.58), 0.02, 0.00),
    ("teal", (0.10, 0.48, 0.48), 0.02, 0.00),
)
_PALETTE_RGB = np.array([p[1] for p in _PALETTE], dtype=np.float64)
_UPPER_WEIGHTS = np.array([p[2] for p in _PALETTE]) / sum(p[2] for p in _PALETTE)
_LOWER_WEIGHTS = np.array([p[3] for p in _PALETTE]) / sum(p[3] for p in _PALETTE)
# Palette brightness statistics, used to standardise luma before correlating it with ir.
_LUMA_MEAN, _LUMA_STD = 0.40, 0.25

_SKIN_TONES = np.array(
    [
        (0.96, 0.80, 0.69),
        (0.90, 0.72, 0.58),
        (0.80, 0.60, 0.46),
        (0.62, 0.44, 0.32),
        (0.42, 0.29, 0.20),
    ]
)
_SKIN_WEIGHTS = np.array([0.25, 0.35, 0.22, 0.12, 0.06])
_HAIR_COLOURS = np.array(
    [
        (0.05, 0.04, 0.04),
        (0.20, 0.13, 0.08),
        (0.38, 0.24, 0.13),
        (0.80, 0.68, 0.42),
        (0.62, 0.62, 0.62),
    ]
)
_HAIR_WEIGHTS = np.array([0.60, 0.24, 0.08, 0.03, 0.05])
_HAIR_STYLES = ("short", "medium", "long", "ponytail", "buzz")
_HAIR_STYLE_WEIGHTS = np.array([0.42, 0.18, 0.25, 0.08, 0.07])
_PATTERNS = ("stripes", "checks", "dots", "logo")
_PATTERN_WEIGHTS = np.array([0.35, 0.22, 0.15, 0.28])
_BAGS = ("none", "backpack", "shoulder", "handbag")
_BAG_WEIGHTS = np.array([0.45, 0.30, 0.15, 0.10])


@dataclass(frozen=True)
class Garment:
    """One garment. ``ir`` and ``print_ir`` are hidden (never written anywhere).

    Attributes:
        kind: upper "sleeveless" / "tshirt" / "longsleeve" / "coat"; lower "trousers" /
            "shorts" / "skirt".
        colour, print_colour: visible RGB in [0, 1] of the fabric and of its print.
        pattern: "solid", "stripes", "checks", "dots" or "logo" (logo: front only).
        period: print period as a fraction of the person's height (logo: its size).
        vertical: stripes run vertically.
        phase: print phase in person-frame units.
        logo_shape: "box", "disc" or "diamond".
        ir, print_ir: infrared signature of fabric and print in [0, 1]; equal when the print
            vanishes in infrared.
        cover: sleeve length (fraction of the arm) or leg coverage (fraction of the leg).
        length: how far below the hip the garment reaches (coats; skirts), body heights.
    """

    kind: str
    colour: tuple[float, float, float]
    print_colour: tuple[float, float, float]
    pattern: str
    period: float
    vertical: bool
    phase: float
    logo_shape: str
    ir: float
    print_ir: float
    cover: float
    length: float


@dataclass(frozen=True)
class Identity:
    """One person. Everything but `pid` is hidden ground truth (diagnostics only).

    Attributes:
        pid: the identity number (folder name in the layouts).
        stature: relative height (people fill the crop a little more or less).
        build: width factor of shoulders, hips and limbs.
        head: head height as a fraction of body height.
        torso: shoulder-to-hip length as a fraction of body height.
        skin, hair, hat, shoes, bag_colour: visible RGB in [0, 1] (hat None: no hat).
        skin_ir, hair_ir, hat_ir, shoes_ir, bag_ir: infrared signatures in [0, 1].
        hair_style: one of "short", "medium", "long", "ponytail", "buzz".
        upper, lower: the garments.
        bag: "none", "backpack", "shoulder" or "handbag"; bag_side: +1 right, -1 left.
        bag_indoors: whether the bag is carried in the indoor room too.
    """

    pid: int
    stature: float
    build: float
    head: float
    torso: float
    skin: tuple[float, float, float]
    skin_ir: float
    hair: tuple[float, float, float]
    hair_ir: float
    hair_style: str
    hat: tuple[float, float, float] | None
    hat_ir: float
    upper: Garment
    lower: Garment
    shoes: tuple[float, float, float]
    shoes_ir: float
    bag: str
    bag_colour: tuple[float, float, float]
    bag_ir: float
    bag_side: int
    bag_indoors: bool


def _rgb(values: np.ndarray) -> tuple[float, float, float]:
    clipped = np.clip(values, 0.0, 1.0)
    return (float(clipped[0]), float(clipped[1]), float(clipped[2]))


def _fabric_colour(rng: np.random.Generator, weights: np.ndarray, jitter: float) -> np.ndarray:
    base = _PALETTE_RGB[rng.choice(len(_PALETTE), p=weights)]
    return np.clip(base * rng.uniform(0.85, 1.15) + rng.normal(0.0, jitter, 3), 0.0, 1.0)


def _ir_signature(rng: np.random.Generator, colour: np.ndarray, rho: float) -> float:
    """Hidden infrared value with correlation ~rho to the colour's standardised brightness."""
    z = (float(luma(colour)) - _LUMA_MEAN) / _LUMA_STD
    mixed = rho * z + math.sqrt(max(0.0, 1.0 - rho * rho)) * rng.standard_normal()
    return float(np.clip(0.5 + 0.2 * mixed, 0.05, 0.95))


def _garment(rng: np.random.Generator, preset: SynthPreset, upper: bool) -> Garment:
    weights = _UPPER_WEIGHTS if upper else _LOWER_WEIGHTS
    colour = _fabric_colour(rng, weights, preset.colour_jitter)
    print_colour = _fabric_colour(rng, _UPPER_WEIGHTS, preset.colour_jitter)
    if np.abs(print_colour - colour).sum() < 0.3:  # a print must show in colour
        print_colour = np.where(luma(colour) > 0.5, 0.08, 0.92) * np.ones(3)
    pattern_prob = preset.pattern_prob if upper else preset.pattern_prob / 4
    pattern = "solid"
    if rng.random() < pattern_prob:
        pattern = str(rng.choice(_PATTERNS, p=_PATTERN_WEIGHTS)) if upper else "stripes"
    period = float(rng.uniform(*preset.pattern_period))
    vertical = bool(rng.random() < (0.25 if upper else 0.8))
    ir = _ir_signature(rng, colour, preset.ir_colour_correlation)
    if rng.random() < preset.print_vanish_prob:
        print_ir = ir
    else:
        print_ir = float(np.clip(ir + rng.choice((-1.0, 1.0)) * rng.uniform(0.15, 0.35), 0, 1))
    if upper:
        kind = str(
            rng.choice(("sleeveless", "tshirt", "longsleeve", "coat"), p=(0.05, 0.40, 0.43, 0.12))
        )
        cover = {"sleeveless": 0.0, "tshirt": rng.uniform(0.25, 0.4)}.get(kind, 0.93)
        length = rng.uniform(0.12, 0.25) if kind == "coat" else rng.uniform(0.0, 0.03)
    else:
        kind = str(rng.choice(("trousers", "shorts", "skirt"), p=(0.7, 0.15, 0.15)))
        cover = {"trousers": 1.0, "shorts": rng.uniform(0.3, 0.45)}.get(kind, 0.0)
        length = rng.uniform(0.12, 0.3) if kind == "skirt" else 0.0
    return Garment(
        kind=kind,
        colour=_rgb(colour),
        print_colour=_rgb(print_colour),
        pattern=pattern,
        period=period,
        vertical=vertical,
        phase=float(rng.uniform(0.0, 1.0)),
        logo_shape=str(rng.choice(("box", "disc", "diamond"))),
        ir=ir,
        print_ir=print_ir,
        cover=float(cover),
        length=float(length),
    )


def sample_identity(pid: int, seed: int, preset: SynthPreset) -> Identity:
    """The person `pid` of the world `seed`: a pure function of (pid, seed, preset)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11, pid]))
    rho = preset.ir_colour_correlation
    upper = _garment(rng, preset, upper=True)
    lower = _garment(rng, preset, upper=False)
    skin = _SKIN_TONES[rng.choice(len(_SKIN_TONES), p=_SKIN_WEIGHTS)]
    hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS)]
    has_hat = rng.random() < 0.08
    hat = _fabric_colour(rng, _UPPER_WEIGHTS, preset.colour_jitter)
    shoes = _PALETTE_RGB[rng.choice((0, 1, 2, 3, 14, 5, 8))] * rng.uniform(0.8, 1.1)
    bag = str(rng.choice(_BAGS, p=_BAG_WEIGHTS))
    bag_colour = _fabric_colour(rng, _LOWER_WEIGHTS, preset.colour_jitter)
    return Identity(
        pid=pid,
        stature=float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1)),
        build=float(np.clip(rng.normal(1.0, 0.1), 0.78, 1.28)),
        head=float(rng.uniform(0.118, 0.145)),
        torso=float(rng.uniform(0.27, 0.33)),
        skin=_rgb(skin + rng.normal(0.0, 0.02, 3)),
        skin_ir=float(rng.uniform(0.78, 0.95)),
        hair=_rgb(hair + rng.normal(0.0, 0.02, 3)),
        hair_ir=_ir_signature(rng, hair, rho) * 0.7,
        hair_style=str(rng.choice(_HAIR_STYLES, p=_HAIR_STYLE_WEIGHTS)),
        hat=_rgb(hat) if has_hat else None,
        hat_ir=_ir_signature(rng, hat, rho),
        upper=upper,
        lower=lower,
        shoes=_rgb(shoes),
        shoes_ir=float(rng.uniform(0.1, 0.6)),
        bag=bag,
        bag_colour=_rgb(bag_colour),
        bag_ir=_ir_signature(rng, bag_colour, rho),
        bag_side=int(rng.choice((-1, 1))),
        bag_indoors=bool(rng.random() >= preset.bag_left_prob),
    )


# ----------------------------------------------------------------------------- cameras


@dataclass(frozen=True)
class BackgroundStyle:
    """Background statistics of one camera's scene.

    Attributes:
        outdoor: outdoor scene (vegetation / facades over pavement) or indoor (wall over
            floor, with doors and furniture).
        upper, lower: base colour above / below the horizon (RGB; gray for infrared).
        accents: colours of doors, furniture, facades or vegetation.
        horizon: range of the horizon's height as a fraction of the crop height.
        texture: amplitude of the smooth texture noise.
    """

    outdoor: bool
    upper: tuple[float, float, float]
    lower: tuple[float, float, float]
    accents: tuple[tuple[float, float, float], ...]
    horizon: tuple[float, float]
    texture: float


@dataclass(frozen=True)
class CameraModel:
    """One camera: its modality and what it does to the picture.

    Attributes:
        name: "cam1" ... "cam6" (SYSU) or "visible" / "thermal" (RegDB).
        modality: "visible", "nir" (active near-infrared, SYSU) or "thermal" (RegDB).
        gains: white-balance gains on R, G, B (colour cast; visible only).
        saturation: colour saturation factor (visible only).
        brightness: mean illumination gain.
        gamma: response curve exponent.
        blur: Gaussian blur sigma in pixels of a 128-px-high crop.
        resolution: effective resolution (the picture is shrunk by it and enlarged back).
        noise: sensor noise std in [0, 1] units.
        views: probabilities of a tracklet's viewpoint (front, back, side).
        background: the scene.
    """

    name: str
    modality: str
    gains: tuple[float, float, float]
    saturation: float
    brightness: float
    gamma: float
    blur: float
    resolution: float
    noise: float
    views: tuple[float, float, float]
    background: BackgroundStyle

    @property
    def infrared(self) -> bool:
        return self.modality != "visible"


def _gray(level: float) -> tuple[float, float, float]:
    return (level, level, level)


_INDOOR = BackgroundStyle(
    outdoor=False,
    upper=(0.78, 0.72, 0.60),
    lower=(0.48, 0.46, 0.44),
    accents=((0.45, 0.30, 0.18), (0.85, 0.85, 0.82), (0.30, 0.35, 0.45)),
    horizon=(0.6, 0.82),
    texture=0.04,
)
_INDOOR_2 = BackgroundStyle(
    outdoor=False,
    upper=(0.85, 0.86, 0.84),
    lower=(0.52, 0.40, 0.30),
    accents=((0.20, 0.22, 0.25), (0.65, 0.55, 0.40), (0.60, 0.20, 0.18)),
    horizon=(0.55, 0.78),
    texture=0.05,
)
_OUTDOOR = BackgroundStyle(
    outdoor=True,
    upper=(0.35, 0.50, 0.28),
    lower=(0.55, 0.54, 0.52),
    accents=((0.70, 0.66, 0.60), (0.25, 0.40, 0.20), (0.50, 0.48, 0.50)),
    horizon=(0.45, 0.7),
    texture=0.10,
)
_OUTDOOR_2 = BackgroundStyle(
    outdoor=True,
    upper=(0.55, 0.55, 0.58),
    lower=(0.40, 0.40, 0.42),
    accents=((0.30, 0.42, 0.25), (0.75, 0.72, 0.68), (0.60, 0.35, 0.25)),
    horizon=(0.4, 0.65),
    texture=0.08,
)
_NIR_INDOOR = BackgroundStyle(  # the room of cam2: same layout statistics, infrared levels
    outdoor=False,
    upper=_gray(0.30),
    lower=_gray(0.20),
    accents=(_gray(0.45), _gray(0.12), _gray(0.6)),
    horizon=(0.55, 0.78),
    texture=0.05,
)
_NIR_OUTDOOR = BackgroundStyle(  # at night: dark, a few lit surfaces
    outdoor=True,
    upper=_gray(0.10),
    lower=_gray(0.16),
    accents=(_gray(0.30), _gray(0.05), _gray(0.45)),
    horizon=(0.4, 0.65),
    texture=0.06,
)
_REGDB_VISIBLE = BackgroundStyle(
    outdoor=True,
    upper=(0.60, 0.60, 0.58),
    lower=(0.45, 0.44, 0.42),
    accents=((0.30, 0.42, 0.25), (0.78, 0.76, 0.70), (0.35, 0.35, 0.38)),
    horizon=(0.5, 0.6),
    texture=0.07,
)
_REGDB_THERMAL = BackgroundStyle(  # ambient temperature: darker than people
    outdoor=True,
    upper=_gray(0.22),
    lower=_gray(0.30),
    accents=(_gray(0.15), _gray(0.40), _gray(0.10)),
    horizon=(0.5, 0.6),
    texture=0.05,
)
_NEUTRAL = (1.0, 1.0, 1.0)

SYSU_CAMERAS: dict[str, CameraModel] = {
    "cam1": CameraModel(  # indoor, warm light
        "cam1", "visible", gains=(1.10, 1.00, 0.82), saturation=1.0, brightness=0.95,
        gamma=1.0, blur=0.5, resolution=1.0, noise=0.020, views=(0.55, 0.20, 0.25),
        background=_INDOOR,
    ),
    "cam2": CameraModel(  # indoor, greenish fluorescent light, dimmer and softer
        "cam2", "visible", gains=(0.92, 1.06, 1.00), saturation=0.85, brightness=0.80,
        gamma=1.1, blur=0.8, resolution=0.85, noise=0.030, views=(0.25, 0.45, 0.30),
        background=_INDOOR_2,
    ),
    "cam3": CameraModel(  # near-infrared, the room of cam2
        "cam3", "nir", gains=_NEUTRAL, saturation=1.0, brightness=1.25,
        gamma=0.9, blur=1.0, resolution=0.75, noise=0.030, views=(0.25, 0.45, 0.30),
        background=_NIR_INDOOR,
    ),
    "cam4": CameraModel(  # outdoor, daylight
        "cam4", "visible", gains=(1.00, 1.00, 1.05), saturation=1.1, brightness=1.10,
        gamma=0.95, blur=0.4, resolution=1.0, noise=0.015, views=(0.35, 0.35, 0.30),
        background=_OUTDOOR,
    ),
    "cam5": CameraModel(  # outdoor, overcast and bluish, low resolution
        "cam5", "visible", gains=(0.92, 0.98, 1.08), saturation=0.75, brightness=0.85,
        gamma=1.0, blur=0.9, resolution=0.7, noise=0.025, views=(0.25, 0.25, 0.50),
        background=_OUTDOOR_2,
    ),
    "cam6": CameraModel(  # near-infrared outdoors at night, lowest resolution
        "cam6", "nir", gains=_NEUTRAL, saturation=1.0, brightness=1.35,
        gamma=1.2, blur=1.2, resolution=0.6, noise=0.040, views=(0.40, 0.30, 0.30),
        background=_NIR_OUTDOOR,
    ),
}  # fmt: skip

REGDB_CAMERAS: dict[str, CameraModel] = {
    "visible": CameraModel(
        "visible", "visible", gains=(1.02, 1.0, 0.95), saturation=0.9, brightness=1.0,
        gamma=1.0, blur=0.7, resolution=0.8, noise=0.02, views=(0.5, 0.5, 0.0),
        background=_REGDB_VISIBLE,
    ),
    "thermal": CameraModel(  # far infrared: half resolution, smooth
        "thermal", "thermal", gains=_NEUTRAL, saturation=1.0, brightness=1.0,
        gamma=1.0, blur=1.2, resolution=0.5, noise=0.015, views=(0.5, 0.5, 0.0),
        background=_REGDB_THERMAL,
    ),
}  # fmt: skip


# ----------------------------------------------------------------------------- poses


@dataclass(frozen=True)
class Pose:
    """Where and how a person appears in one crop.

    Attributes:
        view: "front", "back" or "side".
        facing: +1 or -1 (side views: which way the person walks; mirrors the figure).
        scale: person height as a fraction of the crop height.
        centre: person centre (x, y) as fractions of the crop (W, H).
        rotation: in-plane rotation, radians.
        stride: walking phase in [-1, 1] (legs and arms swing with it).
        carries_bag: whether the identity's bag is carried in this crop.
        occluder: None or (x0, y0, x1, y1) of an occluding box, fractions of the crop.
        occluder_value: colour (RGB) and infrared value of the occluder, 4 numbers.
        light: (gain, horizontal gradient, vertical gradient) of the illumination.
    """

    view: str
    facing: int
    scale: float
    centre: tuple[float, float]
    rotation: float
    stride: float
    carries_bag: bool
    occluder: tuple[float, float, float, float] | None
    occluder_value: tuple[float, float, float, float]
    light: tuple[float, float, float]


def sample_pose(
    rng: np.random.Generator,
    identity: Identity,
    preset: SynthPreset,
    view: str,
    carries_bag: bool,
    occlusion_prob: float | None = None,
) -> Pose:
    """A random pose around the preset's statistics, with the given viewpoint."""
    occlusion_prob = preset.occlusion_prob if occlusion_prob is None else occlusion_prob
    occluder = None
    if rng.random() < occlusion_prob:
        if rng.random() < 0.6:  # something in front of the legs (bench, railing, car)
            top = rng.uniform(0.6, 0.85)
            occluder = (0.0, top, 1.0, 1.0)
        else:  # a pole, a door frame or a passer-by at one side
            width = rng.uniform(0.2, 0.4)
            occluder = (0.0, 0.0, width, 1.0) if rng.random() < 0.5 else (1 - width, 0, 1, 1)
    level = rng.uniform(0.15, 0.7)  # occluders: muted colours, any infrared value
    infrared = float(rng.uniform(0.05, 0.7))
    lo, hi = preset.scale_range
    scale = float(np.clip(rng.uniform(lo, hi) * identity.stature, 0.6, 1.05))
    return Pose(
        view=view,
        facing=int(rng.choice((-1, 1))),
        scale=scale,
        centre=(
            float(0.5 + rng.normal(0.0, preset.shift[0])),
            float(0.5 + rng.normal(0.0, preset.shift[1])),
        ),
        rotation=float(np.deg2rad(np.clip(rng.normal(0.0, preset.rotation_deg), -8.0, 8.0))),
        stride=float(rng.uniform(-1.0, 1.0)),
        carries_bag=carries_bag,
        occluder=occluder,
        occluder_value=(*(float(c) for c in level + rng.uniform(-0.08, 0.08, 3)), infrared),
        light=(
            float(rng.uniform(0.85, 1.15)),
            float(rng.uniform(-0.25, 0.25)),
            float(rng.uniform(0.0, 0.2)),
        ),
    )


# ----------------------------------------------------------------------------- shapes

# Polygons are lists of (u, v) tuples: plain floats are much cheaper than tiny numpy arrays.
Point = tuple[float, float]
Polygon = list[Point]
Shapes = list[tuple[int, Polygon]]


@lru_cache(maxsize=4)
def _unit_circle(n: int) -> tuple[Point, ...]:
    return tuple((math.cos(2 * math.pi * i / n), math.sin(2 * math.pi * i / n)) for i in range(n))


def _ellipse(cu: float, cv: float, ru: float, rv: float, n: int = 14) -> Polygon:
    return [(cu + ru * c, cv + rv * s) for c, s in _unit_circle(n)]


def _box(u0: float, v0: float, u1: float, v1: float) -> Polygon:
    return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]


def _limb(p0: Point, p1: Point, w0: float, w1: float, t0: float = 0.0, t1: float = 1.0) -> Polygon:
    """Quadrilateral along p0 -> p1 between fractions t0..t1, full widths w0 -> w1."""
    du, dv = p1[0] - p0[0], p1[1] - p0[1]
    norm = max(math.hypot(du, dv), 1e-9)
    nu, nv = -dv / norm, du / norm
    au, av, bu, bv = p0[0] + t0 * du, p0[1] + t0 * dv, p0[0] + t1 * du, p0[1] + t1 * dv
    wa, wb = (w0 + (w1 - w0) * t0) / 2, (w0 + (w1 - w0) * t1) / 2
    return [
        (au + nu * wa, av + nv * wa),
        (bu + nu * wb, bv + nv * wb),
        (bu - nu * wb, bv - nv * wb),
        (au - nu * wa, av - nv * wa),
    ]


@dataclass(frozen=True)
class _Landmarks:
    head: float  # head height
    shoulder: float  # v of the shoulder line
    hip: float  # v of the hip line
    ankle: float
    shoulder_w: float  # half widths
    hip_w: float


def _landmarks(identity: Identity) -> _Landmarks:
    shoulder = identity.head + 0.03
    return _Landmarks(
        head=identity.head,
        shoulder=shoulder,
        hip=shoulder + identity.torso,
        ankle=0.955,
        shoulder_w=0.115 * identity.build,
        hip_w=0.09 * identity.build,
    )


def _arm(shapes: Shapes, identity: Identity, start: Point, angle: float, lm: _Landmarks) -> Point:
    """Skin arm, sleeve and hand; returns the hand position."""
    length = lm.hip + 0.07 - lm.shoulder
    end = (start[0] + length * math.sin(angle), start[1] + length * math.cos(angle))
    w0, w1 = 0.055 * identity.build, 0.04 * identity.build
    shapes.append((SKIN, _limb(start, end, w0, w1)))
    if identity.upper.cover > 0:
        sleeve = _limb(start, end, w0 + 0.012, w1 + 0.012, -0.05, identity.upper.cover)
        shapes.append((UPPER, sleeve))
    shapes.append((SKIN, _ellipse(end[0], end[1] + 0.01, 0.022, 0.026, 10)))
    return end


def _leg(shapes: Shapes, identity: Identity, hip: Point, end: Point, side_view: bool) -> None:
    w0, w1 = 0.078 * identity.build, 0.045 * identity.build
    shapes.append((SKIN, _limb(hip, end, w0, w1)))
    lower = identity.lower
    if lower.kind != "skirt":
        shapes.append((LOWER, _limb(hip, end, w0 + 0.01, w1 + 0.012, -0.05, lower.cover)))
    toe, length = (0.025, 0.045) if side_view else (0.0, 0.032)
    shapes.append((SHOES, _ellipse(end[0] + toe, end[1] + 0.02, length, 0.022, 10)))


def _pelvis(shapes: Shapes, identity: Identity, lm: _Landmarks, half_w: float) -> None:
    lower = identity.lower
    if lower.kind == "skirt":
        bottom, flare = lm.hip + lower.length, half_w * 1.35
        top = lm.hip - 0.03
        shapes.append((LOWER, [(-half_w, top), (half_w, top), (flare, bottom), (-flare, bottom)]))
    else:
        shapes.append((LOWER, _box(-half_w, lm.hip - 0.03, half_w, lm.hip + 0.07)))


def _head_and_hair(shapes: Shapes, identity: Identity, lm: _Landmarks, view: str) -> None:
    hh = lm.head
    ru, rv = (0.42 if view == "side" else 0.36) * hh, hh / 2
    style = identity.hair_style
    shapes.append((SKIN, _box(-0.028, hh * 0.8, 0.028, lm.shoulder + 0.01)))  # neck
    if view == "back":
        shapes.append((HAIR, _ellipse(0.0, rv, ru, rv)))
        if style in ("long", "medium"):
            bottom = lm.shoulder + (0.12 if style == "long" else 0.03)
            shapes.append((HAIR, _box(-ru * 1.08, rv, ru * 1.08, bottom)))
        if style == "ponytail":
            shapes.append((HAIR, _ellipse(0.0, hh * 1.05, ru * 0.35, hh * 0.35, 10)))
    elif view == "front":
        shapes.append((SKIN, _ellipse(0.0, rv, ru, rv)))
        cap = {"buzz": 0.3, "short": 0.5, "medium": 0.55, "long": 0.55, "ponytail": 0.5}[style]
        shapes.append((HAIR, _ellipse(0.0, rv * cap, ru * 1.05, rv * cap + 0.2 * rv)))
        if style in ("long", "medium"):
            bottom = hh * 0.95 if style == "medium" else lm.shoulder + 0.05
            for side in (-1.0, 1.0):
                shapes.append((HAIR, _box(side * ru * 0.78, rv * 0.6, side * ru * 1.1, bottom)))
    else:  # side, facing +u
        shapes.append((SKIN, _ellipse(0.01, rv, ru, rv)))
        shapes.append((HAIR, _ellipse(-ru * 0.3, rv * 0.85, ru * 0.8, rv * 0.9)))
        if style in ("long", "medium"):
            bottom = lm.shoulder + (0.1 if style == "long" else 0.02)
            shapes.append((HAIR, _box(-ru * 1.0, rv, -ru * 0.1, bottom)))
        if style == "ponytail":
            shapes.append((HAIR, _ellipse(-ru * 1.15, hh * 0.75, ru * 0.35, hh * 0.35, 10)))
    if identity.hat is not None:
        shapes.append((HAT, _ellipse(0.0, rv * 0.45, ru * 1.1, rv * 0.5)))
        if view == "front":
            shapes.append((HAT, _box(-ru * 1.15, rv * 0.7, ru * 1.15, rv * 0.85)))
        elif view == "side":
            shapes.append((HAT, _box(-ru * 0.2, rv * 0.7, ru * 1.5, rv * 0.85)))


def _front_or_back(shapes: Shapes, identity: Identity, pose: Pose, lm: _Landmarks) -> None:
    b, view = identity.build, pose.view
    bag = identity.bag if pose.carries_bag else "none"
    side_bag = identity.bag_side if view == "front" else -identity.bag_side
    if view == "front" and identity.hair_style == "long":  # hair falling behind the shoulders
        shapes.append(
            (HAIR, _box(-lm.head * 0.42, lm.head * 0.5, lm.head * 0.42, lm.shoulder + 0.08))
        )
    spread = 0.008 + 0.015 * abs(pose.stride)
    for side in (-1.0, 1.0):
        _leg(
            shapes,
            identity,
            (side * 0.045 * b, lm.hip),
            (side * (0.05 * b + spread), lm.ankle),
            side_view=False,
        )
    _pelvis(shapes, identity, lm, lm.hip_w)
    top, bottom = lm.shoulder, lm.hip + 0.02 + identity.upper.length
    bottom_w = lm.hip_w * (1.2 if identity.upper.kind == "coat" else 1.02)
    sw = lm.shoulder_w
    shapes.append(
        (
            UPPER,
            [
                (-sw * 0.75, top - 0.015),
                (sw * 0.75, top - 0.015),
                (sw, top + 0.02),
                (bottom_w, bottom),
                (-bottom_w, bottom),
                (-sw, top + 0.02),
            ],
        )
    )
    swing = 0.06 + 0.015 * abs(pose.stride)
    hands = {
        side: _arm(shapes, identity, (side * (sw - 0.02), lm.shoulder + 0.015), side * swing, lm)
        for side in (-1, 1)
    }
    if bag == "backpack" and view == "back":  # stands out behind the back, over the arms
        shapes.append((BAG, _box(-0.085 * b, lm.shoulder + 0.02, 0.085 * b, lm.shoulder + 0.24)))
    _head_and_hair(shapes, identity, lm, view)
    if bag == "backpack" and view == "front":  # only the straps show
        for side in (-1.0, 1.0):
            strap = _limb(
                (side * 0.06 * b, lm.shoulder - 0.005),
                (side * 0.07 * b, lm.shoulder + 0.17),
                0.016,
                0.016,
            )
            shapes.append((BAG, strap))
    elif bag == "shoulder":
        strap = _limb(
            (-side_bag * sw * 0.7, lm.shoulder), (side_bag * lm.hip_w, lm.hip), 0.018, 0.018
        )
        shapes.append((BAG, strap))
        u = side_bag * (lm.hip_w + 0.03)
        shapes.append((BAG, _box(u - 0.05, lm.hip - 0.03, u + 0.05, lm.hip + 0.08)))
    elif bag == "handbag":
        hu, hv = hands[side_bag]
        shapes.append((BAG, _box(hu - 0.04, hv + 0.02, hu + 0.04, hv + 0.1)))


def _side(shapes: Shapes, identity: Identity, pose: Pose, lm: _Landmarks) -> None:
    """Side view, walking towards +u (the caller mirrors for -u)."""
    depth = 0.08 * identity.build
    bag = identity.bag if pose.carries_bag else "none"
    near_bag = identity.bag_side * pose.facing > 0
    swing = 0.45 * pose.stride
    shoulder = (0.0, lm.shoulder + 0.015)
    _arm(shapes, identity, shoulder, -swing, lm)  # far arm, mostly hidden by the torso
    leg_len = lm.ankle - lm.hip
    for angle in (-0.35 * pose.stride, 0.35 * pose.stride):
        end = (leg_len * math.sin(angle), lm.hip + leg_len * math.cos(angle))
        _leg(shapes, identity, (0.0, lm.hip), end, side_view=True)
    _pelvis(shapes, identity, lm, depth)
    bottom = lm.hip + 0.02 + identity.upper.length
    shapes.append(
        (
            UPPER,
            [
                (-depth, lm.shoulder),
                (depth * 0.9, lm.shoulder),
                (depth, bottom),
                (-depth * 1.05, bottom),
            ],
        )
    )
    if bag == "backpack":
        shapes.append(
            (BAG, _box(-depth - 0.07, lm.shoulder + 0.03, -depth + 0.01, lm.shoulder + 0.2))
        )
    elif bag == "shoulder" and near_bag:
        shapes.append((BAG, _limb((0.0, lm.shoulder), (0.0, lm.hip), 0.018, 0.018)))
        shapes.append((BAG, _box(-0.06, lm.hip - 0.03, 0.05, lm.hip + 0.08)))
    hu, hv = _arm(shapes, identity, shoulder, swing, lm)  # near arm
    if bag == "handbag" and near_bag:
        shapes.append((BAG, _box(hu - 0.04, hv + 0.02, hu + 0.04, hv + 0.1)))
    _head_and_hair(shapes, identity, lm, "side")


def _figure(identity: Identity, pose: Pose) -> Shapes:
    """The person's shapes in drawing order, as (region code, person-frame polygon)."""
    lm = _landmarks(identity)
    shapes: Shapes = []
    if pose.view == "side":
        _side(shapes, identity, pose, lm)
        if pose.facing < 0:
            shapes = [(code, [(-u, v) for u, v in poly]) for code, poly in shapes]
    else:
        _front_or_back(shapes, identity, pose, lm)
    return shapes


@lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    return xs, ys


def person_frame(
    pose: Pose, x: np.ndarray, y: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Person-frame (u, v) of pixel positions (x, y) on a ``height x width`` canvas.

    `x`, `y` are float arrays of one shape (pixel centres are at +0.5); the returned u is
    mirrored for side views facing -u, so prints stay attached to the body.
    """
    scale = pose.scale * height
    cos, sin = math.cos(pose.rotation), math.sin(pose.rotation)
    dx, dy = x - pose.centre[0] * width, y - pose.centre[1] * height
    u = (cos * dx + sin * dy) * (1.0 / scale)
    v = (cos * dy - sin * dx) * (1.0 / scale) + 0.5
    if pose.view == "side" and pose.facing < 0:
        u = -u
    return u.astype(np.float32), v.astype(np.float32)


def draw_regions(identity: Identity, pose: Pose, height: int, width: int) -> np.ndarray:
    """Region map of a ``height x width`` canvas: (height, width) uint8 codes (REGION_NAMES)."""
    scale = pose.scale * height
    cx, cy = pose.centre[0] * width, pose.centre[1] * height
    a, b = scale * math.cos(pose.rotation), scale * math.sin(pose.rotation)
    canvas = Image.new("L", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for code, polygon in _figure(identity, pose):
        points = [(cx + a * u - b * (v - 0.5), cy + b * u + a * (v - 0.5)) for u, v in polygon]
        draw.polygon(points, fill=code)
    if pose.occluder is not None:
        x0, y0, x1, y1 = pose.occluder
        draw.rectangle((x0 * width, y0 * height, x1 * width - 1, y1 * height - 1), fill=OCCLUDER)
    return np.asarray(canvas)


def _print_mask(garment: Garment, u: np.ndarray, v: np.ndarray, lm: _Landmarks, view: str):
    """Boolean mask of the print over the given person-frame coordinates."""
    p = garment.period
    if garment.pattern == "stripes":
        coord = u if garment.vertical else v
        return ((coord + garment.phase) / p) % 1.0 < 0.5
    if garment.pattern == "checks":
        return (((u + garment.phase) / p) % 1.0 < 0.5) ^ (((v + garment.phase) / p) % 1.0 < 0.5)
    if garment.pattern == "dots":
        fu = ((u + garment.phase) / p) % 1.0 - 0.5
        fv = ((v + garment.phase) / p) % 1.0 - 0.5
        return fu * fu + fv * fv < 0.09
    if garment.pattern == "logo" and view == "front":
        size = max(0.045, 0.7 * p)
        du, dv = np.abs(u) / size, np.abs(v - (lm.shoulder + 0.09)) / size
        if garment.logo_shape == "box":
            return (du < 1.0) & (dv < 0.8)
        if garment.logo_shape == "disc":
            return du * du + dv * dv < 1.0
        return du + dv < 1.0
    return np.zeros(u.shape, dtype=bool)


def _region_values(identity: Identity, pose: Pose, camera: CameraModel) -> np.ndarray:
    """(9, C) value per region code: RGB (C = 3) or infrared intensity (C = 1)."""
    if camera.infrared:
        values = [
            0.0,
            identity.skin_ir,
            identity.hair_ir,
            identity.upper.ir,
            identity.lower.ir,
            identity.shoes_ir,
            identity.bag_ir,
            identity.hat_ir,
            pose.occluder_value[3],
        ]
        table = np.array(values, dtype=np.float32)[:, None]
        if camera.modality == "thermal":  # temperature: skin warm, clothes between, bags cool
            table = table.copy()
            table[SKIN] = 0.85 + 0.1 * (identity.skin_ir - 0.78) / 0.17
            table[[HAIR, UPPER, LOWER, HAT]] = 0.3 + 0.45 * table[[HAIR, UPPER, LOWER, HAT]]
            table[[SHOES, BAG, OCCLUDER]] = 0.15 + 0.3 * table[[SHOES, BAG, OCCLUDER]]
        return table
    hat = identity.hat if identity.hat is not None else (0.0, 0.0, 0.0)
    rows = [
        (0.0, 0.0, 0.0),
        identity.skin,
        identity.hair,
        identity.upper.colour,
        identity.lower.colour,
        identity.shoes,
        identity.bag_colour,
        hat,
        pose.occluder_value[:3],
    ]
    return np.array(rows, dtype=np.float32)


def _person_layer(
    identity: Identity, pose: Pose, camera: CameraModel, height: int, width: int, ss: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Premultiplied person layer (H, W, C), its coverage (H, W), region map at (H*ss, W*ss)."""
    hs, ws = height * ss, width * ss
    regions = draw_regions(identity, pose, hs, ws)
    table = _region_values(identity, pose, camera)
    values = table[regions]  # (hs, ws, C); background rows are 0, so values are premultiplied
    flat_regions = regions.ravel()
    flat_values = values.reshape(-1, values.shape[-1])
    lm = _landmarks(identity)
    for code, garment in ((UPPER, identity.upper), (LOWER, identity.lower)):
        if garment.pattern == "solid" or (garment.pattern == "logo" and pose.view != "front"):
            continue
        where = np.flatnonzero(flat_regions == code)
        if where.size == 0:
            continue
        ys, xs = np.divmod(where, ws)
        u, v = person_frame(pose, xs + np.float32(0.5), ys + np.float32(0.5), hs, ws)
        mask = _print_mask(garment, u, v, lm, pose.view)
        if camera.infrared:
            print_value = np.array([garment.print_ir], dtype=np.float32)
            if camera.modality == "thermal":
                print_value = 0.3 + 0.45 * print_value
        else:
            print_value = np.array(garment.print_colour, dtype=np.float32)
        flat_values[where[mask]] = print_value
    occluder = (flat_regions == OCCLUDER).reshape(hs, ws).astype(np.float32)
    cover = (regions != BACKGROUND).astype(np.float32)
    person, cover, occluder = (_downsample(x, ss) for x in (values, cover, occluder))
    # Round bodies: darker towards the silhouette's sides and slightly towards the feet;
    # smooth, so it is applied at the crop resolution (never to the occluder).
    strength = 0.15 if camera.infrared else 0.3
    u, v = person_frame(pose, *_pixel_grid(height, width), height, width)
    shade = 1.0 - np.minimum(u * u * (strength / 0.0256), strength) - 0.08 * v
    shade += (1.0 - shade) * occluder
    person *= shade[..., None]
    return person, cover, regions


def _downsample(image: np.ndarray, ss: int) -> np.ndarray:
    """Box average over ss x ss blocks of the two leading axes."""
    if ss == 1:
        return image
    if ss == 2:
        return (
            image[0::2, 0::2] + image[1::2, 0::2] + image[0::2, 1::2] + image[1::2, 1::2]
        ) * 0.25
    height, width = image.shape[0] // ss, image.shape[1] // ss
    return image.reshape(height, ss, width, ss, *image.shape[2:]).mean(axis=(1, 3))


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Smooth standard-normal-ish texture (H, W) float32: a coarse grid enlarged bilinearly."""
    grid = rng.standard_normal((max(2, height // cells), max(2, width // cells)))
    image = Image.fromarray(grid.astype(np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))


def render_background(
    style: BackgroundStyle, rng: np.random.Generator, height: int, width: int, channels: int
) -> np.ndarray:
    """A background of the style's statistics: (height, width, channels) float32 in [0, 1]."""
    out = np.empty((height, width, 3), dtype=np.float32)
    horizon = int(rng.uniform(*style.horizon) * height)
    out[:horizon] = style.upper
    out[horizon:] = style.lower
    accents = np.array(style.accents, dtype=np.float32)
    if style.outdoor:  # vegetation / facades above the horizon, by a smooth random mask
        mask = _smooth_noise(rng, height, width, max(4, height // 6)) > rng.uniform(-0.5, 0.5)
        pick = accents[rng.integers(len(accents))]
        out[:horizon][mask[:horizon]] = pick
        far = np.linspace(0.85, 1.0, height - horizon, dtype=np.float32)[:, None, None]
        out[horizon:] *= far
    else:  # doors, shelves and furniture standing on the floor
        for _ in range(int(rng.integers(0, 3))):
            x0 = int(rng.uniform(-0.2, 0.9) * width)
            w = int(rng.uniform(0.15, 0.5) * width)
            y0 = int(rng.uniform(0.0, 0.4) * height)
            out[y0 : horizon + 1, max(x0, 0) : max(x0 + w, 0)] = accents[rng.integers(len(accents))]
        out[max(horizon - 1, 0) : horizon + 1] *= 0.6  # skirting board
    out *= np.float32(rng.uniform(0.85, 1.15))  # brightness of this spot
    if channels == 3:
        out *= rng.uniform(0.96, 1.04, 3).astype(np.float32)  # and its tint
    cells = max(2, height // 16)
    out += style.texture * _smooth_noise(rng, height, width, cells)[..., None]
    out = np.clip(out, 0.0, 1.0)
    return out if channels == 3 else out[..., :1]


@dataclass(frozen=True)
class RenderedCrop:
    """One rendered crop.

    Attributes:
        image: (H, W, 3) uint8; infrared crops have three equal channels.
        regions: (H, W) uint8 region codes sampled from the supersampled map (diagnostics).
    """

    image: np.ndarray
    regions: np.ndarray


_RESPONSE = ("saturation", "brightness", "gamma", "blur", "resolution", "noise")


def _toward_mean(camera: CameraModel, variation: float) -> CameraModel:
    """`camera` with its response moved to `variation` of its distance from the mean camera of
    its modality (over the SYSU and RegDB cameras of that modality)."""
    if variation == 1.0:
        return camera
    cameras = (*SYSU_CAMERAS.values(), *REGDB_CAMERAS.values())
    peers = [c for c in cameras if c.modality == camera.modality]

    def blend(own: float, values: list[float]) -> float:
        mean = float(np.mean(values))
        return mean + variation * (own - mean)

    changes: dict[str, object] = {
        name: blend(getattr(camera, name), [getattr(c, name) for c in peers]) for name in _RESPONSE
    }
    changes["gains"] = tuple(blend(camera.gains[i], [c.gains[i] for c in peers]) for i in range(3))
    return dataclasses.replace(camera, **changes)


def render_crop(
    identity: Identity,
    pose: Pose,
    camera: CameraModel,
    background: np.ndarray,
    rng: np.random.Generator,
    preset: SynthPreset,
) -> RenderedCrop:
    """Draw `identity` in `pose` over `background` as seen by `camera`.

    Args:
        background: (H, W, C) float32 in [0, 1], C = 3 (visible) or 1 (infrared), as from
            `render_background`, at the preset's crop size.
        rng: per-image generator (sensor noise).
    Returns:
        The crop: uint8 RGB, three equal channels for infrared cameras.
    """
    height, width, ss = preset.height, preset.width, preset.supersample
    camera = _toward_mean(camera, preset.camera_variation)
    if camera.infrared and preset.ir_background_gain != 1.0:
        background = np.clip(background * np.float32(preset.ir_background_gain), 0.0, 1.0)
    person, cover, regions = _person_layer(identity, pose, camera, height, width, ss)
    folds = _smooth_noise(rng, height, width, max(2, height // 12))  # creases, uneven light
    person *= (1.0 + 0.06 * folds)[..., None]
    image = person + (1.0 - cover)[..., None] * background
    gain, grad_x, grad_y = pose.light
    xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    image *= (camera.brightness * gain * (1.0 + grad_x * xs - grad_y * ys))[..., None]
    if not camera.infrared:
        image *= np.array(camera.gains, dtype=np.float32)
        gray = image @ _LUMA
        image = gray[..., None] + camera.saturation * (image - gray[..., None])
    image = np.clip(image, 0.0, 1.0)
    if camera.gamma != 1.0:
        image **= camera.gamma
    if camera.infrared:
        picture = Image.fromarray(np.round(image[..., 0] * 255).astype(np.uint8), mode="L")
    else:
        picture = Image.fromarray(np.round(image * 255).astype(np.uint8), mode="RGB")
    if camera.resolution < 1.0:
        small = (
            max(4, round(width * camera.resolution)),
            max(4, round(height * camera.resolution)),
        )
        picture = picture.resize(small, Image.Resampling.BILINEAR)
        picture = picture.resize((width, height), Image.Resampling.BILINEAR)
    sigma = camera.blur * preset.blur_scale * height / 128 * rng.uniform(0.7, 1.4)  # focus, motion
    if sigma > 0.15:
        picture = picture.filter(ImageFilter.GaussianBlur(sigma))
    pixels = np.array(picture, dtype=np.float32)
    sigma_noise = 255.0 * camera.noise * preset.noise_scale
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(sigma_noise)
    pixels = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    if camera.infrared:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return RenderedCrop(image=pixels, regions=regions[ss // 2 :: ss, ss // 2 :: ss])
