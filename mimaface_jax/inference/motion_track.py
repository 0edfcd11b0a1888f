"""Landmark tracks -> motion vectors of the model's layout, measured in the model's crop.

Training data measures motion on aligned crops (``data_pipelines``: a smoothed per-frame
similarity crop at the model resolution); generation measures it the same way, so that an
absolute pose means what it meant in training. Frames without a face are interpolated
linearly from their neighbours (nearest at the ends) and counted.
"""

from __future__ import annotations

import numpy as np

from mimaface_jax.face import align
from mimaface_jax.inference.errors import AnimateError


def crop_landmarks(landmarks: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(478, 3) image-pixel landmarks -> crop pixels through M (2, 3) (z scaled like x, y)."""
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    xy = align.apply_transform(m, landmarks[:, :2])
    return np.concatenate([xy, landmarks[:, 2:3] * scale], axis=1).astype(np.float32)


def crop_transforms(landmarks: np.ndarray, found: np.ndarray, size: int) -> np.ndarray:
    """(T, 478, 3) image landmarks (NaN where not found) -> (T, 2, 3) smoothed per-frame image ->
    crop transforms of side ``size`` (frames without a face interpolated)."""
    per_frame = np.full((len(landmarks), 2, 3), np.nan)
    for i in np.flatnonzero(found):
        per_frame[i] = align.estimate_crop_transform(landmarks[i], size)
    return align.smooth_transforms(per_frame, size)


def track_crop_landmarks(landmarks: np.ndarray, found: np.ndarray, size: int) -> np.ndarray:
    """(T, 478, 3) image landmarks (NaN where not found) -> (T, 478, 3) landmarks in the smoothed
    per-frame crop of side ``size`` (NaN where not found)."""
    transforms = crop_transforms(landmarks, found, size)
    out = np.full(landmarks.shape, np.nan, np.float32)
    for i in np.flatnonzero(found):
        out[i] = crop_landmarks(landmarks[i], transforms[i])
    return out


def fill_missing(motion: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, D) with rows invalid where ``valid`` is False -> every row finite (linear in time)."""
    t = np.arange(len(motion))
    out = np.asarray(motion, np.float32).copy()
    for d in range(out.shape[1]):
        out[:, d] = np.interp(t, t[valid], out[valid, d])
    return out


def check_missing(found: np.ndarray, max_missing: float, where: str) -> int:
    """Number of frames without a face; an error when none has one or more than ``max_missing``
    of them miss it."""
    total, missing = len(found), int((~found).sum())
    if missing == total:
        raise AnimateError(f"{where}: no face found in any of its {total} frames")
    if missing / total > max_missing:
        raise AnimateError(f"{where}: {missing} of {total} frames have no face (more than "
                           f"--max_missing={max_missing:g} of them)")
    return missing


def measure(landmarks: np.ndarray, found: np.ndarray, size: int, basis, num_expression: int) -> np.ndarray:
    """(T, 478, 3) image landmarks -> (T, D) motion in the crop (NaN rows where not found)."""
    from mimaface_jax.face.motion import MotionExtractor

    crop = track_crop_landmarks(landmarks, found, size)
    extractor = MotionExtractor(basis, num_expression=num_expression)
    return extractor.extract(crop, (size, size)).vectors.astype(np.float32)
