"""MotionExtractor (face/motion.py): layout, NaN frames, expression basis, flip consistency."""

import numpy as np
import pytest

from mimaface_jax.face import canonical
from mimaface_jax.face import expression as expr_lib
from mimaface_jax.face import gaze as gaze_lib
from mimaface_jax.face import pose as pose_lib
from mimaface_jax.face.motion import MotionExtractor
from mimaface_jax.face.motion_layout import facemesh_layout


@pytest.fixture(scope="module")
def tracked(synth_video, landmarker):
    """Landmarks of part A's moving-astronaut clip (with blank frames) -> (track, size)."""
    from mimaface_jax.face.media_io import read_video

    frames, _ = read_video(synth_video[0])
    return landmarker.track_video(frames), (frames.shape[2], frames.shape[1])


def test_vectors_follow_the_layout_and_report_missing_frames(tracked, synth_video):
    track, size = tracked
    written = synth_video[1]
    blank = [t for t in range(len(written)) if written[t].std() == 0]  # uniform grey frames
    assert blank
    ext = MotionExtractor(num_expression=64)
    res = ext.extract(track.landmarks, size)
    layout = facemesh_layout(64)
    assert res.layout == layout and res.vectors.shape == (len(track.found), layout.size)
    assert res.vectors.dtype == np.float32
    assert res.missing_frames == blank
    assert np.isnan(res.vectors[blank]).all()
    ok = res.valid
    assert np.isfinite(res.vectors[ok]).all()
    parts = layout.split(res.vectors)
    for name in layout.names:
        np.testing.assert_array_equal(parts[name], res.fields[name])
    # without a basis the expression is zero; pose and gaze are the modules' numbers
    assert np.all(parts["expression"][ok] == 0)
    fit = pose_lib.estimate_pose(track.landmarks, size)
    np.testing.assert_allclose(parts["roll"][ok, 0], fit.roll[ok], atol=1e-4)
    np.testing.assert_allclose(parts["log_scale"][ok, 0], fit.log_scale[ok], atol=1e-5)
    np.testing.assert_allclose(parts["gaze"][ok], gaze_lib.compute_gaze(track.landmarks)[ok],
                               atol=1e-6)
    # the clip rolls by +-12 degrees: the measured roll spans about that range
    span = parts["roll"][ok].max() - parts["roll"][ok].min()
    print(f"roll span over the clip {span:.2f} deg (true 24)")
    assert 20 < span < 28


def test_expression_with_a_basis(tracked):
    track, size = tracked
    rng = np.random.default_rng(0)
    shapes = expr_lib.canonical_shapes(track.landmarks[track.found])
    offsets = expr_lib.expression_offsets(shapes, shapes.mean(0))
    train = np.concatenate([offsets, 0.01 * rng.normal(size=(40, 1404))])
    basis = expr_lib.ExpressionPCA.fit(train, num_components=8)
    with pytest.raises(ValueError, match="num_expression=8"):
        MotionExtractor(basis, num_expression=64)
    ext = MotionExtractor(basis, num_expression=8, neutral="first")
    res = ext.extract(track.landmarks, size)
    first = int(np.flatnonzero(track.found)[0])
    np.testing.assert_allclose(res.neutral_shape, res.shapes[first])
    expr = res.fields["expression"]
    np.testing.assert_allclose(expr[first], basis.project(np.zeros(1404)), atol=1e-5)
    want = basis.project(expr_lib.expression_offsets(res.shapes, res.shapes[first]))
    np.testing.assert_allclose(expr[res.valid], want[res.valid], rtol=1e-5, atol=1e-4)
    assert np.isnan(expr[~res.valid]).all()
    # an explicit neutral shape (e.g. of the same person elsewhere) overrides the choice
    res2 = ext.extract(track.landmarks, size, neutral_shape=res.shapes[5])
    np.testing.assert_allclose(res2.fields["expression"][5], basis.project(np.zeros(1404)),
                               atol=1e-5)


def test_flipped_image_gives_the_mirrored_pose_and_gaze(astronaut, landmarker):
    import cv2

    image = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((225.0, 125.0), 8.0, 1.0),
                           (512, 512), borderMode=cv2.BORDER_REFLECT)
    flipped = np.ascontiguousarray(image[:, ::-1])
    lms = np.stack([landmarker.detect_one(image).landmarks,
                    landmarker.detect_one(flipped).landmarks])
    ext = MotionExtractor(num_expression=4)
    res = ext.extract(lms, (512, 512))
    layout = ext.layout
    errors = {}
    for name in ("yaw", "pitch", "roll", "translation", "log_scale", "gaze"):
        f = layout.field(name)
        v = res.fields[name][0]
        if f.flip_perm is not None:
            v = v[list(f.flip_perm)]
        if f.flip_sign is not None:
            v = v * np.asarray(f.flip_sign)
        errors[name] = float(np.abs(v - res.fields[name][1]).max())
    print("flip-rule errors:", {k: round(v, 4) for k, v in errors.items()})
    assert errors["yaw"] < 1.5 and errors["roll"] < 1.5 and errors["pitch"] < 2.0
    assert errors["translation"] < 0.005 and errors["log_scale"] < 0.02
    assert errors["gaze"] < 0.03


def test_bad_input_is_rejected():
    ext = MotionExtractor(num_expression=4)
    with pytest.raises(ValueError, match="478"):
        ext.extract(np.zeros((3, 468, 3)), (64, 64))
    with pytest.raises(ValueError, match="image_size"):
        ext.extract(np.zeros((1, 478, 3)) + canonical.template_points(), (0, 64))
    res = ext.extract(np.full((2, 478, 3), np.nan), (64, 64))  # no face anywhere: reported
    assert res.missing_frames == [0, 1] and np.isnan(res.vectors).all()
