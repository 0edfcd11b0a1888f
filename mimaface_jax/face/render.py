"""The motion condition image: the source's face shape, re-posed by the driving motion, rendered.

The source's canonical-frame shape (468 points, template units, see ``canonical.py``) plus the
driving expression (PCA reconstruction) is mapped to pixels by the driving head pose
(``pose.similarity_from_pose`` on a ``size`` x ``size`` canvas) and rasterised as a grey
Lambert-shaded triangle mesh (painter's algorithm: triangles filled far to near with
``cv2.fillPoly``; lips and eyebrows tinted), on black. The eye openings are filled white with a
dark iris disc placed by the gaze numbers (the exact inverse of ``gaze.compute_gaze``), clipped
to the eyelids, drawn at the depth of the eyeball so that a nose in front hides it.
numpy / cv2 only; deterministic (same inputs -> same bytes).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from mimaface_jax.face import canonical
from mimaface_jax.face import gaze as gaze_lib
from mimaface_jax.face import pose as pose_lib
from mimaface_jax.face.motion_layout import MotionLayout

SKIN = np.array([200.0, 200.0, 200.0])
LIPS = np.array([210.0, 110.0, 110.0])
BROWS = np.array([110.0, 90.0, 70.0])
SCLERA = (235, 235, 235)
IRIS = (40, 30, 90)
# Direction toward the light (camera frame: x right, y down, z away): front, a bit above-left.
LIGHT = np.array([-0.3, -0.4, -1.0]) / np.linalg.norm([-0.3, -0.4, -1.0])
AMBIENT = 0.3
# Iris radius / eye width, measured on the template (FaceMesh iris rings): 0.201.
DEFAULT_IRIS_RATIO = 0.2
_SHIFT = 4  # cv2 sub-pixel bits for polygon vertices


@functools.lru_cache(maxsize=None)
def _triangle_colours() -> np.ndarray:
    """(n, 3) skin / lip / brow colours; lips = triangles inside the outer lip contour, brows =
    triangles spanned by eyebrow points (both judged on the template)."""
    sets = canonical.index_sets()
    tris = canonical.triangles()
    colours = np.broadcast_to(SKIN, tris.shape).copy()
    brows = np.zeros(canonical.NUM_POINTS, bool)
    brows[sets["left_eyebrow"]] = brows[sets["right_eyebrow"]] = True
    colours[brows[tris].all(1)] = BROWS
    pts = canonical.template_points()
    outer = pts[canonical.lip_contours()["outer"], :2].astype(np.float32)
    for i, centre in enumerate(pts[tris, :2].mean(1)):
        if cv2.pointPolygonTest(outer, (float(centre[0]), float(centre[1])), False) > 0:
            colours[i] = LIPS
    colours.flags.writeable = False
    return colours


def _iris_ratio(shape: np.ndarray) -> float:
    """Iris radius over eye width from a 478-point shape, else the template's value."""
    if shape.shape[0] < canonical.NUM_POINTS:
        return DEFAULT_IRIS_RATIO
    ratios = []
    for _, a, b, iris in gaze_lib.EYES:
        r = np.linalg.norm(shape[list(iris[1:])] - shape[iris[0]], axis=1).mean()
        ratios.append(r / np.linalg.norm(shape[a] - shape[b]))
    return float(np.mean(ratios))


def render_condition(source_shape: np.ndarray, expression: np.ndarray | None = None,
                     basis=None, pose: dict | None = None, gaze: np.ndarray | None = None,
                     size: int = 512) -> np.ndarray:
    """Render the re-posed source face.

    Args:
      source_shape: (468|478, 3) canonical-frame shape of the source (template units), e.g.
        ``expression.canonical_shapes(landmarks)[0]`` or a neutral shape.
      expression: (k,) PCA coefficients of ``basis`` (an ``ExpressionPCA``), added to the
        shape; None = the shape as is.
      pose: {"yaw", "pitch", "roll" (degrees), "translation" (2,), "log_scale"} as in
        ``pose.py``; None = frontal, centred, face RMS radius 0.25 of the image.
      gaze: (4,) gaze numbers (``gaze.py``); None = the source's own irises (478 points) or
        centred irises.
      size: output side in pixels.
    Returns: (size, size, 3) uint8 RGB.
    """
    shape = np.asarray(source_shape, np.float64)
    if shape.ndim != 2 or shape.shape[1] != 3 or shape.shape[0] not in (468, 478):
        raise ValueError(f"source_shape must be (468|478, 3) canonical points, got {shape.shape}")
    if not np.isfinite(shape).all():
        raise ValueError("source_shape has NaN/inf points (no face in the source?)")
    if int(size) < 8:
        raise ValueError(f"render size must be >= 8 pixels, got {size}")
    size = int(size)
    face = shape[:canonical.NUM_FACE_POINTS].copy()
    if expression is not None:
        if basis is None:
            raise ValueError("expression coefficients given without an expression basis")
        face += basis.reconstruct(np.asarray(expression, np.float64)).reshape(-1, 3)
    pose = {} if pose is None else dict(pose)
    unknown = set(pose) - {"yaw", "pitch", "roll", "translation", "log_scale"}
    if unknown:
        raise ValueError(f"unknown pose keys {sorted(unknown)}")
    scale, rotation, offset = pose_lib.similarity_from_pose(
        pose.get("yaw", 0.0), pose.get("pitch", 0.0), pose.get("roll", 0.0),
        pose.get("translation", (0.0, 0.0)), pose.get("log_scale", np.log(0.25)),
        (size, size))
    if not all(np.isfinite(v).all() for v in (scale, rotation, offset)):
        raise ValueError(f"pose has NaN/inf values: {pose}")
    pts = scale * face @ rotation.T + offset  # (468, 3) pixels, z away from the camera

    tris = canonical.triangles()
    colours = _triangle_colours()
    a, b, c = pts[tris[:, 0]], pts[tris[:, 1]], pts[tris[:, 2]]
    normals = np.cross(b - a, c - a)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    shade = AMBIENT + (1 - AMBIENT) * np.abs(normals @ LIGHT)
    fill = np.clip(np.round(colours * shade[:, None]), 0, 255).astype(np.int64)
    depth = pts[tris].mean(1)[:, 2]

    # The eyes, drawn at the eyeball depth (behind the lids).
    if gaze is None:
        if shape.shape[0] == canonical.NUM_POINTS:
            own = np.concatenate([face, shape[canonical.NUM_FACE_POINTS:]])
            gaze = gaze_lib.compute_gaze(own)
        else:
            gaze = np.zeros(4)
    gaze = np.asarray(gaze, np.float64).reshape(-1)
    if gaze.shape != (4,) or not np.isfinite(gaze).all():
        raise ValueError(f"gaze must be 4 finite numbers, got {gaze}")
    centres = gaze_lib.iris_centres_from_gaze(pts[:, :2], gaze)
    ratio = _iris_ratio(shape)
    contours = canonical.eye_contours()
    eye_items = []
    for name, a_idx, b_idx, _ in gaze_lib.EYES:
        width3d = np.linalg.norm(pts[a_idx] - pts[b_idx])
        ring = pts[contours[name]]
        eye_depth = ring[:, 2].mean() + 0.1 * width3d
        eye_items.append((eye_depth, ring[:, :2], centres[name], ratio * width3d))

    canvas = np.zeros((size, size, 3), np.uint8)
    depths = np.concatenate([depth, [e[0] for e in eye_items]])
    order = np.argsort(-depths, kind="stable")  # far to near
    fixed = np.round(pts[:, :2] * (1 << _SHIFT)).astype(np.int32)
    n_tri = len(tris)
    for i in order:
        if i < n_tri:
            colour = tuple(int(v) for v in fill[i])
            cv2.fillPoly(canvas, [fixed[tris[i]][:, None, :]], colour, cv2.LINE_8, _SHIFT)
        else:
            _draw_eye(canvas, *eye_items[i - n_tri][1:])
    return canvas


