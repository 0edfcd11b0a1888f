"""Which motion the generated frames get: the driving motion transferred onto the source.

- ``relative`` (default): for pose and expression, the source's own motion plus the driving
  motion's change from a REFERENCE driving frame (``first``: the first frame;
  ``closest``: the frame whose head pose (yaw, pitch, roll) is nearest the source's), so the
  reference frame maps exactly to the source's own motion; gaze is taken from the driving frame
  as is (``face/retarget.py``).
- ``absolute``: the driving motion as is.
- Groups not listed in ``transfer`` (e.g. ``--transfer expression``) keep the source's own
  values in every frame.
- ``smooth`` > 1: a centred moving average of that many frames over the driving motion first.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mimaface_jax.face import retarget
from mimaface_jax.face.motion_layout import GROUPS, MotionLayout

MODES = ("relative", "absolute")
REFERENCES = ("first", "closest")


@dataclasses.dataclass(frozen=True)
class TransferSettings:
    mode: str = "relative"
    reference: str = "first"
    groups: tuple[str, ...] = GROUPS
    smooth: int = 1

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"--motion must be one of {MODES}, got {self.mode!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"--driving_reference must be one of {REFERENCES}, got {self.reference!r}")
        bad = [g for g in self.groups if g not in GROUPS]
        if bad or not self.groups:
            raise ValueError(f"--transfer takes a comma-separated subset of {','.join(GROUPS)}, got {self.groups}")
        if self.smooth < 1:
            raise ValueError(f"--smooth must be >= 1 frames, got {self.smooth}")


def smooth_motion(motion: np.ndarray, window: int) -> np.ndarray:
    """(T, D) -> (T, D): centred moving average over ``window`` frames (edges repeated)."""
    if window <= 1 or len(motion) == 1:
        return motion
    pad = window // 2
    padded = np.pad(motion, ((pad, window - 1 - pad), (0, 0)), mode="edge")
    kernel = np.ones(window, np.float64) / window
    return np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(motion.shape[1])],
                    axis=1).astype(np.float32)


def reference_frame(source: np.ndarray, driving: np.ndarray, layout: MotionLayout, which: str) -> int:
    if which == "first":
        return 0
    angles = [layout.slice(n).start for n in ("yaw", "pitch", "roll")]
    return int(np.argmin(np.abs(driving[:, angles] - source[angles]).sum(axis=1)))


def transfer(source: np.ndarray, driving: np.ndarray, layout: MotionLayout,
             settings: TransferSettings) -> tuple[np.ndarray, int]:
    """source (D,), driving (T, D) (finite) -> (motion (T, D) float32, reference frame index)."""
    src = np.asarray(source, np.float32).reshape(-1)
    drv = smooth_motion(np.asarray(driving, np.float32), settings.smooth)
    ref = reference_frame(src, drv, layout, settings.reference)
    if settings.mode == "relative":
        relative = tuple(g for g in ("pose", "expression") if g in settings.groups)
        out = retarget.retarget_relative(src, drv, layout, reference=ref, relative_groups=relative)
    else:
        out = retarget.retarget_absolute(src, drv, layout)
    for group in GROUPS:
        if group not in settings.groups:
            idx = layout.group_indices(group)
            out[:, idx] = src[idx]
    return out.astype(np.float32), ref
