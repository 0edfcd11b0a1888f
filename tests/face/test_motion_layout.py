import numpy as np
import pytest

from mimaface_jax.face.motion_layout import MotionField, MotionLayout, facemesh_layout


def test_facemesh_layout_sizes_and_groups():
    layout = facemesh_layout(num_expression=10)
    assert layout.size == 1 + 1 + 1 + 2 + 1 + 10 + 4
    assert layout.group_sizes() == {"pose": 6, "expression": 10, "gaze": 4}
    vec = np.arange(layout.size, dtype=np.float32)
    parts = layout.split(vec)
    assert parts["translation"].tolist() == [3.0, 4.0]
    np.testing.assert_array_equal(layout.join(parts), vec)


def test_json_round_trip_keeps_flip_rules():
    layout = facemesh_layout(num_expression=3)
    again = MotionLayout.from_json(layout.to_json())
    assert again == layout


def test_flip_mirrors_pose_and_gaze_and_is_an_involution():
    layout = MotionLayout("t", (
        MotionField("yaw", 1, "pose", flip_sign=(-1.0,)),
        MotionField("pitch", 1, "pose"),
        MotionField("gaze", 4, "gaze", flip_sign=(-1.0, 1.0, -1.0, 1.0), flip_perm=(2, 3, 0, 1)),
    ))
    vec = np.array([10.0, 5.0, 0.1, 0.2, 0.3, 0.4], np.float32)
    flipped = layout.flip(vec)
    np.testing.assert_allclose(flipped, [-10.0, 5.0, -0.3, 0.4, -0.1, 0.2])
    np.testing.assert_array_equal(layout.flip(flipped), vec)


def test_flip_refuses_fields_without_closed_form_mirror():
    layout = facemesh_layout(num_expression=4)
    with pytest.raises(ValueError, match="expression"):
        layout.flip(np.zeros(layout.size, np.float32))


def test_errors_name_the_problem():
    layout = facemesh_layout(num_expression=4)
    with pytest.raises(ValueError, match="expects vectors of size"):
        layout.split(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="missing fields"):
        layout.join({"yaw": np.zeros(1)})
    with pytest.raises(KeyError, match="no field 'mouth'"):
        layout.slice("mouth")
    with pytest.raises(ValueError, match="duplicate"):
        MotionLayout("x", (MotionField("a", 1, "pose"), MotionField("a", 1, "pose")))
    with pytest.raises(ValueError, match="group"):
        MotionField("a", 1, "head")
