"""Retargeting: the driving video's motion applied to the source face.

- absolute: the driving motion is used as is (the source only gives appearance and shape).
- relative: for the groups in ``relative_groups`` (default pose and expression) each frame's
  change from a REFERENCE frame of the driving video (``reference``: the first frame by
  default, or an index) is added to the source's own motion:
  ``out = source + (driving_t - driving_ref)``; the other groups (default gaze) are taken from
  the driving frame as is. The driving reference frame therefore maps to the source's own
  motion exactly on the relative groups.
All offsets come from the layout's groups; nothing is hard-coded.
"""

from __future__ import annotations

import numpy as np

from mimaface_jax.face.motion_layout import GROUPS, MotionLayout


def _check(layout: MotionLayout, driving: np.ndarray) -> np.ndarray:
    d = np.asarray(driving, np.float32)
    if d.ndim != 2 or d.shape[1] != layout.size:
        raise ValueError(f"driving motion must be (T, {layout.size}) for layout "
                         f"{layout.version!r}, got {d.shape}")
    return d


def retarget_absolute(source: np.ndarray | None, driving: np.ndarray,
                      layout: MotionLayout) -> np.ndarray:
    """(T, D) driving -> (T, D): the driving motion itself (``source`` is not used)."""
    return _check(layout, driving).copy()


def retarget_relative(source: np.ndarray, driving: np.ndarray, layout: MotionLayout,
                      reference: int = 0,
                      relative_groups: tuple[str, ...] = ("pose", "expression")) -> np.ndarray:
    """source (D,), driving (T, D) -> (T, D) retargeted motion (see module docstring)."""
    d = _check(layout, driving)
    src = np.asarray(source, np.float32).reshape(-1)
    if src.shape[0] != layout.size:
        raise ValueError(f"source motion must have {layout.size} entries for layout "
                         f"{layout.version!r}, got {np.shape(source)}")
    if not np.isfinite(src).all():
        raise ValueError("source motion has NaN/inf entries (no face in the source image?)")
    unknown = [g for g in relative_groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"relative_groups {unknown} not in {GROUPS}")
    if not -len(d) <= reference < len(d):
        raise ValueError(f"reference frame {reference} outside the driving clip of {len(d)} "
                         "frames")
    ref = d[reference]
    if not np.isfinite(ref).all():
        raise ValueError(f"driving reference frame {reference} has no motion (no face found "
                         "there); choose another reference frame")
    out = d.copy()
    for group in relative_groups:
        idx = layout.group_indices(group)
        out[:, idx] = src[idx] + (d[:, idx] - ref[idx])
    return out


def retarget(source: np.ndarray, driving: np.ndarray, layout: MotionLayout,
             mode: str = "relative", reference: int = 0) -> np.ndarray:
    """``mode`` "relative" or "absolute" (see the two functions)."""
    if mode == "relative":
        return retarget_relative(source, driving, layout, reference=reference)
    if mode == "absolute":
        return retarget_absolute(source, driving, layout)
    raise ValueError(f"retargeting mode must be 'relative' or 'absolute', got {mode!r}")
