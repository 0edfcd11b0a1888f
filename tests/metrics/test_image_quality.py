"""PSNR / L1 / SSIM against hand-computed values and scikit-image's implementations."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mimaface_jax.metrics.image_quality import l1, psnr
from mimaface_jax.metrics.ssim import ssim, ssim_per_frame


def test_psnr_and_l1_hand_computed():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 48           # one entry off by 48 of 48 entries: MSE = 48
    assert psnr(b, a) == pytest.approx(10 * np.log10(255 ** 2 / 48.0), abs=1e-12)
    assert l1(b, a) == pytest.approx(1.0 / 255.0, abs=1e-12)
    mask = np.zeros((4, 4), bool)
    mask[0, :2] = True        # 2 pixels x 3 channels: MSE = 48^2 / 6 = 384
    assert psnr(b, a, mask) == pytest.approx(10 * np.log10(255 ** 2 / 384.0), abs=1e-12)
    assert l1(b, a, mask) == pytest.approx(48 / 6 / 255, abs=1e-12)
    assert np.isnan(psnr(b, a, np.zeros((4, 4), bool)))
    assert psnr(a, a) == pytest.approx(10 * np.log10(255 ** 2 / 1e-10))  # identical: capped, finite


def test_psnr_matches_skimage(astronaut):
    rng = np.random.default_rng(0)
    noisy = np.clip(astronaut.astype(int) + rng.integers(-20, 21, astronaut.shape), 0, 255).astype(np.uint8)
    assert psnr(noisy, astronaut) == pytest.approx(peak_signal_noise_ratio(astronaut, noisy, data_range=255),
                                                   abs=1e-9)


def test_ssim_hand_computed_constant_images():
    # Constant images: every variance / covariance is 0, so SSIM = (2 a b + C1) / (a^2 + b^2 + C1).
    a = np.full((16, 16, 3), 100, np.uint8)
    b = np.full((16, 16, 3), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 120 + c1) / (100 ** 2 + 120 ** 2 + c1), abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("size", [32, 64])
def test_ssim_matches_skimage(astronaut, size):
    import cv2

    rng = np.random.default_rng(size)
    frames = np.stack([cv2.resize(astronaut[o:o + 256, o:o + 256], (size, size), interpolation=cv2.INTER_AREA)
                       for o in (0, 100, 200)])                       # (3, size, size, 3)
    noisy = np.clip(frames.astype(int) + rng.integers(-30, 31, frames.shape), 0, 255).astype(np.uint8)
    ours = ssim_per_frame(noisy, frames)
    ref = [structural_similarity(f, n, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=255, channel_axis=-1) for f, n in zip(frames, noisy)]
    assert ours.shape == (3,)
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    assert 0.2 < min(ref) < max(ref) < 0.99   # a case far from both ends


def test_bad_shapes_are_errors():
    a = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(ValueError, match="mask"):
        l1(a, a, np.ones((8, 8, 3), bool))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a, a)
