"""SynthFaces face texture: skin, hair, nose (static) and eyes, brows, mouth (per frame).

The texture is indexed by frontal head-surface coordinates (see ``synth_render``): ``X`` in
[-2, 2] (front |X| <= 1, the back hemisphere unfolded beside it), ``Y`` in [-b/a, b/a], both
in units of the face half-width ``a``. Features are painted analytically (signed distances
turned into antialiased coverage), each inside its own small region of interest (ROI), so a
motion parameter only changes the texels of its feature. Mirror-image features (eyes, brows)
are painted as one batch of two ROIs that mirror each other about X = 0.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mimaface_jax.data.synth_identity import HAIR_STYLES, SynthIdentity

TEX_PAD = 2                     # texture rows above Y = -b/a (bilinear lookups stay inside)

# Feature shapes (a units): how far the brows rise, the mouth opens, the corners lift.
BROW_RAISE = 0.07
MOUTH_OPEN = 0.22
SMILE_LIFT = 0.08
SMILE_WIDEN = 0.12
GAZE_X = 0.55                   # iris travel: fraction of the eye half-width per unit gaze
GAZE_Y = 0.6

# Colours of the untextured condition render (grey shape, dark outlines, dark irises).
CONDITION_COLOURS = {
    "skin": (0.62, 0.62, 0.62), "sclera": (0.9, 0.9, 0.9), "iris": (0.12, 0.12, 0.12),
    "pupil": (0.0, 0.0, 0.0), "line": (0.08, 0.08, 0.08), "brow": (0.2, 0.2, 0.2),
    "lip": (0.42, 0.42, 0.42), "mouth": (0.05, 0.05, 0.05), "teeth": (0.85, 0.85, 0.85)}
_C = CONDITION_COLOURS


@dataclasses.dataclass(frozen=True)
class TextureGrid:
    """Texel <-> (X, Y) mapping with ``ppu`` texels per a unit."""

    ppu: int
    aspect: float     # b / a

    @property
    def shape(self) -> tuple[int, int]:
        return (int(math.ceil(2 * self.aspect * self.ppu)) + 2 * TEX_PAD, 4 * self.ppu)

    def col(self, x):
        """Continuous texel column of X (texel centres at integers, as cv2.remap reads)."""
        return (x + 2.0) * self.ppu - 0.5

    def row(self, y):
        return (y + self.aspect) * self.ppu - 0.5 + TEX_PAD

    def xs(self, j0: int, j1: int) -> np.ndarray:
        return ((np.arange(j0, j1, dtype=np.float32) + 0.5) / self.ppu - 2.0)[None, :]

    def ys(self, i0: int, i1: int) -> np.ndarray:
        return ((np.arange(i0, i1, dtype=np.float32) + 0.5 - TEX_PAD) / self.ppu
                - self.aspect)[:, None]

    def roi(self, x0: float, x1: float, y0: float, y1: float) -> tuple[int, int, int, int]:
        """Texel bounds (i0, i1, j0, j1) covering [x0, x1] x [y0, y1]."""
        h, w = self.shape
        j0, j1 = max(0, int(math.floor(self.col(x0)))), min(w, int(math.ceil(self.col(x1))) + 1)
        i0, i1 = max(0, int(math.floor(self.row(y0)))), min(h, int(math.ceil(self.row(y1))) + 1)
        return i0, i1, j0, j1


def _cover(distance, ppu):
    """Antialiased coverage of a signed distance (a units, > 0 inside) at ``ppu`` texels/unit."""
    return np.clip(distance * np.float32(ppu) + np.float32(0.5), 0.0, 1.0)


def _paint(rgb, colour, alpha):
    """rgb (..., 3) <- over-composite ``colour`` (3,) or (..., 3) with coverage alpha (...)."""
    rgb += (np.asarray(colour, np.float32) - rgb) * alpha[..., None]


def _smoothstep(lo, hi, x):
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _scaled(colour, factor):
    return tuple(factor * c for c in colour)


# ------------------------------------------------------------------------------ static part


def _hair_limit(identity: SynthIdentity, x, nx):
    """The unit-sphere y above which (smaller y) the surface is hair, per texture X."""
    i = identity
    style = HAIR_STYLES[i.hair_style]
    ax = np.abs(x)
    side_y = (i.eye_y + 0.05) / i.face_aspect           # sideburns reach eye level
    nape_y = {"long": 1.5, "bald": 0.35}.get(style, 0.3)
    front = i.hairline / i.face_aspect + 0.45 * x * x + i.hair_part * x
    if style == "fringe":
        brow_top = i.eye_y - i.eye_height - i.brow_gap - BROW_RAISE - i.brow_thickness
        front = (brow_top - 0.05) / i.face_aspect + 0.12 * x * x
    elif style == "spiky":
        front = front + 0.07 * (0.5 + 0.5 * np.cos(10.0 * np.pi * x))
    elif style == "bald":
        front = np.full_like(x, -2.0)
    side = -2.0 + (side_y + 2.0) * _smoothstep(0.72, 0.98, ax)
    limit = np.maximum(front, side)
    return np.where(ax <= 1.0, limit, side_y + (nape_y - side_y) * _smoothstep(1.0, 1.25, ax))


def _segment_distance(x, y, p, q):
    """Distance of points (x, y) to the segment p-q."""
    px, py = p
    dx, dy = q[0] - px, q[1] - py
    t = np.clip(((x - px) * dx + (y - py) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(x - px - t * dx, y - py - t * dy)


def _paint_nose(rgb, i: SynthIdentity, x, y, ppu, condition):
    s = i.nose_size
    tip = i.eye_y + 0.55 * (i.mouth_y - i.eye_y)
    shade = _C["line"] if condition else _scaled(i.skin_rgb, 0.72)
    dark = _C["line"] if condition else _scaled(i.skin_rgb, 0.45)
    for side in (-1.0, 1.0):
        ridge = _segment_distance(x, y, (side * 0.05 * s, i.eye_y + 0.08),
                                  (side * 0.1 * s, tip - 0.02 * s))
        _paint(rgb, shade, 0.8 * _cover(0.012 * s - ridge, ppu))
        wing = _segment_distance(x, y, (side * 0.1 * s, tip - 0.02 * s), (side * 0.03 * s, tip))
        _paint(rgb, shade, 0.8 * _cover(0.012 * s - wing, ppu))
        nostril = np.hypot((x - side * 0.055 * s) / 1.6, y - tip) - 0.016 * s
        _paint(rgb, dark, _cover(-nostril, ppu))


def static_texture(identity: SynthIdentity, grid: TextureGrid, condition: bool) -> np.ndarray:
    """Skin, hair, nose and the jaw cut-out (alpha) of one identity. (Ht, Wt, 4) float32.

    ``condition``: the untextured version (uniform grey, no hair, dark nose lines).
    """
    i = identity
    h, w = grid.shape
    x, y = grid.xs(0, w), grid.ys(0, h)
    ax = np.abs(x)
    nx = np.where(ax <= 1.0, x, np.sign(x) * (2.0 - ax))
    ny = y / i.face_aspect
    ppu = grid.ppu
    tex = np.zeros((h, w, 4), np.float32)
    rgb = tex[..., :3]
    rgb[...] = _C["skin"] if condition else i.skin_rgb
    if not condition:
        for side in (-1.0, 1.0):  # cheeks
            d = np.hypot(x - side * 0.45, y - (i.mouth_y - 0.15)) / 0.22
            _paint(rgb, (0.85, 0.35, 0.35), 0.12 * np.clip(1.0 - d, 0.0, 1.0) * (ax <= 1.0))
        hair_alpha = _cover((_hair_limit(i, x, nx) - ny) * i.face_aspect, ppu)
        if HAIR_STYLES[i.hair_style] == "bald":
            hair_alpha = hair_alpha * _cover((ny + 0.25) * i.face_aspect, ppu)
        # Strands vary with n_x (not X) so the front and back halves agree over the crown.
        strands = 0.9 + 0.1 * np.cos(30.0 * nx) * np.ones_like(y)
        hair = np.asarray(i.hair_rgb, np.float32) * strands[..., None]
        rgb += (hair - rgb) * hair_alpha[..., None]
    _paint_nose(rgb, i, x, y, ppu, condition)
    # Alpha: the jaw narrows towards the chin; the lower back of the head is cut away (neck).
    jaw_start = (i.mouth_y - 0.35) / i.face_aspect
    keep = 1.0 - (1.0 - i.jaw_width) * _smoothstep(jaw_start, 1.0, ny)
    half = np.sqrt(np.clip(1.0 - ny * ny, 0.0, 1.0)) * keep
    front_alpha = _cover(half - np.abs(nx), ppu)
    back_alpha = _cover((0.25 - ny) * i.face_aspect, ppu)
    tex[..., 3] = np.where(ax <= 1.0, front_alpha, back_alpha)
    return tex


# ---------------------------------------------------------------------------- dynamic part


def _mirrored_rois(tex, grid: TextureGrid, bounds):
    """The ROI ``bounds`` (left of X = 0) and its mirror image, stacked. (2, h, w, 3), x"""
    i0, i1, j0, j1 = bounds
    w = tex.shape[1]
    rgb = np.stack([tex[i0:i1, j0:j1, :3], tex[i0:i1, w - j1:w - j0, :3]])
    x = grid.xs(j0, j1)
    return rgb, np.stack([x, -x[:, ::-1]]), grid.ys(i0, i1)


def _store_mirrored(tex, bounds, rgb):
    i0, i1, j0, j1 = bounds
    w = tex.shape[1]
    tex[i0:i1, j0:j1, :3] = rgb[0]
    tex[i0:i1, w - j1:w - j0, :3] = rgb[1]


def eye_bounds(i: SynthIdentity, grid: TextureGrid):
    """Texel ROI of the image-left eye (the right one is its mirror)."""
    ex, ey, ew, eh = -i.eye_spacing, i.eye_y, i.eye_width, i.eye_height
    margin = 3.0 / grid.ppu + 0.02
    return grid.roi(ex - ew - margin, ex + ew + margin, ey - eh - margin, ey + eh + margin)


def paint_eyes(tex, grid: TextureGrid, i: SynthIdentity, gaze: np.ndarray, blink: float,
               condition: bool) -> None:
    """Both eyes: sclera, iris / pupil at ``gaze`` (4,), eyelid closed by ``blink``."""
    bounds = eye_bounds(i, grid)
    rgb, x, y = _mirrored_rois(tex, grid, bounds)
    ppu = grid.ppu
    ex = np.array([-i.eye_spacing, i.eye_spacing], np.float32)[:, None, None]
    ey, ew, eh = np.float32(i.eye_y), np.float32(i.eye_width), np.float32(i.eye_height)
    u = (x - ex) / ew
    arc = np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
    top, bottom = ey - eh * arc, ey + np.float32(0.8) * eh * arc
    lid = top + np.float32(blink) * (bottom - top)
    inside_x = _cover((1.0 - np.abs(u)) * ew, ppu)
    white = _cover(np.minimum(y - lid, bottom - y), ppu) * inside_x
    _paint(rgb, _C["sclera"] if condition else (0.95, 0.94, 0.92), white)
    gaze = np.asarray(gaze, np.float32).reshape(2, 2)
    cx = ex + np.float32(GAZE_X) * ew * gaze[:, 0, None, None]
    cy = ey + np.float32(GAZE_Y) * eh * gaze[:, 1, None, None]
    r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    _paint(rgb, _C["iris"] if condition else i.iris_rgb,
           white * _cover(i.iris_radius - r, ppu))
    _paint(rgb, _C["pupil"] if condition else (0.03, 0.03, 0.03),
           white * _cover(0.45 * i.iris_radius - r, ppu))
    if not condition:
        _paint(rgb, _scaled(i.skin_rgb, 0.85), _cover(np.minimum(lid - y, y - top), ppu) *
               inside_x)
    _paint(rgb, _C["line"] if condition else (0.1, 0.07, 0.06),
           _cover(0.016 - np.abs(y - lid), ppu) * inside_x)
    _store_mirrored(tex, bounds, rgb)


def paint_brows(tex, grid: TextureGrid, i: SynthIdentity, raise_: float,
                condition: bool) -> None:
    """Both brows, raised by ``raise_`` (0..1), the inner ends a little more."""
    inner, outer = -(i.eye_spacing - i.eye_width), -(i.eye_spacing + 1.15 * i.eye_width)
    centre, half = 0.5 * (inner + outer), 0.5 * (inner - outer)
    base = i.eye_y - i.eye_height - i.brow_gap
    margin = 3.0 / grid.ppu + i.brow_thickness
    bounds = grid.roi(centre - half - margin, centre + half + margin,
                      base - BROW_RAISE - 0.05 - margin, base + margin)
    rgb, x, y = _mirrored_rois(tex, grid, bounds)
    u = (np.abs(x) - abs(centre)) / half            # -1 at the inner end, +1 at the outer end
    curve = base - 0.03 * (1.0 - u * u) - raise_ * (BROW_RAISE + 0.01 * (1.0 - u))
    thickness = i.brow_thickness * (1.0 - 0.45 * u * u) * 0.5
    alpha = _cover(thickness - np.abs(y - curve), grid.ppu) * _cover((1 - np.abs(u)) * half,
                                                                     grid.ppu)
    _paint(rgb, _C["brow"] if condition else _scaled(i.hair_rgb, 0.75), alpha)
    _store_mirrored(tex, bounds, rgb)


def mouth_bounds(i: SynthIdentity, grid: TextureGrid):
    """Texel ROI that every mouth shape stays inside."""
    w_max = i.mouth_width * (1.0 + SMILE_WIDEN)
    margin = 3.0 / grid.ppu + 0.01
    return grid.roi(-w_max - margin, w_max + margin,
                    i.mouth_y - SMILE_LIFT - 0.25 * MOUTH_OPEN - i.lip_thickness - margin,
                    i.mouth_y + 0.75 * MOUTH_OPEN + 1.1 * i.lip_thickness + margin)


def paint_mouth(tex, grid: TextureGrid, i: SynthIdentity, open_: float, smile: float,
                condition: bool) -> None:
    """Lips, dark interior and a row of teeth; ``smile`` widens and lifts the corners."""
    i0, i1, j0, j1 = mouth_bounds(i, grid)
    rgb = tex[i0:i1, j0:j1, :3].copy()
    x, y = grid.xs(j0, j1), grid.ys(i0, i1)
    ppu, lt = grid.ppu, i.lip_thickness
    w = i.mouth_width * (1.0 + SMILE_WIDEN * smile)
    u = x / np.float32(w)
    e = np.clip(1.0 - u * u, 0.0, 1.0)
    root_e = np.sqrt(e)
    centre = i.mouth_y - SMILE_LIFT * smile * u * u
    gap = np.float32(MOUTH_OPEN * open_) * e
    inner_top, inner_bottom = centre - 0.25 * gap, centre + 0.75 * gap
    inside_x = _cover((1.0 - np.abs(u)) * w, ppu)
    lips = _cover(np.minimum(y - (inner_top - 0.85 * lt * root_e),
                             (inner_bottom + 1.1 * lt * root_e) - y), ppu) * inside_x
    _paint(rgb, _C["lip"] if condition else i.lip_rgb, lips)
    hole = _cover(np.minimum(y - inner_top, inner_bottom - y), ppu) * inside_x
    _paint(rgb, _C["mouth"] if condition else (0.22, 0.04, 0.05), hole)
    teeth = hole * _cover(np.minimum(inner_top + np.minimum(0.05, 0.4 * gap) - y,
                                     y - inner_top), ppu)
    _paint(rgb, _C["teeth"] if condition else (0.93, 0.91, 0.86), teeth)
    tex[i0:i1, j0:j1, :3] = rgb
