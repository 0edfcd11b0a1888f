"""Relative and absolute retargeting (face/retarget.py)."""

import numpy as np
import pytest

from mimaface_jax.face.motion_layout import facemesh_layout
from mimaface_jax.face.retarget import retarget, retarget_absolute, retarget_relative

LAYOUT = facemesh_layout(num_expression=6)


def _motion(rng, t):
    return rng.normal(size=(t, LAYOUT.size)).astype(np.float32)


@pytest.mark.parametrize("reference", [0, 3, -1])
def test_relative_reference_frame_maps_to_the_source(reference):
    rng = np.random.default_rng(0)
    source, driving = _motion(rng, 1)[0], _motion(rng, 7)
    out = retarget_relative(source, driving, LAYOUT, reference=reference)
    rel = np.concatenate([LAYOUT.group_indices("pose"), LAYOUT.group_indices("expression")])
    gaze = LAYOUT.group_indices("gaze")
    # the reference frame reproduces the source's own pose and expression exactly
    np.testing.assert_array_equal(out[reference, rel], source[rel])
    # other frames move by the driving change from the reference
    np.testing.assert_allclose(out[:, rel] - source[rel],
                               driving[:, rel] - driving[reference, rel], atol=1e-6)
    # gaze is the driving gaze as is
    np.testing.assert_array_equal(out[:, gaze], driving[:, gaze])
    # concretely: yaw = source yaw + driving yaw change
    yaw = LAYOUT.slice("yaw")
    np.testing.assert_allclose(out[:, yaw], source[yaw] + driving[:, yaw] - driving[reference, yaw],
                               atol=1e-6)


def test_absolute_is_the_driving_motion():
    rng = np.random.default_rng(1)
    source, driving = _motion(rng, 1)[0], _motion(rng, 5)
    out = retarget_absolute(source, driving, LAYOUT)
    np.testing.assert_array_equal(out, driving)
    assert out is not driving
    np.testing.assert_array_equal(retarget(source, driving, LAYOUT, "absolute"), driving)
    np.testing.assert_array_equal(retarget(source, driving, LAYOUT, "relative", reference=2),
                                  retarget_relative(source, driving, LAYOUT, reference=2))


def test_relative_groups_are_configurable():
    rng = np.random.default_rng(2)
    source, driving = _motion(rng, 1)[0], _motion(rng, 4)
    out = retarget_relative(source, driving, LAYOUT, relative_groups=("pose",))
    expr = LAYOUT.group_indices("expression")
    np.testing.assert_array_equal(out[:, expr], driving[:, expr])


def test_errors():
    rng = np.random.default_rng(3)
    source, driving = _motion(rng, 1)[0], _motion(rng, 4)
    with pytest.raises(ValueError, match="outside the driving clip"):
        retarget_relative(source, driving, LAYOUT, reference=4)
    bad = driving.copy()
    bad[1] = np.nan
    with pytest.raises(ValueError, match="reference frame 1 has no motion"):
        retarget_relative(source, bad, LAYOUT, reference=1)
    # NaN frames elsewhere stay NaN (reported upstream), they do not break the others
    out = retarget_relative(source, bad, LAYOUT, reference=0)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2, 3]]).all()
    with pytest.raises(ValueError, match=r"\(T, 16\)"):
        retarget_relative(source, driving[:, :-1], LAYOUT)
    with pytest.raises(ValueError, match="source motion has NaN"):
        retarget_relative(np.full(LAYOUT.size, np.nan), driving, LAYOUT)
    with pytest.raises(ValueError, match="mode"):
        retarget(source, driving, LAYOUT, "sideways")
