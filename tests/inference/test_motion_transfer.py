"""Motion transfer settings: the reference frame, smoothing, groups (numpy only)."""

import numpy as np
import pytest

from mimaface_jax.face.motion_layout import facemesh_layout
from mimaface_jax.inference.motion_transfer import TransferSettings, smooth_motion, transfer

LAYOUT = facemesh_layout(4)


def _driving(t=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((t, LAYOUT.size)).astype(np.float32)


def test_closest_reference_is_the_driving_frame_nearest_the_source_pose():
    driving = _driving()
    yaw, pitch, roll = (LAYOUT.slice(n).start for n in ("yaw", "pitch", "roll"))
    driving[:, yaw] = [20, 12, 3, -5, 9, 30]
    driving[:, pitch] = driving[:, roll] = 0
    source = np.zeros(LAYOUT.size, np.float32)
    source[yaw] = 2.0
    out, ref = transfer(source, driving, LAYOUT, TransferSettings(reference="closest"))
    assert ref == 2  # |3 - 2| is the smallest yaw distance
    pose = LAYOUT.group_indices("pose")
    np.testing.assert_allclose(out[2, pose], source[pose], atol=1e-6)
    _, first = transfer(source, driving, LAYOUT, TransferSettings())
    assert first == 0


def test_smoothing_is_a_centred_moving_average():
    driving = _driving(7)
    got = smooth_motion(driving, 3)
    padded = np.concatenate([driving[:1], driving, driving[-1:]])
    want = (padded[:-2] + padded[1:-1] + padded[2:]) / 3
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert smooth_motion(driving, 1) is driving


@pytest.mark.parametrize("bad", [dict(mode="sideways"), dict(reference="last"), dict(groups=("mouth",)),
                                 dict(groups=()), dict(smooth=0)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        TransferSettings(**bad)
