"""Temporal metrics of a generated video.

  landmark jitter: mean norm of the second difference L[t+1] - 2 L[t] + L[t-1] of landmark
      positions (pixels), i.e. acceleration; reported for the generated and the driving video.
  flicker: mean |F[t+1] - F[t]| (in [0, 1] units) over the pixels of a static-background mask.
  inter-clip discontinuity: the mean change across clip boundaries (last frame of a clip ->
      first frame of the next) divided by the mean change between consecutive frames inside
      clips. 1.0 = a boundary no worse than any other frame pair; what ICA exists to lower.
"""

from __future__ import annotations

import numpy as np


def landmark_jitter(landmarks) -> float:
    """(T, P, 2 or 3) landmark positions -> mean acceleration norm over frames and points
    (frames with NaN landmarks are left out of the second differences they touch)."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[0] < 3:
        raise ValueError(f"landmark jitter needs (T >= 3, P, dims) landmarks, got {lm.shape}")
    acc = np.linalg.norm(lm[2:] - 2 * lm[1:-1] + lm[:-2], axis=-1)   # (T-2, P)
    ok = np.isfinite(acc).all(axis=1)
    return float(np.mean(acc[ok])) if ok.any() else float("nan")


def frame_changes(frames) -> np.ndarray:
    """(T, H, W, C) -> (T-1,) mean |F[t+1] - F[t]| / 255."""
    f = np.asarray(frames, np.float64)
    if f.ndim != 4 or f.shape[0] < 2:
        raise ValueError(f"expected (T >= 2, H, W, C) frames, got {f.shape}")
    return np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3)) / 255.0


def static_mask(reference_frames, threshold: int = 0) -> np.ndarray:
    """(T, H, W, C) reference video (e.g. the ground truth) -> (H, W) bool: pixels whose value
    never changes by more than ``threshold`` over the video (the static background)."""
    f = np.asarray(reference_frames, np.int16)
    if f.ndim != 4:
        raise ValueError(f"expected (T, H, W, C) frames, got {f.shape}")
    return (np.abs(f - f[:1]).max(axis=(0, 3)) <= threshold)


def flicker(frames, mask) -> float:
    """(T, H, W, C) frames, (H, W) bool static mask -> mean |F[t+1] - F[t]| / 255 over the mask
    (NaN when the mask is empty)."""
    f = np.asarray(frames, np.float64)
    mask = np.asarray(mask, bool)
    if f.ndim != 4 or f.shape[0] < 2 or mask.shape != f.shape[1:3]:
        raise ValueError(f"flicker needs (T >= 2, H, W, C) frames and an (H, W) mask, got {f.shape}, {mask.shape}")
    if not mask.any():
        return float("nan")
    return float(np.abs(np.diff(f, axis=0))[:, mask].mean() / 255.0)


def interclip_discontinuity(frames, clip_starts) -> dict:
    """(T, H, W, C) frames, the first frame index of every clip (0 may be included) ->
    {"discontinuity": boundary change / within-clip change, "boundary_change", "within_change"}
    (changes in [0, 1] units). NaN discontinuity when there is no boundary or no within-clip pair."""
    changes = frame_changes(frames)                 # change[t] is frame t -> t+1
    t = len(changes) + 1
    starts = sorted({int(s) for s in clip_starts})
    if any(s < 0 or s >= t for s in starts):
        raise ValueError(f"clip starts {starts} outside the video's {t} frames")
    boundary = np.zeros(len(changes), bool)
    for s in starts:
        if s > 0:
            boundary[s - 1] = True
    across = float(changes[boundary].mean()) if boundary.any() else float("nan")
    within = float(changes[~boundary].mean()) if (~boundary).any() else float("nan")
    ratio = across / within if within > 0 else float("nan")
    return {"discontinuity": ratio, "boundary_change": across, "within_change": within}
