"""AED / APD / gaze error: zero for identical motion, the offset for a shifted one."""

import numpy as np
import pytest

from mimaface_jax.data.synth_motion import synth_layout
from mimaface_jax.face.motion_layout import facemesh_layout
from mimaface_jax.metrics.motion_errors import motion_errors


def test_identical_motion_has_zero_errors():
    layout = facemesh_layout(8)
    m = np.random.default_rng(0).normal(size=(10, layout.size)).astype(np.float32)
    e = motion_errors(m, m, layout)
    assert e == {"aed": 0.0, "apd_degrees": 0.0, "gaze_error": 0.0, "frames_left_out": 0}


def test_shifted_motion_errors_equal_the_offsets():
    layout = facemesh_layout(8)
    rng = np.random.default_rng(1)
    driving = rng.normal(size=(12, layout.size))
    generated = driving.copy()
    generated[:, layout.slice("expression")] += 0.25 * np.sign(rng.normal(size=(12, 8)))   # |offset| 0.25
    generated[:, layout.slice("yaw")] += 5.0
    generated[:, layout.slice("pitch")] -= 5.0
    generated[:, layout.slice("roll")] += 5.0
    generated[:, layout.slice("translation")] += 100.0   # not an angle: not in APD
    generated[:, layout.slice("gaze")] += 0.1
    generated[3] = np.nan                                # no face in frame 3: left out
    e = motion_errors(generated, driving, layout)
    assert e["aed"] == pytest.approx(0.25, abs=1e-9)
    assert e["apd_degrees"] == pytest.approx(5.0, abs=1e-9)
    assert e["gaze_error"] == pytest.approx(0.1, abs=1e-9)
    assert e["frames_left_out"] == 1


def test_synth_layout_has_no_gaze_and_shapes_are_checked():
    layout = synth_layout()
    m = np.zeros((4, layout.size))
    shifted = m.copy()
    shifted[:, layout.group_indices("expression")] = 0.5
    e = motion_errors(shifted, m, layout)
    assert e["aed"] == pytest.approx(0.5) and e["apd_degrees"] == 0.0
    if layout.group_indices("gaze").size == 0:
        assert np.isnan(e["gaze_error"])
    with pytest.raises(ValueError, match="must both be"):
        motion_errors(m[:, :-1], m[:, :-1], layout)