def _draw_eye(canvas: np.ndarray, ring_2d: np.ndarray, centre: np.ndarray,
              radius: float) -> None:
    """White eye opening with a dark iris disc clipped to it (in place)."""
    poly = np.round(ring_2d * (1 << _SHIFT)).astype(np.int32)[:, None, :]
    x0, y0 = np.floor(ring_2d.min(0)).astype(int) - 1
    x1, y1 = np.ceil(ring_2d.max(0)).astype(int) + 2
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    offset = np.array([x0, y0]) * (1 << _SHIFT)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [poly - offset], 255, cv2.LINE_8, _SHIFT)
    patch = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    patch[:] = SCLERA
    c = np.round((np.asarray(centre) - [x0, y0]) * (1 << _SHIFT)).astype(int)
    r = int(round(radius * (1 << _SHIFT)))
    cv2.circle(patch, (int(c[0]), int(c[1])), max(r, 1), IRIS, -1, cv2.LINE_8, _SHIFT)
    region = canvas[y0:y1, x0:x1]
    region[mask > 0] = patch[mask > 0]


def pose_from_motion(motion: np.ndarray, layout: MotionLayout) -> dict:
    """(D,) motion vector -> the pose dict ``render_condition`` takes."""
    parts = layout.split(np.asarray(motion, np.float32))
    return {"yaw": float(parts["yaw"][0]), "pitch": float(parts["pitch"][0]),
            "roll": float(parts["roll"][0]), "translation": parts["translation"],
            "log_scale": float(parts["log_scale"][0])}


def render_from_motion(source_shape: np.ndarray | None, motion: np.ndarray,
                       layout: MotionLayout, basis=None, size: int = 512, *,
                       source_landmarks: np.ndarray | None = None) -> np.ndarray:
    """One motion vector -> condition image; the entry point of the CLI and the data pipeline.

    Give the source either as ``source_shape`` (canonical frame, e.g. a video's neutral shape
    from ``MotionResult.neutral_shape``) or as ``source_landmarks`` ((478, 3) pixels of the
    source image; pose-normalised here). The expression field is used when ``basis`` is given;
    without a basis it must be all zeros (as ``MotionExtractor`` writes it).
    """
    if (source_shape is None) == (source_landmarks is None):
        raise ValueError("give exactly one of source_shape (canonical) and source_landmarks "
                         "(pixels)")
    if source_landmarks is not None:
        lm = np.asarray(source_landmarks, np.float64)
        if lm.shape not in ((478, 3), (468, 3)) or not np.isfinite(lm).all():
            raise ValueError(f"source_landmarks must be finite (478|468, 3), got {lm.shape}")
        fit = pose_lib.estimate_pose(lm, (1, 1))
        source_shape = pose_lib.normalize_landmarks(lm, fit)[0]
    motion = np.asarray(motion, np.float32).reshape(-1)
    parts = layout.split(motion)
    if not np.isfinite(motion).all():
        raise ValueError("motion vector has NaN entries (a frame without a face); fill or drop "
                         "such frames before rendering")
    expression = parts["expression"]
    if basis is None:
        if np.any(expression != 0):
            raise ValueError("motion has non-zero expression coefficients but no expression "
                             "basis was given to render them")
        expression = None
    return render_condition(source_shape, expression, basis, pose_from_motion(motion, layout),
                            parts["gaze"], size)
