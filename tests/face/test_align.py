"""Alignment: template placement on a transformed real face, paste-back, clip smoothing."""

import cv2
import numpy as np
import pytest

from mimaface_jax.face.align import (apply_transform, arcface_crop, crop_template,
                                     estimate_crop_transform, paste_back, smooth_transforms,
                                     umeyama_similarity, warp_crop)
from mimaface_jax.face.landmarks import five_keypoints


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (6, 2))
    true = cv2.getRotationMatrix2D((30, 40), 33.0, 1.7)
    true[:, 2] += (5, -9)
    np.testing.assert_allclose(umeyama_similarity(src, apply_transform(true, src)), true,
                               atol=1e-9)


@pytest.mark.parametrize("angle,scale,size", [(25.0, 0.8, 256), (-15.0, 1.3, 192)])
def test_aligned_crop_puts_eyes_on_template(landmarker, astronaut, angle, scale, size):
    m_img = cv2.getRotationMatrix2D((256, 256), angle, scale)
    image = cv2.warpAffine(astronaut, m_img, (512, 512), borderMode=cv2.BORDER_REFLECT)
    lm = landmarker.detect_one(image)
    m = estimate_crop_transform(lm.landmarks, size)
    crop = warp_crop(image, m, size)
    # landmarks measured again, independently, on the crop itself
    kp_crop = five_keypoints(landmarker.detect_one(crop).landmarks)
    template = crop_template(size)
    # eyes land on the template up to the 5-point fit's residual (this face's proportions
    # differ from the template's): measured ~4 px at 256, ~3 px at 192
    eye_err = np.abs(kp_crop[:2] - template[:2]).max()
    assert eye_err < 0.02 * size, (eye_err, kp_crop[:2], template[:2])
    # and every keypoint lands where M says it goes (warp direction and convention)
    mapped = apply_transform(m, five_keypoints(lm.landmarks))
    assert np.abs(kp_crop - mapped).max() < 2.5
    # the crop is upright: the eyes are level in it although the input is rotated
    assert abs(kp_crop[0, 1] - kp_crop[1, 1]) < 0.015 * size


def test_paste_back_restores_the_face_region(landmarker, astronaut):
    lm = landmarker.detect_one(astronaut).landmarks
    m = estimate_crop_transform(lm, 256)
    crop = warp_crop(astronaut, m, 256)
    pasted = paste_back(astronaut, crop, m)
    x0, y0 = lm[:, :2].min(0).astype(int)
    x1, y1 = lm[:, :2].max(0).astype(int)
    region = (slice(y0, y1), slice(x0, x1))
    psnr = _psnr(pasted[region], astronaut[region])
    assert psnr > 32.0, psnr
    # far from the crop the frame is untouched
    corners = apply_transform(cv2.invertAffineTransform(m), [[0, 0], [256, 256]])
    assert corners[1, 1] < 500
    np.testing.assert_array_equal(pasted[-10:], astronaut[-10:])
    # pasted on a black frame, the face region is the crop's content (mask ~1 inside)
    on_black = paste_back(np.zeros_like(astronaut), crop, m)
    assert _psnr(on_black[region], astronaut[region]) > 30.0
    # feathered edges: values ramp, no hard seam at the crop border
    assert on_black.max() > 0 and on_black[0, 0].max() == 0


def _params(m):
    a, b = m[:, 0, 0], m[:, 1, 0]
    return np.stack([np.hypot(a, b), np.arctan2(b, a), m[:, 0, 2], m[:, 1, 2]], 1)


def test_smoothing_reduces_jitter_and_keeps_constant_transforms():
    t = np.arange(60)
    size = 256
    truth = np.stack([estimate_crop_transform(crop_template(size) * (1 + 0.1 * np.sin(x / 15))
                                              + [40 * np.sin(x / 20), 10 * x / 60], size)
                      for x in t])
    rng = np.random.default_rng(0)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    noisy = []
    for m in truth:  # jitter the crop by moving its corners ~2 px
        inv = cv2.invertAffineTransform(m)
        img_corners = apply_transform(inv, corners) + rng.normal(0, 2.0, (4, 2))
        noisy.append(umeyama_similarity(img_corners, corners))
    noisy = np.stack(noisy)
    smooth = smooth_transforms(noisy, size=size, window=9)

    def corner_path(ms):
        return np.stack([apply_transform(cv2.invertAffineTransform(m), corners) for m in ms])

    def jitter(ms):  # mean |second difference| of the crop corners in the image
        return np.abs(np.diff(corner_path(ms), n=2, axis=0)).mean()

    assert jitter(smooth) < 0.4 * jitter(noisy), (jitter(smooth), jitter(noisy))
    err_noisy = np.abs(corner_path(noisy) - corner_path(truth)).mean()
    err_smooth = np.abs(corner_path(smooth) - corner_path(truth)).mean()
    assert err_smooth < 0.7 * err_noisy, (err_smooth, err_noisy)
    # a constant transform is a fixed point, for both methods
    const = np.repeat(truth[:1], 12, axis=0)
    for method in ("savgol", "mean"):
        np.testing.assert_allclose(smooth_transforms(const, size=size, method=method), const,
                                   atol=1e-9)
    # frames without a face (NaN) are filled from their neighbours
    holes = noisy.copy()
    holes[20:23] = np.nan
    filled = smooth_transforms(holes, size=size, window=9)
    assert np.isfinite(filled).all()
    assert np.abs(corner_path(filled[20:23]) - corner_path(truth[20:23])).max() < 6.0
    with pytest.raises(ValueError, match="every transform is NaN"):
        smooth_transforms(np.full((4, 2, 3), np.nan), size=size)


def test_arcface_crop_matches_insightface_template(landmarker, astronaut):
    from insightface.utils.face_align import arcface_dst

    lm = landmarker.detect_one(astronaut).landmarks
    crop = arcface_crop(astronaut, lm)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    kp = five_keypoints(landmarker.detect_one(cv2.resize(crop, (224, 224))).landmarks) / 2
    assert np.abs(kp[:2] - arcface_dst[:2]).max() < 4.0
