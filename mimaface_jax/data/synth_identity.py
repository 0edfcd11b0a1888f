"""SynthFaces identities: the appearance codes of a procedural face, sampled from a seed.

Lengths are in units of the face half-width ``a`` (the head is an ellipsoid with semi-axes
``a``, ``a * face_aspect``, ``a * face_depth``; ``a = face_size * image width``). Feature
positions are on the frontal view of the face: ``x`` right, ``y`` down, origin at the head
centre. Colours are RGB in 0..1.
"""

from __future__ import annotations

import dataclasses

import numpy as np

IDENTITY_STREAM = 1

HAIR_STYLES = ("short", "fringe", "spiky", "long", "bald", "side_part")
SYMMETRIC_HAIR_STYLES = ("short", "fringe", "spiky", "long", "bald")
COLLAR_STYLES = ("round", "v_neck", "shirt")
BACKGROUND_GRADIENTS = ("vertical", "radial", "diagonal")
SYMMETRIC_GRADIENTS = ("vertical", "radial")
BACKGROUND_PATTERNS = ("plain", "stripes", "dots")

_SKIN_RAMP = np.array([(0.98, 0.86, 0.76), (0.92, 0.74, 0.60), (0.78, 0.57, 0.42),
                       (0.56, 0.38, 0.26), (0.36, 0.24, 0.16)])
_HAIR_PALETTE = np.array([(0.08, 0.06, 0.05), (0.30, 0.18, 0.10), (0.55, 0.38, 0.20),
                          (0.85, 0.70, 0.42), (0.62, 0.25, 0.10), (0.70, 0.70, 0.72),
                          (0.20, 0.25, 0.55)])
_IRIS_PALETTE = np.array([(0.30, 0.18, 0.08), (0.20, 0.40, 0.75), (0.25, 0.50, 0.30),
                          (0.45, 0.48, 0.50), (0.50, 0.40, 0.20)])

RGB = tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class SynthIdentity:
    """Every appearance parameter of one SynthFaces person (hashable: used as a cache key)."""

    identity_id: int
    symmetric: bool
    # Head shape.
    face_size: float      # face half-width / image width
    face_aspect: float    # half-height / half-width
    face_depth: float     # half-depth / half-width
    jaw_width: float      # fraction of the face width kept at the chin (0.5 pointed .. 1 round)
    head_height: float    # rest y of the head centre / image height
    skin_rgb: RGB
    # Hair.
    hair_style: int       # index into HAIR_STYLES
    hair_rgb: RGB
    hairline: float       # y of the front hairline at the centre of the forehead (a units)
    hair_part: float      # slant of the hairline (side part); 0 for symmetric identities
    # Eyes and brows.
    eye_spacing: float    # x of each eye centre
    eye_y: float
    eye_width: float      # half-width of the eye opening
    eye_height: float     # half-height of the eye opening
    iris_radius: float
    iris_rgb: RGB
    brow_gap: float       # distance from the top of the eye to the brow
    brow_thickness: float
    # Nose and mouth.
    nose_size: float
    mouth_y: float
    mouth_width: float    # half-width at rest
    lip_thickness: float
    lip_rgb: RGB
    # Body and background.
    clothing_rgb: RGB
    collar_style: int     # index into COLLAR_STYLES
    collar_rgb: RGB
    background_top_rgb: RGB
    background_bottom_rgb: RGB
    background_gradient: int  # index into BACKGROUND_GRADIENTS
    background_pattern: int   # index into BACKGROUND_PATTERNS
    pattern_frequency: float  # cycles per image width
    pattern_strength: float

    @property
    def identity_code(self) -> np.ndarray:
        """The ground-truth identity embedding: every parameter as one flat float32 vector.

        Continuous parameters are min-max normalised to about 0..1, colours are RGB in 0..1
        and categorical parameters are one-hot. See ``identity_code_names``.
        """
        return _identity_code(self)

    def symmetrized(self) -> "SynthIdentity":
        """The same person made left-right symmetric (no side part, symmetric background)."""
        style = HAIR_STYLES[self.hair_style]
        gradient = BACKGROUND_GRADIENTS[self.background_gradient]
        return dataclasses.replace(
            self, symmetric=True, hair_part=0.0,
            hair_style=HAIR_STYLES.index("short") if style == "side_part" else self.hair_style,
            background_gradient=(BACKGROUND_GRADIENTS.index("vertical")
                                 if gradient not in SYMMETRIC_GRADIENTS
                                 else self.background_gradient))


