"""Temporal metrics: inter-clip discontinuity on a smooth video cut at arbitrary points (1.0)
and with an injected jump (well above 1); flicker and landmark jitter on known signals."""

import numpy as np
import pytest

from mimaface_jax.metrics.temporal import flicker, interclip_discontinuity, landmark_jitter, static_mask


def smooth_video(frames: int = 40, size: int = 32) -> np.ndarray:
    """A pattern drifting at constant speed: every consecutive frame pair changes about equally."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    video = []
    for t in range(frames):
        phase = 0.15 * t
        img = 127.5 + 100 * np.sin(2 * np.pi * x / 16 + phase) * np.cos(2 * np.pi * y / 21 + 0.5 * phase)
        video.append(np.repeat(img[..., None], 3, axis=2))
    return np.round(np.stack(video)).astype(np.uint8)       # (T, H, W, 3)


def test_smooth_video_cut_anywhere_has_discontinuity_one():
    video = smooth_video()
    for starts in ([0, 7, 13, 29], [0, 4, 8, 12, 16, 20, 24, 28, 32, 36], [0, 21]):
        d = interclip_discontinuity(video, starts)
        assert d["discontinuity"] == pytest.approx(1.0, rel=0.05), starts


def test_injected_jump_at_a_boundary_is_well_above_one():
    video = smooth_video().astype(np.int16)
    video[16:] += 40                                       # a brightness jump entering clip 3
    video = np.clip(video, 0, 255).astype(np.uint8)
    d = interclip_discontinuity(video, [0, 8, 16, 24, 32])
    assert d["discontinuity"] > 2.0
    # the jump not at a boundary is in the denominator instead: below 1
    assert interclip_discontinuity(video, [0, 10, 20, 30])["discontinuity"] < 1.0


def test_discontinuity_hand_computed():
    # 1-pixel video with values 0, 1, 2, 10, 11: changes 1, 1, 8, 1; clip starts at 3
    video = np.array([0, 1, 2, 10, 11], np.uint8).reshape(5, 1, 1, 1)
    d = interclip_discontinuity(video, [0, 3])
    assert d["boundary_change"] == pytest.approx(8 / 255)
    assert d["within_change"] == pytest.approx(1 / 255)
    assert d["discontinuity"] == pytest.approx(8.0)
    assert np.isnan(interclip_discontinuity(video, [0])["discontinuity"])
    with pytest.raises(ValueError, match="outside"):
        interclip_discontinuity(video, [0, 5])


def test_flicker_in_static_background():
    truth = np.zeros((4, 8, 8, 3), np.uint8)
    truth[:, :4] = np.arange(4)[:, None, None, None] * 50   # top half moves, bottom half static
    mask = static_mask(truth)
    assert mask[4:].all() and not mask[:4].any()
    generated = truth.copy()
    generated[1::2, 4:] = 10                                 # the background flickers 0 <-> 10
    assert flicker(generated, mask) == pytest.approx(10 / 255)
    assert flicker(truth, mask) == 0.0


def test_landmark_jitter():
    t = np.arange(10, dtype=np.float64)
    steady = np.stack([np.stack([t * 2.0, t * 0.5], -1)] * 3, axis=1)   # (T, 3, 2) constant velocity
    assert landmark_jitter(steady) == pytest.approx(0.0, abs=1e-12)
    shaky = steady.copy()
    shaky[5] += [3.0, 4.0]             # one frame off by 5 px: second differences 5, 10, 5 at t = 4..6
    assert landmark_jitter(shaky) == pytest.approx(20.0 / 8)
