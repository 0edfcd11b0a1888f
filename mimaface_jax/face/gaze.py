"""Gaze: each iris centre relative to its eye corners, normalised by the eye width.

Per eye, in the image plane (x, y of the pixel landmarks):
- the eye's x axis is the unit vector along the corner line pointing to the IMAGE RIGHT of an
  upright face (left eye: inner 362 -> outer 263; right eye: outer 33 -> inner 133), its
  y axis that vector turned by +90 degrees in image coordinates (pointing DOWN for an upright
  face); origin = the midpoint of the two corners; unit = the corner distance (eye width);
- the iris centre is the mean of the iris centre and its 4 ring points (refine_landmarks).
Gaze x > 0: the iris sits toward the image right (the subject looks to their left); gaze y > 0:
the iris sits low (looks down). The frame turns with the corner line, so an in-plane rotation of
the face does not change gaze.

Order (the ``gaze`` field of ``motion_layout.facemesh_layout``): (left x, left y, right x,
right y), "left" = the subject's left eye (image right of a photo). A horizontal flip swaps the
eyes and negates x: exactly the layout's flip rule (perm (2, 3, 0, 1), sign (-1, 1, -1, 1)).
"""

from __future__ import annotations

import numpy as np

from mimaface_jax.face import canonical

# (eye name, corner at the image-left of an upright face, corner at its image-right, iris)
EYES = (
    ("left", canonical.LEFT_EYE_INNER, canonical.LEFT_EYE_OUTER, canonical.LEFT_IRIS),
    ("right", canonical.RIGHT_EYE_OUTER, canonical.RIGHT_EYE_INNER, canonical.RIGHT_IRIS),
)


def eye_frame(landmarks: np.ndarray, eye: str):
    """(..., 478, 2+) -> origin (..., 2), x axis (..., 2), y axis (..., 2), width (...)."""
    spec = {name: (a, b) for name, a, b, _ in EYES}
    if eye not in spec:
        raise ValueError(f"eye must be 'left' or 'right', got {eye!r}")
    a_idx, b_idx = spec[eye]
    a = landmarks[..., a_idx, :2]
    b = landmarks[..., b_idx, :2]
    d = b - a
    width = np.linalg.norm(d, axis=-1)
    x_axis = d / width[..., None]
    y_axis = np.stack([-x_axis[..., 1], x_axis[..., 0]], -1)
    return (a + b) / 2, x_axis, y_axis, width


def compute_gaze(landmarks: np.ndarray) -> np.ndarray:
    """(T, 478, 2|3) (or (478, 2|3)) landmarks -> (T, 4) (or (4,)) gaze; NaN where missing."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape[-2] != canonical.NUM_POINTS or lm.shape[-1] not in (2, 3):
        raise ValueError("gaze needs the 478 landmarks of FaceMesh(refine_landmarks=True) "
                         f"(with irises), shape (..., 478, 2|3); got {lm.shape}")
    out = []
    for name, _, _, iris in EYES:
        origin, x_axis, y_axis, width = eye_frame(lm, name)
        centre = lm[..., list(iris), :2].mean(-2)
        rel = centre - origin
        out.append((rel * x_axis).sum(-1) / width)
        out.append((rel * y_axis).sum(-1) / width)
    return np.stack(out, -1)


def iris_centres_from_gaze(points_2d: np.ndarray, gaze: np.ndarray) -> dict[str, np.ndarray]:
    """Inverse of ``compute_gaze`` for one face: eye corners (478|468, 2) + (4,) gaze ->
    {"left": (2,), "right": (2,)} iris centres in the same coordinates."""
    g = np.asarray(gaze, np.float64).reshape(2, 2)
    out = {}
    for k, (name, _, _, _) in enumerate(EYES):
        origin, x_axis, y_axis, width = eye_frame(points_2d, name)
        out[name] = origin + width * (g[k, 0] * x_axis + g[k, 1] * y_axis)
    return out