# (name, low, high) of every continuous parameter: the sampling range and the code's scale.
_CONTINUOUS = (
    ("face_size", 0.2, 0.235), ("face_aspect", 1.18, 1.38), ("face_depth", 0.9, 1.1),
    ("jaw_width", 0.55, 0.95), ("head_height", 0.42, 0.46), ("hairline", -1.05, -0.8),
    ("hair_part", -0.25, 0.25), ("eye_spacing", 0.32, 0.40), ("eye_y", -0.22, -0.08),
    ("eye_width", 0.13, 0.17), ("eye_height", 0.065, 0.09), ("iris_radius", 0.055, 0.07),
    ("brow_gap", 0.07, 0.12), ("brow_thickness", 0.035, 0.06), ("nose_size", 0.8, 1.25),
    ("mouth_y", 0.62, 0.74), ("mouth_width", 0.22, 0.32), ("lip_thickness", 0.04, 0.07),
    ("pattern_frequency", 3.0, 9.0), ("pattern_strength", 0.0, 0.12),
)
_COLOURS = ("skin_rgb", "hair_rgb", "iris_rgb", "lip_rgb", "clothing_rgb", "collar_rgb",
            "background_top_rgb", "background_bottom_rgb")
_CATEGORICAL = (("hair_style", HAIR_STYLES), ("collar_style", COLLAR_STYLES),
                ("background_gradient", BACKGROUND_GRADIENTS),
                ("background_pattern", BACKGROUND_PATTERNS))


def identity_code_names() -> tuple[str, ...]:
    """The name of every entry of ``SynthIdentity.identity_code``."""
    names = [name for name, _, _ in _CONTINUOUS]
    names += [f"{c}.{ch}" for c in _COLOURS for ch in "rgb"]
    names += [f"{c}={v}" for c, values in _CATEGORICAL for v in values]
    return tuple(names) + ("symmetric",)


def _identity_code(identity: SynthIdentity) -> np.ndarray:
    values = [(getattr(identity, name) - lo) / (hi - lo) for name, lo, hi in _CONTINUOUS]
    for colour in _COLOURS:
        values.extend(getattr(identity, colour))
    for name, options in _CATEGORICAL:
        values.extend(float(getattr(identity, name) == i) for i in range(len(options)))
    values.append(float(identity.symmetric))
    return np.asarray(values, np.float32)


def _rgb(values) -> RGB:
    r, g, b = (float(np.clip(v, 0.0, 1.0)) for v in values)
    return (r, g, b)


def _random_colour(rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    return rng.uniform(lo, hi, size=3)


def sample_identity(seed: int, identity_id: int, symmetric: bool = False) -> SynthIdentity:
    """The identity ``identity_id`` of the SynthFaces universe ``seed`` (deterministic)."""
    if identity_id < 0:
        raise ValueError(f"sample_identity: identity_id must be >= 0, got {identity_id}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, IDENTITY_STREAM, identity_id]))
    cont = {name: float(rng.uniform(lo, hi)) for name, lo, hi in _CONTINUOUS}
    t = rng.uniform(0.0, len(_SKIN_RAMP) - 1)
    i = min(int(t), len(_SKIN_RAMP) - 2)
    skin = _SKIN_RAMP[i] + (t - i) * (_SKIN_RAMP[i + 1] - _SKIN_RAMP[i])
    skin = skin + rng.uniform(-0.03, 0.03, size=3)
    hair = _HAIR_PALETTE[rng.integers(len(_HAIR_PALETTE))] + rng.uniform(-0.05, 0.05, size=3)
    iris = _IRIS_PALETTE[rng.integers(len(_IRIS_PALETTE))] + rng.uniform(-0.04, 0.04, size=3)
    lip = skin * np.array([0.85, 0.55, 0.55]) + np.array([0.08, 0.0, 0.0])
    clothing = _random_colour(rng, 0.1, 0.9)
    collar = np.where(rng.uniform() < 0.5, np.array([0.95, 0.95, 0.95]), clothing * 0.6)
    bg_top = _random_colour(rng, 0.2, 0.95)
    bg_bottom = np.clip(bg_top * rng.uniform(0.5, 1.1) + rng.uniform(-0.15, 0.15, size=3), 0, 1)
    styles = SYMMETRIC_HAIR_STYLES if symmetric else HAIR_STYLES
    gradients = SYMMETRIC_GRADIENTS if symmetric else BACKGROUND_GRADIENTS
    hair_style = HAIR_STYLES.index(styles[rng.integers(len(styles))])
    gradient = BACKGROUND_GRADIENTS.index(gradients[rng.integers(len(gradients))])
    pattern = int(rng.integers(len(BACKGROUND_PATTERNS)))
    collar_style = int(rng.integers(len(COLLAR_STYLES)))
    if symmetric or HAIR_STYLES[hair_style] != "side_part":
        cont["hair_part"] = 0.0
    return SynthIdentity(
        identity_id=int(identity_id), symmetric=bool(symmetric),
        skin_rgb=_rgb(skin), hair_rgb=_rgb(hair), iris_rgb=_rgb(iris), lip_rgb=_rgb(lip),
        clothing_rgb=_rgb(clothing), collar_rgb=_rgb(collar), background_top_rgb=_rgb(bg_top),
        background_bottom_rgb=_rgb(bg_bottom), hair_style=hair_style, collar_style=collar_style,
        background_gradient=gradient, background_pattern=pattern, **cont)
