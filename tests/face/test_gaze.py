"""Gaze numbers (face/gaze.py): directions, rotation invariance, the layout's flip rule."""

import numpy as np
import pytest

from mimaface_jax.face import canonical
from mimaface_jax.face import gaze as gaze_lib
from mimaface_jax.face.motion_layout import facemesh_layout

LEFT, RIGHT = list(canonical.LEFT_IRIS), list(canonical.RIGHT_IRIS)


@pytest.fixture(scope="module")
def astronaut_landmarks(astronaut, landmarker):
    return landmarker.detect_one(astronaut).landmarks.astype(np.float64)


def _flip_landmarks(lm, width):
    """Mirror pixel landmarks (x -> width - x) and relabel them as FaceMesh would."""
    out = lm.copy()
    out[..., 0] = width - out[..., 0]
    return out[..., canonical.mirror_permutation(), :]


def _gaze_field(vec):
    layout = facemesh_layout(1)
    f = layout.field("gaze")
    return (vec[..., list(f.flip_perm)] * np.asarray(f.flip_sign))


def test_moving_the_irises_moves_gaze_the_documented_way(astronaut_landmarks):
    lm = astronaut_landmarks
    g0 = gaze_lib.compute_gaze(lm)
    width_l = np.linalg.norm(lm[canonical.LEFT_EYE_OUTER, :2] - lm[canonical.LEFT_EYE_INNER, :2])
    width_r = np.linalg.norm(lm[canonical.RIGHT_EYE_OUTER, :2] - lm[canonical.RIGHT_EYE_INNER, :2])
    # (dx, dy) in pixels -> expected sign of (gaze x, gaze y): right = +x, down = +y
    for (dx, dy), sign in (((2.0, 0.0), (1, 0)), ((-2.0, 0.0), (-1, 0)),
                           ((0.0, 2.0), (0, 1)), ((0.0, -2.0), (0, -1))):
        moved = lm.copy()
        moved[LEFT + RIGHT, 0] += dx
        moved[LEFT + RIGHT, 1] += dy
        d = gaze_lib.compute_gaze(moved) - g0
        for eye, width in ((0, width_l), (1, width_r)):
            dgx, dgy = d[2 * eye], d[2 * eye + 1]
            main, cross = (dgx, dgy) if sign[0] else (dgy, dgx)
            assert np.sign(main) == sum(sign)
            assert abs(cross) < 0.3 * abs(main)  # corner lines tilt ~10 deg (canthal tilt)
            # the corner line of the real face is nearly level: the change is ~ shift / width
            assert abs(np.hypot(dgx, dgy) - 2.0 / width) < 0.05 * 2.0 / width
    # moving only one eye's iris changes only that eye's numbers
    moved = lm.copy()
    moved[LEFT, 0] += 2.0
    d = gaze_lib.compute_gaze(moved) - g0
    assert d[0] > 0 and np.abs(d[2:]).max() < 1e-12


def test_gaze_ignores_in_plane_rotation_translation_and_scale(astronaut_landmarks):
    lm = astronaut_landmarks
    a = np.radians(25.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = lm.copy()
    moved[:, :2] = 1.7 * lm[:, :2] @ rot.T + [13.0, -40.0]
    np.testing.assert_allclose(gaze_lib.compute_gaze(moved), gaze_lib.compute_gaze(lm),
                               atol=1e-9)


def test_flipped_landmarks_mirror_gaze_by_the_layout_rule(astronaut_landmarks):
    lm = astronaut_landmarks.copy()
    lm[LEFT, 0] += 1.5  # an asymmetric gaze so the test can tell the eyes apart
    lm[RIGHT, 1] -= 1.0
    g = gaze_lib.compute_gaze(lm)
    g_flip = gaze_lib.compute_gaze(_flip_landmarks(lm, 512))
    np.testing.assert_allclose(g_flip, _gaze_field(g), atol=1e-9)
    assert np.abs(g_flip - g).max() > 0.02


def test_real_flipped_image_follows_the_flip_rule(astronaut, landmarker, astronaut_landmarks):
    g = gaze_lib.compute_gaze(astronaut_landmarks)
    lm_f = landmarker.detect_one(np.ascontiguousarray(astronaut[:, ::-1])).landmarks
    g_f = gaze_lib.compute_gaze(lm_f)
    err = np.abs(g_f - _gaze_field(g)).max()
    print(f"gaze {np.round(g, 4)}; flipped image {np.round(g_f, 4)}; max |flip rule error| "
          f"{err:.4f}")
    assert err < 0.03


def test_inverse_places_irises_back():
    rng = np.random.default_rng(0)
    pts = canonical.template_points()[:, :2] * 50 + 100
    g = rng.uniform(-0.2, 0.2, 4)
    centres = gaze_lib.iris_centres_from_gaze(pts, g)
    lm = np.concatenate([pts, np.zeros((478, 1))], 1)
    lm[LEFT, :2] = centres["left"]
    lm[RIGHT, :2] = centres["right"]
    np.testing.assert_allclose(gaze_lib.compute_gaze(lm), g, atol=1e-12)


def test_needs_iris_landmarks():
    with pytest.raises(ValueError, match="refine_landmarks"):
        gaze_lib.compute_gaze(np.zeros((468, 3)))
