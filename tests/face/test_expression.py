"""Expression (face/expression.py): pose normalisation, neutral shape, PCA basis."""

import cv2
import numpy as np
import pytest

from mimaface_jax.face import canonical
from mimaface_jax.face import expression as expr_lib

FACE_CENTRE = (225.0, 125.0)


@pytest.fixture(scope="module")
def real_shapes(astronaut, landmarker):
    """Canonical shapes of the astronaut seen under several rotations / zooms: (6, 468, 3)."""
    lms = []
    for angle, zoom in ((0, 1.0), (-15, 0.8), (10, 1.2), (20, 0.9), (-5, 1.1), (5, 0.7)):
        m = cv2.getRotationMatrix2D(FACE_CENTRE, angle, zoom)
        image = cv2.warpAffine(astronaut, m, (512, 512), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        lms.append(landmarker.detect_one(image).landmarks)
    return expr_lib.canonical_shapes(np.stack(lms))


def test_pose_normalised_shapes_do_not_depend_on_pose(real_shapes):
    rms = np.sqrt(((real_shapes - real_shapes.mean(0)) ** 2).sum(-1).mean(-1))
    print("RMS distance of each view's canonical shape to their mean (template units):",
          np.round(rms, 4))
    # the face's RMS radius is 1 template unit; landmark noise is ~1 % of it
    assert rms.max() < 0.03
    # the shapes live in the template frame
    assert np.abs(real_shapes.mean((0, 1))).max() < 0.05
    assert abs(np.sqrt((real_shapes ** 2).sum(-1).mean()) - 1.0) < 0.05


def test_neutral_shape_choices(real_shapes):
    shapes = real_shapes.copy()
    shapes[0] = np.nan
    np.testing.assert_allclose(expr_lib.neutral_shape(shapes, "mean"), real_shapes[1:].mean(0))
    np.testing.assert_array_equal(expr_lib.neutral_shape(shapes, "first"), real_shapes[1])
    np.testing.assert_array_equal(expr_lib.neutral_shape(shapes, 3), real_shapes[3])
    with pytest.raises(ValueError, match="no landmarks"):
        expr_lib.neutral_shape(shapes, 0)
    with pytest.raises(ValueError, match="no frame"):
        expr_lib.neutral_shape(np.full_like(shapes, np.nan))
    offsets = expr_lib.expression_offsets(shapes, expr_lib.neutral_shape(shapes, 2))
    assert offsets.shape == (6, 1404)
    assert np.isnan(offsets[0]).all() and np.abs(offsets[2]).max() == 0


def _synthetic_offsets(real_shapes, n, rng):
    """Offsets from the astronaut's shape: 4 expression-like deformations + real landmark noise
    (differences between views) + small i.i.d. noise."""
    base = real_shapes.mean(0)
    y = base[:, 1]
    mouth_y = base[[13, 14], 1].mean()
    below = np.clip((y - mouth_y) / (y.max() - mouth_y), 0, 1)       # jaw drop
    corners = np.exp(-((base[:, :2] - base[[61], :2]) ** 2).sum(1) / 0.05) + \
        np.exp(-((base[:, :2] - base[[291], :2]) ** 2).sum(1) / 0.05)  # smile
    brows = np.zeros(468)
    brows[np.concatenate([canonical.index_sets()["left_eyebrow"],
                          canonical.index_sets()["right_eyebrow"]])] = 1.0
    lids = np.zeros(468)
    lids[np.concatenate([canonical.eye_contours()["left"][8:],
                         canonical.eye_contours()["right"][2:9]])] = 1.0
    modes = np.stack([
        np.stack([0 * y, 0.3 * below, 0.05 * below], 1),
        np.stack([0.1 * corners * np.sign(base[:, 0]), -0.1 * corners, 0 * y], 1),
        np.stack([0 * y, -0.08 * brows, 0 * y], 1),
        np.stack([0 * y, 0.05 * lids, 0 * y], 1),
    ]).reshape(4, -1)
    amps = rng.normal(size=(n, 4)) * [1.0, 0.7, 0.5, 0.3]
    noise_src = (real_shapes - base).reshape(len(real_shapes), -1)
    noise = noise_src[rng.integers(0, len(real_shapes), n)] * rng.normal(size=(n, 1))
    return amps @ modes + noise + 0.002 * rng.normal(size=(n, modes.shape[1]))


def test_pca_error_falls_with_components_and_round_trips(real_shapes, tmp_path):
    rng = np.random.default_rng(0)
    train = _synthetic_offsets(real_shapes, 300, rng)
    test = _synthetic_offsets(real_shapes, 50, rng)
    basis = expr_lib.ExpressionPCA.fit(train, num_components=16)
    errors = [float(basis.reconstruction_error(test, k).mean()) for k in (1, 2, 3, 4, 8, 16)]
    print("mean RMS reconstruction error for k = 1, 2, 3, 4, 8, 16:", np.round(errors, 5))
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[3] < 0.3 * errors[0]  # the 4 deformation modes carry most of the variance
    coeffs = basis.project(test)
    assert coeffs.shape == (50, 16)
    # whitened: unit variance on the fitting set
    np.testing.assert_allclose(basis.project(train).std(0, ddof=1), 1.0, rtol=1e-9)
    path = tmp_path / "basis.npz"
    basis.save(path)
    again = expr_lib.ExpressionPCA.load(path)
    np.testing.assert_array_equal(again.project(test), coeffs)
    np.testing.assert_array_equal(again.reconstruct(coeffs), basis.reconstruct(coeffs))
    assert again.layout_version == "facemesh-v1-e16"
    with np.load(path) as data:
        assert str(data["layout"]) == "facemesh-v1-e16"


def test_pca_refuses_too_few_samples_and_bad_files(real_shapes, tmp_path):
    offsets = _synthetic_offsets(real_shapes, 10, np.random.default_rng(1))
    with pytest.raises(ValueError, match="10 valid samples cannot define 64 components"):
        expr_lib.ExpressionPCA.fit(offsets)
    offsets[:3] = np.nan  # NaN rows (frames without a face) are dropped
    with pytest.raises(ValueError, match="7 valid samples"):
        expr_lib.ExpressionPCA.fit(offsets, num_components=8)
    bad = tmp_path / "bad.npz"
    np.savez(bad, mean=np.zeros(3))
    with pytest.raises(ValueError, match="missing keys"):
        expr_lib.ExpressionPCA.load(bad)
    with pytest.raises(FileNotFoundError):
        expr_lib.ExpressionPCA.load(tmp_path / "nope.npz")
