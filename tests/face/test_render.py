"""The condition render (face/render.py): determinism, geometry follows the pose, sizes."""

import cv2
import numpy as np
import pytest

from mimaface_jax.face import canonical
from mimaface_jax.face import expression as expr_lib
from mimaface_jax.face import render as render_lib
from mimaface_jax.face.motion import MotionExtractor

TEMPLATE = canonical.template_points()


def _mask(image):
    return image.any(-1)


def _centroid(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def _axis_angle(mask):
    """Principal axis angle of a mask, degrees, in image coordinates (x right, y down)."""
    ys, xs = np.nonzero(mask)
    x, y = xs - xs.mean(), ys - ys.mean()
    return 0.5 * np.degrees(np.arctan2(2 * (x * y).mean(), (x * x).mean() - (y * y).mean()))


def _wrap180(a):
    return (a + 90.0) % 180.0 - 90.0


def test_deterministic_bytes():
    pose = {"yaw": 17.0, "pitch": -8.0, "roll": 5.0, "translation": (0.03, -0.02),
            "log_scale": np.log(0.3)}
    a = render_lib.render_condition(TEMPLATE, pose=pose, gaze=(0.1, 0.0, -0.1, 0.05), size=256)
    b = render_lib.render_condition(TEMPLATE.copy(), pose=dict(pose),
                                    gaze=(0.1, 0.0, -0.1, 0.05), size=256)
    assert a.dtype == np.uint8 and a.shape == (256, 256, 3)
    assert a.tobytes() == b.tobytes()
    assert _mask(a).mean() > 0.1  # something was drawn


def test_translation_moves_the_silhouette_by_the_expected_pixels():
    size, small = 256, np.log(0.15)  # a small face, so that it stays inside the image
    base = _centroid(_mask(render_lib.render_condition(TEMPLATE, pose={"log_scale": small},
                                                       size=size)))
    for t in ((0.1, -0.05), (-0.2, 0.15)):
        moved = _centroid(_mask(render_lib.render_condition(
            TEMPLATE, pose={"translation": t, "log_scale": small}, size=size)))
        shift = moved - base
        print(f"translation {t}: centroid shift {np.round(shift, 3)} px, expected "
              f"{np.array(t) * size}")
        np.testing.assert_allclose(shift, np.array(t) * size, atol=0.5)
    # the template origin lands on the image centre for translation 0
    assert np.abs(base - size / 2).max() < 0.06 * size


@pytest.mark.parametrize("roll", [-30.0, -10.0, 15.0, 35.0])
def test_roll_rotates_the_principal_axis(roll):
    size = 256
    base = _axis_angle(_mask(render_lib.render_condition(TEMPLATE, size=size)))
    rolled = _axis_angle(_mask(render_lib.render_condition(
        TEMPLATE, pose={"roll": roll}, size=size)))
    # counter-clockwise on screen = clockwise in y-down coordinates: the angle goes down
    err = _wrap180(base - rolled - roll)
    print(f"roll {roll}: axis {base:.2f} -> {rolled:.2f} deg (error {err:.3f})")
    assert abs(err) < 1.0


def test_scale_and_resolution():
    areas = {}
    for size in (64, 256, 512):
        img = render_lib.render_condition(TEMPLATE, pose={"translation": (0.05, 0.02)},
                                          size=size)
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        m = _mask(img)
        areas[size] = m.mean()
        np.testing.assert_allclose(_centroid(m) / size, [0.55, 0.52], atol=0.06)
        np.testing.assert_allclose(_centroid(m) / size, _centroid(_mask(
            render_lib.render_condition(TEMPLATE, pose={"translation": (0.05, 0.02)},
                                        size=512))) / 512, atol=1.0 / size)
    print("mask area fraction by size:", {k: round(v, 4) for k, v in areas.items()})
    # cv2 fills every pixel an edge touches: ~half a pixel of rim, 5 % of the area at 64 px
    assert abs(areas[64] / areas[512] - 1) < 0.08 and abs(areas[256] / areas[512] - 1) < 0.015
    small = _mask(render_lib.render_condition(TEMPLATE, pose={"log_scale": np.log(0.15)},
                                              size=256)).sum()
    big = _mask(render_lib.render_condition(TEMPLATE, pose={"log_scale": np.log(0.30)},
                                            size=256)).sum()
    print(f"area ratio for scale x2: {big / small:.3f}")
    assert abs(big / small - 4.0) < 0.12


def _iris_centroid(image, half):
    """Centroid of the iris-coloured pixels in the image's left or right half."""
    iris = (image == np.array(render_lib.IRIS, np.uint8)).all(-1)
    w = image.shape[1]
    if half == "left":
        iris[:, w // 2:] = False
    else:
        iris[:, :w // 2] = False
    return _centroid(iris)


def test_gaze_moves_the_irises():
    size = 512
    centre = render_lib.render_condition(TEMPLATE, gaze=(0, 0, 0, 0), size=size)
    for gaze, direction in (((0.15, 0, 0.15, 0), (1, 0)), ((-0.15, 0, -0.15, 0), (-1, 0)),
                            ((0, 0.1, 0, 0.1), (0, 1)), ((0, -0.1, 0, -0.1), (0, -1))):
        moved = render_lib.render_condition(TEMPLATE, gaze=gaze, size=size)
        for half in ("left", "right"):
            d = _iris_centroid(moved, half) - _iris_centroid(centre, half)
            k = 0 if direction[0] else 1
            assert np.sign(d[k]) == sum(direction) and abs(d[k]) > 2.0, (gaze, half, d)


def test_render_from_motion_lands_on_the_real_face(astronaut, landmarker):
    lm = landmarker.detect_one(astronaut).landmarks
    ext = MotionExtractor(num_expression=4)
    motion = ext.extract(lm, (512, 512)).vectors[0]
    image = render_lib.render_from_motion(None, motion, ext.layout, size=512,
                                          source_landmarks=lm)
    oval = canonical.index_sets()["face_oval"]
    hull = cv2.convexHull(lm[oval, :2].astype(np.float32)).astype(np.int32)
    target = np.zeros((512, 512), np.uint8)
    cv2.fillPoly(target, [hull], 1)
    mask = _mask(image)
    iou = (mask & (target > 0)).sum() / (mask | (target > 0)).sum()
    print(f"render of the astronaut's own motion vs her landmark outline: IoU {iou:.4f}")
    assert iou > 0.9
    # the same through a canonical shape and at another resolution: same picture, scaled
    shape = expr_lib.canonical_shapes(lm)[0]
    small = render_lib.render_from_motion(shape, motion, ext.layout, size=128)
    down = cv2.resize(mask.astype(np.float32), (128, 128), interpolation=cv2.INTER_AREA) > 0.5
    assert ((_mask(small) ^ down).mean()) < 0.01


def test_expression_changes_the_mouth_and_needs_a_basis():
    layout = MotionExtractor(num_expression=2).layout
    y = TEMPLATE[:468, 1]
    jaw = np.clip((y - TEMPLATE[14, 1]) / (y.max() - TEMPLATE[14, 1]), 0, 1)
    mode = np.stack([0 * y, 0.3 * jaw, 0 * y], 1).reshape(-1)
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(30, 1)) * mode + 1e-3 * rng.normal(size=(30, 1404))
    basis = expr_lib.ExpressionPCA.fit(samples, num_components=2)
    closed = render_lib.render_condition(TEMPLATE, size=256)
    c = basis.project(mode)  # jaw drop of 0.3 template units
    opened = render_lib.render_condition(TEMPLATE, expression=c, basis=basis, size=256)
    grown = _mask(opened).sum() - _mask(closed).sum()
    lowest = lambda m: np.nonzero(m.any(1))[0].max()  # noqa: E731
    print(f"jaw-drop expression: mask grows by {grown} px, chin moves "
          f"{lowest(_mask(opened)) - lowest(_mask(closed))} px down")
    assert lowest(_mask(opened)) - lowest(_mask(closed)) > 0.2 * 0.25 * 256
    with pytest.raises(ValueError, match="without an expression basis"):
        render_lib.render_condition(TEMPLATE, expression=c, size=64)
    vec = np.zeros(layout.size, np.float32)
    vec[layout.slice("log_scale")] = np.log(0.25)
    vec[layout.slice("expression")] = c
    with pytest.raises(ValueError, match="no expression basis"):
        render_lib.render_from_motion(TEMPLATE, vec, layout, size=64)
    np.testing.assert_array_equal(
        render_lib.render_from_motion(TEMPLATE, vec, layout, basis=basis, size=256),
        render_lib.render_condition(TEMPLATE, c, basis, pose={"log_scale": np.log(0.25)},
                                    gaze=np.zeros(4), size=256))
    vec[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        render_lib.render_from_motion(TEMPLATE, vec, layout, basis=basis, size=64)
    with pytest.raises(ValueError, match="exactly one"):
        render_lib.render_from_motion(None, vec, layout, basis=basis, size=64)
