"""Consistent horizontal flip of frames, FaceMesh landmarks and canonical shapes.

Flipping an image (x -> W - x in pixel coordinates whose pixel j covers [j, j + 1)) turns a
FaceMesh labelling into a mirrored one: the subject's left eye lands where a right eye is
expected. The landmarks are therefore re-indexed with the FaceMesh mirror permutation, which
is derived at run time from the geometry of the project's exactly mirror-symmetric canonical
template (``face/canonical.mirror_permutation``: each point's nearest neighbour after negating
x; checked to be an involution), not from a hard-coded table. Motion is then re-measured from
the flipped landmarks (the expression PCA coefficients have no closed-form mirror), which
negates yaw, roll and x-translation and swaps / negates gaze exactly as
``MotionLayout.flip`` says; stored-motion datasets (SynthFaces) use ``MotionLayout.flip``.
"""

from __future__ import annotations

import numpy as np


def mirror_permutation() -> np.ndarray:
    """(478,) int64: index of each FaceMesh point's mirror twin."""
    from mimaface_jax.face import canonical

    return canonical.mirror_permutation()


def flip_images(images: np.ndarray) -> np.ndarray:
    """(..., H, W, C) -> the same, mirrored left-right (a contiguous copy)."""
    return np.ascontiguousarray(np.asarray(images)[..., :, ::-1, :])


def flip_landmarks(landmarks: np.ndarray, width: float) -> np.ndarray:
    """(..., 478, 3) pixel landmarks of images ``width`` wide -> landmarks of the flipped
    images, re-indexed so that every index names the same anatomical point again."""
    lm = np.array(landmarks, dtype=np.float32, copy=True)
    if lm.shape[-2:] != (478, 3):
        raise ValueError(f"flip_landmarks expects (..., 478, 3) landmarks, got {lm.shape}")
    lm[..., 0] = np.float32(width) - lm[..., 0]
    return lm[..., mirror_permutation(), :]


def flip_canonical_shape(shape: np.ndarray) -> np.ndarray:
    """(..., 468|478, 3) canonical-frame shape -> the shape of the mirrored face."""
    shape = np.asarray(shape, np.float32)
    n = shape.shape[-2]
    perm = mirror_permutation()[:n]
    if n not in (468, 478) or perm.max() >= n:
        raise ValueError(f"flip_canonical_shape expects (..., 468|478, 3), got {shape.shape}")
    mirrored = shape * np.array([-1.0, 1.0, 1.0], np.float32)
    return mirrored[..., perm, :]
