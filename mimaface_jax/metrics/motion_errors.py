"""Motion errors between generated and driving motion (the same ``MotionLayout``).

  AED (average expression distance): mean |e_gen - e_drv| over frames and the coefficients of
      the layout's expression group (FaceMesh: PCA coefficients; SynthFaces: mouth/smile/...).
  APD (average pose distance): mean |angle_gen - angle_drv| in degrees over frames and
      yaw / pitch / roll.
  gaze error: mean |g_gen - g_drv| over frames and the gaze group's entries (FaceMesh: iris
      offsets in eye widths).

Frames where either side is NaN (no face found) are left out and counted. ``evaluate`` measures
both sides the same way: FaceMesh landmarks of the generated and of the driving frames through
``face.motion.MotionExtractor`` with the model's expression basis (``score_task.py``).
"""

from __future__ import annotations

import numpy as np

ANGLES = ("yaw", "pitch", "roll")


def _check(generated, driving, layout) -> tuple[np.ndarray, np.ndarray]:
    g, d = np.asarray(generated, np.float64), np.asarray(driving, np.float64)
    if g.shape != d.shape or g.ndim != 2 or g.shape[1] != layout.size:
        raise ValueError(f"generated {g.shape} and driving {d.shape} motion must both be (T, {layout.size}) "
                         f"(layout {layout.version!r})")
    return g, d


def _mean_abs(g: np.ndarray, d: np.ndarray, columns) -> tuple[float, int]:
    """(mean |g - d| over the rows where both are finite, number of rows left out)."""
    columns = np.asarray(columns, int)
    if columns.size == 0:
        return float("nan"), 0
    diff = np.abs(g[:, columns] - d[:, columns])
    ok = np.isfinite(diff).all(axis=1)
    return (float(np.mean(diff[ok])) if ok.any() else float("nan")), int((~ok).sum())


def motion_errors(generated, driving, layout) -> dict:
    """generated, driving (T, D) motion in ``layout`` -> {"aed", "apd_degrees", "gaze_error",
    "frames_left_out"} (NaN for a group the layout does not have)."""
    g, d = _check(generated, driving, layout)
    aed, skipped = _mean_abs(g, d, layout.group_indices("expression"))
    angles = [i for name in ANGLES if name in layout.names for i in range(layout.slice(name).start,
                                                                          layout.slice(name).stop)]
    apd, _ = _mean_abs(g, d, angles)
    gaze, _ = _mean_abs(g, d, layout.group_indices("gaze"))
    return {"aed": aed, "apd_degrees": apd, "gaze_error": gaze, "frames_left_out": skipped}

