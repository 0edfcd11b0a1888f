"""PSNR and L1 between uint8 frames, over the whole frame or inside a pixel mask.

Frames are (..., H, W, C) uint8 (or float in [0, 255]); masks are (..., H, W) bool and apply
to every channel. Computed in float64 numpy: exact, and cheap at evaluation sizes.
"""

from __future__ import annotations

import numpy as np

PEAK = 255.0
MIN_MSE = 1e-10  # identical images: a finite PSNR (148.1 dB) instead of inf, as training.samples


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    return pred, target


def _masked(diff: np.ndarray, mask) -> np.ndarray | None:
    """The entries of ``diff`` (..., H, W, C) under ``mask`` (..., H, W); None if it is empty."""
    mask = np.asarray(mask, bool)
    if mask.shape != diff.shape[:-1]:
        raise ValueError(f"mask {mask.shape} must be the frames' shape without channels {diff.shape[:-1]}")
    if not mask.any():
        return None
    return diff[mask]


def psnr(pred, target, mask=None) -> float:
    """PSNR in dB (peak 255) over all pixels, or those under ``mask``; NaN for an empty mask."""
    pred, target = _pair(pred, target)
    diff = pred - target
    if mask is not None:
        diff = _masked(diff, mask)
        if diff is None:
            return float("nan")
    mse = max(float(np.mean(diff ** 2)), MIN_MSE)
    return float(10.0 * np.log10(PEAK ** 2 / mse))


def l1(pred, target, mask=None) -> float:
    """Mean absolute difference in [0, 1] units (pixel values / 255), over all pixels or
    those under ``mask``; NaN for an empty mask."""
    pred, target = _pair(pred, target)
    diff = np.abs(pred - target) / PEAK
    if mask is not None:
        diff = _masked(diff, mask)
        if diff is None:
            return float("nan")
    return float(np.mean(diff))
