"""SSIM of uint8 frames (Wang et al. 2004): an 11-tap Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03, data range 255, population (not sample) covariances, averaged over the valid
(unpadded) area and the channels.

These are the settings of ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)``, the reference the
tests compare with. The filter is separable and written here in JAX (one compile per shape);
borders are mirror-padded like ``scipy.ndimage``'s default ("reflect" = numpy "symmetric").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SIGMA = 1.5
RADIUS = 5  # skimage: int(3.5 * sigma + 0.5)
K1, K2, DATA_RANGE = 0.01, 0.03, 255.0


def gaussian_taps(sigma: float = SIGMA, radius: int = RADIUS) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _blur(x: jax.Array, taps: jax.Array) -> jax.Array:
    """Separable Gaussian blur of x (N, H, W, C) along H and W, mirror-padded to the same size."""
    r = (taps.shape[0] - 1) // 2
    x = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="symmetric")
    h, w = x.shape[1] - 2 * r, x.shape[2] - 2 * r
    x = sum(taps[i] * x[:, i:i + h] for i in range(taps.shape[0]))
    return sum(taps[i] * x[:, :, i:i + w] for i in range(taps.shape[0]))


@jax.jit
def _ssim_per_image(a: jax.Array, b: jax.Array, taps: jax.Array) -> jax.Array:
    """a, b (N, H, W, C) float32 in [0, 255] -> (N,) mean SSIM over the valid area and channels."""
    # second moments of the images minus their global means: (co)variances are shift-invariant,
    # and float32 E[x^2] - E[x]^2 of [0, 255] values would lose ~1e-4 of SSIM to cancellation
    ma, mb = jnp.mean(a, axis=(1, 2, 3), keepdims=True), jnp.mean(b, axis=(1, 2, 3), keepdims=True)
    ac, bc = a - ma, b - mb
    da, db = _blur(ac, taps), _blur(bc, taps)
    mu_a, mu_b = da + ma, db + mb
    var_a = _blur(ac * ac, taps) - da ** 2
    var_b = _blur(bc * bc, taps) - db ** 2
    cov = _blur(ac * bc, taps) - da * db
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    r = (taps.shape[0] - 1) // 2
    return jnp.mean(s[:, r:-r, r:-r, :], axis=(1, 2, 3))


def ssim_per_frame(pred, target) -> np.ndarray:
    """(..., H, W, C) frames (uint8 or [0, 255] floats) -> (...) SSIM of each frame pair."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    if pred.ndim < 3:
        raise ValueError(f"SSIM needs (..., H, W, C) frames, got {pred.shape}")
    h, w = pred.shape[-3:-1]
    if min(h, w) < 2 * RADIUS + 1:
        raise ValueError(f"SSIM needs frames of at least {2 * RADIUS + 1}x{2 * RADIUS + 1} pixels, got {h}x{w}")
    lead = pred.shape[:-3]
    a = jnp.asarray(pred.reshape(-1, *pred.shape[-3:]), jnp.float32)
    b = jnp.asarray(target.reshape(-1, *target.shape[-3:]), jnp.float32)
    out = _ssim_per_image(a, b, jnp.asarray(gaussian_taps(), jnp.float32))
    return np.asarray(out, np.float64).reshape(lead)


def ssim(pred, target) -> float:
    """Mean SSIM over the frame pairs of (..., H, W, C) frames."""
    return float(np.mean(ssim_per_frame(pred, target)))
