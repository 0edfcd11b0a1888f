"""SynthFaces rasteriser: a textured ellipsoid head ray-cast per pixel over a 2-D body.

Geometry. The head is an ellipsoid (semi-axes ``a, b, c`` px) in a head frame with x right,
y down, z towards the viewer. It is rotated by ``R = R_roll @ R_pitch @ R_yaw`` (signs in
``synth_motion``), scaled and translated, and projected orthographically: an image point is
``centre + (R q)[:2]``. Every facial feature is painted, per frame, into a texture over the
frontal coordinates of the head surface (``synth_texture``), so that the projection (shift,
foreshortening, occlusion) comes from one place: each pixel's ray is intersected with the
ellipsoid, the hit point is looked up in the texture and shaded by the camera-facing
component of its unit-sphere normal (0.6 + 0.4 n_z). Ears, neck, long hair and the torso
are 2-D polygons placed at projected 3-D anchors. Images are drawn at ``supersample`` x the
resolution and area-averaged down (antialiasing).

Texture coordinates. A surface point with unit-sphere coordinates ``n = q / (a, b, c)`` has
``X = n_x`` on the front (``n_z >= 0``) and ``X = sign(n_x) (2 - |n_x|)`` on the back (the
back hemisphere unfolded beside the front), ``Y = n_y * b / a``; so on the front a feature at
``(X, Y)`` sits where the frontal view shows it, in units of the face half-width ``a``.

Pixel convention: pixel (i, j) covers [j, j + 1) x [i, i + 1); its centre is (j + 0.5, i + 0.5).
A horizontal flip maps x to width - x, so a mirror-symmetric scene renders mirror-symmetric.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import cv2
import numpy as np

from mimaface_jax.data import synth_motion as sm
from mimaface_jax.data import synth_texture as st
from mimaface_jax.data.synth_identity import (BACKGROUND_GRADIENTS, BACKGROUND_PATTERNS,
                                              COLLAR_STYLES, HAIR_STYLES, SynthIdentity)

DEFAULT_SUPERSAMPLE = 2
_SHIFT = 4                      # cv2 sub-pixel bits for polygon vertices
_TEXELS_PER_PIXEL = 1.3         # texture density relative to canvas pixels at the largest scale
_CIRCLE = np.stack([np.cos(np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)),
                    np.sin(np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False))], 1)  # (48, 2)


# ----------------------------------------------------------------------------------- pose


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head -> camera rotation (degrees in, (3, 3) out); see the module docstring."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    r_yaw = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    r_pitch = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    r_roll = np.array([[math.cos(r), math.sin(r), 0], [-math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return r_roll @ r_pitch @ r_yaw


@dataclasses.dataclass(frozen=True)
class HeadPose:
    """Where the head is in an image of ``size`` px: centre (x, y), semi-axes, rotation."""

    centre: np.ndarray      # (2,)
    axes: np.ndarray        # (3,) a, b, c
    rotation: np.ndarray    # (3, 3)


def head_pose(identity: SynthIdentity, motion: np.ndarray, size: float) -> HeadPose:
    """The head placement for ``motion`` (14,) in a ``size`` x ``size`` image."""
    scale = identity.face_size * size * math.exp(float(motion[sm.LOG_SCALE]))
    axes = scale * np.array([1.0, identity.face_aspect, identity.face_depth])
    centre = np.array([size * (0.5 + float(motion[sm.TX])),
                       size * (identity.head_height + float(motion[sm.TY]))])
    rot = rotation_matrix(float(motion[sm.YAW]), float(motion[sm.PITCH]),
                          float(motion[sm.ROLL]))
    return HeadPose(centre=centre, axes=axes, rotation=rot)


def surface_point(identity: SynthIdentity, x: float, y: float) -> np.ndarray:
    """The unit-sphere point of frontal feature coordinates (x, y) (a units). (3,)"""
    nx, ny = x, y / identity.face_aspect
    nz = math.sqrt(max(0.0, 1.0 - nx * nx - ny * ny))
    return np.array([nx, ny, nz])


def project(pose: HeadPose, unit_points: np.ndarray) -> np.ndarray:
    """Unit-sphere head points (N, 3) -> image points (N, 2)."""
    return pose.centre + (unit_points * pose.axes) @ pose.rotation.T[:, :2]


def feature_anchors(identity: SynthIdentity) -> dict[str, np.ndarray]:
    """Unit-sphere anchor of every named feature; "left" is the image-left one when frontal."""
    i = identity
    nose_y = i.eye_y + 0.55 * (i.mouth_y - i.eye_y)
    brow_y = i.eye_y - i.eye_height - i.brow_gap
    pts = {"eye_left": (-i.eye_spacing, i.eye_y), "eye_right": (i.eye_spacing, i.eye_y),
           "brow_left": (-i.eye_spacing, brow_y), "brow_right": (i.eye_spacing, brow_y),
           "nose": (0.0, nose_y), "mouth": (0.0, i.mouth_y),
           "mouth_corner_left": (-i.mouth_width, i.mouth_y),
           "mouth_corner_right": (i.mouth_width, i.mouth_y), "chin": (0.0, i.face_aspect)}
    out = {k: surface_point(i, x, y) for k, (x, y) in pts.items()}
    out["head_center"] = np.zeros(3)
    return out


def project_anchors(identity: SynthIdentity, motion: np.ndarray,
                    resolution: int) -> dict[str, np.ndarray]:
    """Image position (x, y) in output pixels of every feature anchor under ``motion``."""
    motion = _check_motion(motion)
    pose = head_pose(identity, motion, resolution)
    anchors = feature_anchors(identity)
    names = list(anchors)
    pts = project(pose, np.stack([anchors[n] for n in names]))
    return dict(zip(names, pts))


# ------------------------------------------------------------------------------ ray casting


def _draw_head(canvas: np.ndarray, pose: HeadPose, texture: np.ndarray,
               grid: st.TextureGrid) -> None:
    """Ray-casts the textured ellipsoid into ``canvas`` (Hc, Wc, 3) uint8, in place."""
    hc, wc = canvas.shape[:2]
    cx, cy = pose.centre
    # Half-extent of the projected ellipsoid: sqrt of the diagonal of (R D)(R D)^T.
    rd = pose.rotation * pose.axes[None, :]
    half = np.sqrt((rd[:2] ** 2).sum(1))
    x0, x1 = max(0, int(math.floor(cx - half[0])) - 1), min(wc, int(math.ceil(cx + half[0])) + 1)
    y0, y1 = max(0, int(math.floor(cy - half[1])) - 1), min(hc, int(math.ceil(cy + half[1])) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    # Unit-sphere point of the ray through (u, v) at depth t: n = m @ (u - cx, v - cy, t).
    m = pose.rotation.T / pose.axes[:, None]
    du = np.arange(x0, x1, dtype=np.float64) + (0.5 - cx)   # (w,)
    dv = np.arange(y0, y1, dtype=np.float64) + (0.5 - cy)   # (h,)

    def plane(coef, const=0.0):  # coef . (du, dv) + const as (h, w) float32
        return ((coef[0] * du + const).astype(np.float32)[None, :]
                + (coef[1] * dv).astype(np.float32)[:, None])

    qa = float(m[:, 2] @ m[:, 2])
    beta = plane(m[:, 2] @ m[:, :2])
    gamma = (((m[:, 0] @ m[:, 0]) * du * du - 1.0).astype(np.float32)[None, :]
             + ((m[:, 1] @ m[:, 1]) * dv * dv).astype(np.float32)[:, None]
             + (2.0 * (m[:, 0] @ m[:, 1]) * du).astype(np.float32)[None, :]
             * dv.astype(np.float32)[:, None])
    disc = beta * beta - np.float32(qa) * gamma
    t = (np.sqrt(np.maximum(disc, 0.0)) - beta) * np.float32(1.0 / qa)

    def linear(coef, const=0.0):  # coef . (du, dv, t) + const
        return plane(coef[:2], const) + np.float32(coef[2]) * t

    ppu = grid.ppu
    shade = linear(0.4 * 255.0 * (pose.rotation[2] @ m), 0.6 * 255.0)  # 255 (0.6 + 0.4 n_z)
    nz = linear(m[2])
    sx = linear(ppu * m[0])                                  # ppu * n_x
    back = np.float32(2 * ppu) * np.sign(sx) - sx            # unfolded back hemisphere
    map_x = np.where(nz >= 0.0, sx, back) + np.float32(2 * ppu - 0.5)
    map_y = linear(ppu * grid.aspect * m[1], grid.aspect * ppu - 0.5 + st.TEX_PAD)
    sample = cv2.remap(texture, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)      # (h, w, 4)
    alpha = sample[..., 3] * (disc > 0.0)
    colour = sample[..., :3] * np.maximum(shade, np.float32(0.6 * 255.0))[..., None]
    roi = canvas[y0:y1, x0:x1].astype(np.float32)
    roi += (colour - roi) * alpha[..., None]
    canvas[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- body layers


def _cv_points(points: np.ndarray) -> np.ndarray:
    """Continuous canvas points (N, 2) -> cv2 fixed-point vertices (pixel centres at +0.5)."""
    return np.round((np.asarray(points, np.float64) - 0.5) * (1 << _SHIFT)).astype(np.int32)


def _fill(canvas, points, colour255):
    cv2.fillPoly(canvas, [_cv_points(points)], colour255, lineType=cv2.LINE_AA, shift=_SHIFT)


def _colour255(colour, factor=1.0):
    return tuple(255.0 * factor * c for c in colour)


def _torso_shapes(identity: SynthIdentity) -> tuple:
    """Torso and collar polygons in a units relative to the head centre, with colours."""
    i = identity
    base = 1.15 * i.face_aspect                       # neck base below the head centre
    t = np.linspace(np.pi, 2.0 * np.pi, 33)
    shoulders = np.stack([np.sign(np.cos(t)) * np.abs(np.cos(t)) ** (2 / 3) * 2.8,
                          base + 0.9 - np.abs(np.sin(t)) ** (2 / 3) * 0.9], 1)
    torso = np.concatenate([[[-2.8, 10.0]], shoulders, [[2.8, 10.0]]])
    neck, collar = _colour255(i.skin_rgb, 0.8), _colour255(i.collar_rgb)
    shapes = [(torso, _colour255(i.clothing_rgb))]
    style = COLLAR_STYLES[i.collar_style]
    if style == "round":
        shapes += [(_CIRCLE * (0.8, 0.45) + (0.0, base), collar),
                   (_CIRCLE * (0.55, 0.3) + (0.0, base), neck)]
    elif style == "v_neck":
        shapes += [(np.array([[-0.75, -0.05], [0.75, -0.05], [0.0, 1.0]]) + (0.0, base), collar),
                   (np.array([[-0.5, -0.05], [0.5, -0.05], [0.0, 0.7]]) + (0.0, base), neck)]
    else:
        shapes += [(np.array([[-0.5, -0.05], [0.5, -0.05], [0.0, 0.6]]) + (0.0, base), neck)]
        for side in (-1.0, 1.0):
            shapes.append((np.array([[side * 0.55, -0.12], [0.0, 0.6], [side * 0.8, 0.45]])
                           + (0.0, base), collar))
    return tuple(shapes)


def _draw_body(canvas, identity: SynthIdentity, pose: HeadPose, shapes: tuple,
               roll_deg: float) -> None:
    """Long hair, neck, torso, collar and ears behind the head (canvas px), in place."""
    i = identity
    a = pose.axes[0]
    centre = pose.centre
    c, s = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    turn = np.array([[c, -s], [s, c]])    # row-vector rotation by the roll (counter-clockwise)
    long_hair = HAIR_STYLES[i.hair_style] == "long"
    if long_hair:
        rd = pose.rotation[:2] * pose.axes[None, :]
        ring = centre + 1.12 * _CIRCLE @ np.linalg.cholesky(rd @ rd.T).T
        ends = centre + (a * np.array([[-1.25, 1.9], [1.25, 1.9]])) @ turn
        hull = cv2.convexHull(np.concatenate([ring, ends]).astype(np.float32))[:, 0]
        _fill(canvas, hull, _colour255(i.hair_rgb, 0.8))
    base_y = centre[1] + 1.15 * pose.axes[1]
    top = project(pose, np.array([[-0.42, 0.55, -0.1], [0.42, 0.55, -0.1]]))
    _fill(canvas, np.array([top[0], top[1], [centre[0] + 0.45 * a, base_y + 0.3 * a],
                            [centre[0] - 0.45 * a, base_y + 0.3 * a]]),
          _colour255(i.skin_rgb, 0.8))
    for unit, colour in shapes:
        _fill(canvas, centre + a * unit, colour)
    if not long_hair:
        ny = (i.eye_y + 0.12) / i.face_aspect
        nx = math.sqrt(max(0.0, 1.0 - ny * ny)) * 0.97
        ears = project(pose, np.array([[-nx, ny, -0.1], [nx, ny, -0.1]]))
        outer = (_CIRCLE * (0.17 * a, 0.28 * a)) @ turn
        inner = (_CIRCLE * (0.08 * a, 0.16 * a)) @ turn
        for ear in ears:
            _fill(canvas, ear + outer, _colour255(i.skin_rgb, 0.88))
            _fill(canvas, ear + inner, _colour255(i.skin_rgb, 0.7))


def _background(identity: SynthIdentity, size: int) -> np.ndarray:
    """The identity's backdrop: a gradient times an optional pattern. (size, size, 3) uint8"""
    i = identity
    x = ((np.arange(size) + 0.5) / size - 0.5)[None, :]
    y = ((np.arange(size) + 0.5) / size)[:, None]
    kind = BACKGROUND_GRADIENTS[i.background_gradient]
    if kind == "vertical":
        t = y + 0.0 * x
    elif kind == "radial":
        t = np.clip(np.hypot(x, y - 0.4) / 0.75, 0.0, 1.0)
    else:
        t = 0.5 * (x + 0.5 + y)
    top, bottom = np.asarray(i.background_top_rgb), np.asarray(i.background_bottom_rgb)
    colour = top + (bottom - top) * t[..., None]
    pattern = BACKGROUND_PATTERNS[i.background_pattern]
    wave_x = np.cos(2.0 * np.pi * i.pattern_frequency * x)
    if pattern == "stripes":
        colour = colour * (1.0 + i.pattern_strength * wave_x)[..., None]
    elif pattern == "dots":
        wave_y = np.cos(2.0 * np.pi * i.pattern_frequency * y)
        dots = np.clip((wave_x * wave_y - 0.5) * 4.0, 0.0, 1.0)
        colour = colour * (1.0 - 1.5 * i.pattern_strength * dots)[..., None]
    return np.clip(colour * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------- frames


@dataclasses.dataclass(frozen=True)
class _Assets:
    """Everything about one identity at one canvas size that no motion changes."""

    background: np.ndarray   # (Hc, Wc, 3) uint8
    texture: np.ndarray      # (Ht, Wt, 4) float32: skin, hair, nose, jaw alpha
    grid: st.TextureGrid
    body: tuple              # torso / collar polygons (a units) and colours


@functools.lru_cache(maxsize=32)
def _assets(identity: SynthIdentity, canvas_size: int, condition: bool) -> _Assets:
    max_a = identity.face_size * canvas_size * math.exp(float(sm.RANGES[sm.LOG_SCALE, 1]))
    grid = st.TextureGrid(ppu=max(8, int(math.ceil(_TEXELS_PER_PIXEL * max_a))),
                          aspect=identity.face_aspect)
    background = (np.zeros((canvas_size, canvas_size, 3), np.uint8) if condition
                  else _background(identity, canvas_size))
    return _Assets(background=background, texture=st.static_texture(identity, grid, condition),
                   grid=grid, body=() if condition else _torso_shapes(identity))


def _check_motion(motion) -> np.ndarray:
    motion = np.asarray(motion, np.float32)
    if motion.shape != (sm.MOTION_SIZE,):
        raise ValueError(f"SynthFaces motion must have shape ({sm.MOTION_SIZE},) in layout "
                         f"{sm.SYNTH_LAYOUT_VERSION!r}, got {motion.shape}")
    if not np.all(np.isfinite(motion)):
        raise ValueError(f"SynthFaces motion has non-finite values: {motion}")
    return motion


def _check_resolution(resolution: int, supersample: int) -> None:
    if not isinstance(resolution, (int, np.integer)) or resolution < 16:
        raise ValueError(f"SynthFaces resolution must be an integer >= 16, got {resolution!r}")
    if not isinstance(supersample, (int, np.integer)) or supersample < 1:
        raise ValueError(f"SynthFaces supersample must be an integer >= 1, got {supersample!r}")


def _render(identity, motion, resolution, supersample, condition) -> np.ndarray:
    motion = _check_motion(motion)
    _check_resolution(resolution, supersample)
    size = int(resolution) * int(supersample)
    assets = _assets(identity, size, condition)
    canvas = assets.background.copy()
    pose = head_pose(identity, motion, size)
    if not condition:
        _draw_body(canvas, identity, pose, assets.body, float(motion[sm.ROLL]))
    texture = assets.texture.copy()
    st.paint_eyes(texture, assets.grid, identity, motion[sm.GAZE], float(motion[sm.BLINK]),
                  condition)
    st.paint_brows(texture, assets.grid, identity, float(motion[sm.BROWS]), condition)
    st.paint_mouth(texture, assets.grid, identity, float(motion[sm.MOUTH_OPEN]),
                   float(motion[sm.SMILE]), condition)
    _draw_head(canvas, pose, texture, assets.grid)
    if supersample == 1:
        return canvas
    return cv2.resize(canvas, (int(resolution), int(resolution)), interpolation=cv2.INTER_AREA)


def render_frame(identity: SynthIdentity, motion: np.ndarray, resolution: int = 64, *,
                 supersample: int = DEFAULT_SUPERSAMPLE) -> np.ndarray:
    """The RGB frame of ``identity`` under ``motion`` (14,). (resolution, resolution, 3) uint8"""
    return _render(identity, motion, resolution, supersample, condition=False)


def render_condition(identity: SynthIdentity, motion: np.ndarray, resolution: int = 64, *,
                     supersample: int = DEFAULT_SUPERSAMPLE) -> np.ndarray:
    """The untextured shape render (grey head, dark features, black background). (H, W, 3)"""
    return _render(identity, motion, resolution, supersample, condition=True)


def render_frames(identity: SynthIdentity, motions: np.ndarray, resolution: int = 64, *,
                  condition: bool = False, supersample: int = DEFAULT_SUPERSAMPLE) -> np.ndarray:
    """Frames of ``identity`` for motions (T, 14). (T, H, W, 3) uint8"""
    motions = np.asarray(motions, np.float32)
    if motions.ndim != 2:
        raise ValueError(f"render_frames: motions must be (T, {sm.MOTION_SIZE}), "
                         f"got shape {motions.shape}")
    out = np.empty((motions.shape[0], resolution, resolution, 3), np.uint8)
    for k, motion in enumerate(motions):
        out[k] = _render(identity, motion, resolution, supersample, condition)
    return out
