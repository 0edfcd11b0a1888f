"""SynthFaces: determinism, motion sweeps that move the right parts, cross-reenactment ground
truth, disjoint splits, resolution and the horizontal-flip rule."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from mimaface_jax.data import synth_motion as sm
from mimaface_jax.data import synth_render as sr
from mimaface_jax.data.synth_faces import (SPLITS, SynthFaces, SynthFacesConfig,
                                           cross_reenactment, motion_mask, synth_layout)
from mimaface_jax.data.synth_identity import identity_code_names, sample_identity
from mimaface_jax.face.motion_layout import facemesh_layout

RES = 64
TINY = SynthFacesConfig(resolution=RES, num_frames=6, seed=3, train_identities=5,
                        validation_identities=2, test_identities=3, videos_per_identity=2)


def _render(identity, resolution=RES, **fields):
    return sr.render_frame(identity, sm.make_motion(**fields), resolution).astype(np.int64)


def _disc(centre, radius, size=RES):
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius * radius


def _centroid(weight):
    yy, xx = np.mgrid[0:weight.shape[0], 0:weight.shape[1]] + 0.5
    total = weight.sum()
    return np.array([(xx * weight).sum() / total, (yy * weight).sum() / total])


def _a_px(identity, log_scale=0.0, size=RES):
    """Face half-width in pixels (the head model's length unit)."""
    return identity.face_size * size * np.exp(log_scale)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_in_a_fresh_process():
    video = SynthFaces(TINY).generate_video(1, 1, "train")
    digest = hashlib.sha256(video["frames"].tobytes() + video["condition"].tobytes()
                            + video["motion"].tobytes()).hexdigest()
    code = ("import hashlib; from mimaface_jax.data.synth_faces import SynthFaces, "
            "SynthFacesConfig as C; v = SynthFaces(C(resolution=64, num_frames=6, seed=3, "
            "train_identities=5, validation_identities=2, test_identities=3, "
            "videos_per_identity=2)).generate_video(1, 1, 'train'); print(hashlib.sha256("
            "v['frames'].tobytes() + v['condition'].tobytes() + v['motion'].tobytes())"
            ".hexdigest())")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert fresh == digest
    sr._assets.cache_clear()  # the cached and uncached paths must agree too
    again = SynthFaces(TINY).generate_video(1, 1, "train")
    for key in ("frames", "condition", "motion", "identity_code"):
        assert np.array_equal(again[key], video[key]), key
    assert again["frames"].dtype == np.uint8 and again["condition"].dtype == np.uint8


def test_different_seeds_videos_and_identities_differ():
    base = SynthFaces(TINY).generate_video(0, 0, "train")
    other_seed = SynthFaces(SynthFacesConfig(**{**TINY.__dict__, "seed": 4})).generate_video(
        0, 0, "train")
    other_video = SynthFaces(TINY).generate_video(0, 1, "train")
    other_person = SynthFaces(TINY).generate_video(1, 0, "train")
    for other in (other_seed, other_video, other_person):
        assert np.abs(other["frames"].astype(int) - base["frames"]).mean() > 1.0
        assert not np.allclose(other["motion"], base["motion"]) or other is other_person
    assert not np.allclose(other_seed["identity_code"], base["identity_code"])
    assert not np.allclose(other_person["identity_code"], base["identity_code"])
    assert np.array_equal(other_video["identity_code"], base["identity_code"])


# --------------------------------------------------------------------------------- layout


def test_layout_pose_fields_match_facemesh_and_flip_rules():
    layout, real = synth_layout(), facemesh_layout()
    pose = [f for f in layout.fields if f.group == "pose"]
    assert pose == [f for f in real.fields if f.group == "pose"]
    assert layout.group_sizes() == {"pose": 6, "expression": 4, "gaze": 4}
    assert layout.size == sm.MOTION_SIZE
    assert [f.name for f in layout.fields if f.group == "expression"] == [
        "mouth_open", "smile", "brows", "blink"]
    assert type(layout).from_json(layout.to_json()) == layout
    m = sm.make_motion(yaw=10, pitch=5, roll=-7, translation=[0.02, 0.03], log_scale=0.1,
                       mouth_open=0.4, smile=0.5, brows=0.6, blink=0.7,
                       gaze=[0.1, 0.2, 0.3, 0.4])
    flipped = layout.split(layout.flip(m))
    np.testing.assert_array_equal(flipped["yaw"], [-10])
    np.testing.assert_array_equal(flipped["pitch"], [5])
    np.testing.assert_array_equal(flipped["roll"], [7])
    np.testing.assert_allclose(flipped["translation"], [-0.02, 0.03])
    np.testing.assert_allclose(flipped["gaze"], [-0.3, 0.4, -0.1, 0.2])
    for name, value in (("mouth_open", 0.4), ("smile", 0.5), ("brows", 0.6), ("blink", 0.7)):
        np.testing.assert_allclose(flipped[name], [value])


def test_sampled_motion_is_smooth_in_range_and_blinks():
    rng = np.random.default_rng(0)
    m = sm.sample_motion(rng, 250, fps=25.0)                     # 10 s
    assert m.shape == (250, sm.MOTION_SIZE) and m.dtype == np.float32
    assert np.all(m >= sm.RANGES[:, 0]) and np.all(m <= sm.RANGES[:, 1])
    step = np.abs(np.diff(m, axis=0)).max(0)
    assert step[sm.YAW] < 3.0 and step[sm.PITCH] < 3.0 and step[sm.ROLL] < 3.0  # degrees/frame
    assert m[:, sm.YAW].std() > 1.0                              # it does move
    assert m[:, sm.BLINK].max() > 0.9 and np.median(m[:, sm.BLINK]) < 0.05
    assert m[:, sm.MOUTH_OPEN].max() > 0.5
    again = sm.sample_motion(np.random.default_rng(0), 250)
    assert np.array_equal(m, again)


def test_identity_code_is_deterministic_and_named():
    a, b = sample_identity(7, 11), sample_identity(7, 11)
    assert a == b and np.array_equal(a.identity_code, b.identity_code)
    assert a.identity_code.shape == (len(identity_code_names()),)
    assert not np.allclose(a.identity_code, sample_identity(7, 12).identity_code)
    sym = sample_identity(7, 11, symmetric=True)
    assert sym.symmetric and sym.hair_part == 0.0


# -------------------------------------------------------------------------- motion sweeps


@pytest.mark.parametrize("identity_id", [0, 1, 2])
@pytest.mark.parametrize("pose", [{}, {"yaw": 18.0, "pitch": -8.0, "roll": 6.0,
                                       "translation": [0.03, -0.02], "log_scale": 0.1}])
def test_mouth_and_blink_change_only_their_regions(identity_id, pose):
    person = sample_identity(0, identity_id)
    base = _render(person, **pose)
    anchors = sr.project_anchors(person, sm.make_motion(**pose), RES)
    a_px = _a_px(person, pose.get("log_scale", 0.0))
    for field, visible in (("mouth_open", 30), ("smile", 12)):
        diff = np.abs(_render(person, **pose, **{field: 1.0}) - base).sum(-1)
        half_width = np.linalg.norm(anchors["mouth_corner_right"]
                                    - anchors["mouth_corner_left"]) / 2
        region = _disc(anchors["mouth"], 1.5 * half_width + 1.5)
        assert region.mean() < 0.08                     # the region is a small part of the image
        assert (diff > visible).sum() >= 4, field       # it changed visibly
        assert diff[region].sum() / diff.sum() > 0.95, field
    eye_radius = 1.4 * person.eye_width * a_px + 1.5
    eyes = _disc(anchors["eye_left"], eye_radius) | _disc(anchors["eye_right"], eye_radius)
    assert eyes.mean() < 0.06
    for fields in ({"blink": 1.0}, {"gaze": [0.8, 0.5, 0.8, 0.5]}):
        diff = np.abs(_render(person, **pose, **fields) - base).sum(-1)
        assert (diff > 30).sum() >= 6, fields
        assert diff[eyes].sum() / diff.sum() > 0.95, fields
    brow_radius = 1.5 * person.eye_width * a_px + 2.0
    brows = _disc(anchors["brow_left"], brow_radius) | _disc(anchors["brow_right"], brow_radius)
    diff = np.abs(_render(person, **pose, brows=1.0) - base).sum(-1)
    assert (diff > 20).sum() >= 4
    assert diff[brows].sum() / diff.sum() > 0.95


def _eye_weights(person, **pose):
    """Per-pixel weight of the eyes: what closing them changes."""
    return np.abs(_render(person, **pose, blink=1.0) - _render(person, **pose)).sum(-1)


def _split_eyes(w):
    """Eye weights (H, W) -> centroids of the image-left and image-right eye."""
    cx = _centroid(w)[0]
    columns = np.arange(w.shape[1]) + 0.5
    return _centroid(w * (columns < cx)), _centroid(w * (columns >= cx))


@pytest.mark.parametrize("identity_id", [0, 4])
def test_yaw_shifts_eyes_towards_documented_side_and_foreshortens(identity_id):
    person = sample_identity(0, identity_id)
    eye_x, spread = {}, {}
    for yaw in (-25.0, 0.0, 25.0):
        left, right = _split_eyes(_eye_weights(person, yaw=yaw))
        anchors = sr.project_anchors(person, sm.make_motion(yaw=yaw), RES)
        assert np.abs(left - anchors["eye_left"]).max() < 0.75, (yaw, left)
        assert np.abs(right - anchors["eye_right"]).max() < 0.75, (yaw, right)
        eye_x[yaw] = 0.5 * (left[0] + right[0])
        spread[yaw] = right[0] - left[0]
    # yaw > 0 turns the face towards +x: the eyes move right (several pixels at 64 px).
    assert eye_x[25.0] - eye_x[0.0] > 2.0 and eye_x[0.0] - eye_x[-25.0] > 2.0
    assert spread[25.0] < 0.97 * spread[0.0] and spread[-25.0] < 0.97 * spread[0.0]


def test_roll_rotates_the_eye_line_counter_clockwise():
    person = sample_identity(0, 2)
    for roll in (-12.0, 10.0):
        left, right = _split_eyes(_eye_weights(person, roll=roll))
        angle = np.degrees(np.arctan2(-(right[1] - left[1]), right[0] - left[0]))
        assert abs(angle - roll) < 2.0, (roll, angle)


def test_translation_and_scale_move_the_face_by_the_right_pixels():
    person = sample_identity(0, 5)
    cond = sr.render_condition(person, sm.make_motion(), RES).astype(np.int64)
    shifted = sr.render_condition(person, sm.make_motion(translation=[4 / RES, -3 / RES]),
                                  RES).astype(np.int64)
    # A whole-pixel translation is an exact shift of the head render.
    assert np.abs(shifted[:-3, 4:] - cond[3:, :-4]).max() <= 1
    face, moved = cond.sum(-1) > 0, shifted.sum(-1) > 0
    np.testing.assert_allclose(_centroid(moved) - _centroid(face), [4.0, -3.0], atol=0.05)
    bigger = sr.render_condition(person, sm.make_motion(log_scale=0.12), RES).sum(-1) > 0
    np.testing.assert_allclose(bigger.sum() / face.sum(), np.exp(2 * 0.12), rtol=0.04)
    # The RGB frame moves with it: the eyes' centroid shifts by the same pixels.
    np.testing.assert_allclose(
        _centroid(_eye_weights(person, translation=[4 / RES, -3 / RES]))
        - _centroid(_eye_weights(person)), [4.0, -3.0], atol=0.3)


def test_gaze_moves_the_irises():
    person = sample_identity(0, 1)
    anchors = sr.project_anchors(person, sm.make_motion(), RES)
    ahead = _render(person).mean(-1)
    # The first gaze pair drives the image-left eye only, the second the image-right eye.
    radius = 1.4 * person.eye_width * _a_px(person) + 1.5
    for eye, gaze in (("eye_left", [0.8, 0.3, 0.0, 0.0]), ("eye_right", [0.0, 0.0, 0.8, 0.3])):
        diff = np.abs(_render(person, gaze=gaze) - _render(person)).sum(-1)
        assert diff.sum() > 0 and diff[_disc(anchors[eye], radius)].sum() == diff.sum(), eye
    for axis, value in ((0, 0.8), (0, -0.8), (1, 0.6)):
        gaze = np.zeros(2)
        gaze[axis] = value
        # Where the iris arrives the eye gets darker; that is off the eye centre towards gaze.
        darker = np.maximum(ahead - _render(person, gaze=np.tile(gaze, 2)).mean(-1), 0.0)
        for eye, centroid in zip(("eye_left", "eye_right"), _split_eyes(darker)):
            offset = (centroid - anchors[eye])[axis]
            assert offset * np.sign(value) > 0.4, (eye, axis, value, offset)


# ---------------------------------------------------------------- cross-identity reenactment


def test_cross_reenactment_equals_direct_render_and_identities_differ():
    data = SynthFaces(TINY)
    person_a = data.identity(0)
    motion_b = data.motion(2, 1)
    cross = cross_reenactment(person_a, motion_b, RES)
    assert cross.shape == (TINY.num_frames, RES, RES, 3) and cross.dtype == np.uint8
    for t, m in enumerate(motion_b):
        assert np.array_equal(cross[t], sr.render_frame(person_a, m, RES))
    video_b = data.generate_video(2, 1, "train")
    assert np.array_equal(video_b["motion"], motion_b)
    assert np.abs(video_b["frames"].astype(int) - cross).mean() > 5.0


# ------------------------------------------------------------------- splits and resolution


def test_splits_have_disjoint_identities():
    data = SynthFaces(TINY)
    ids = {split: set(data.identity_ids(split).tolist()) for split in SPLITS}
    assert [len(ids[s]) for s in SPLITS] == [5, 2, 3]
    assert not (ids["train"] & ids["validation"] or ids["train"] & ids["test"]
                or ids["validation"] & ids["test"])
    for split in SPLITS:
        assert all(data.split_of(i) == split for i in ids[split])
    codes = [tuple(data.identity(i).identity_code) for s in SPLITS for i in ids[s]]
    assert len(set(codes)) == len(codes)
    test_id = int(data.identity_ids("test")[0])
    with pytest.raises(ValueError, match="belongs to split 'test'"):
        data.generate_video(test_id, 0, "train")
    with pytest.raises(ValueError, match="in no split"):
        data.identity(TINY.train_identities)          # one past the last train identity
    # Growing the train split leaves the test people unchanged.
    grown = SynthFaces(SynthFacesConfig(**{**TINY.__dict__, "train_identities": 9}))
    assert grown.identity(test_id) == data.identity(test_id)


def test_generate_video_fields_and_resolution():
    video = SynthFaces(TINY).generate_video(int(SynthFaces(TINY).identity_ids("validation")[1]),
                                            1, "validation")
    assert video["frames"].shape == (6, 64, 64, 3) and video["condition"].shape == (6, 64, 64, 3)
    assert video["motion"].shape == (6, 14) and video["motion"].dtype == np.float32
    assert video["split"] == "validation" and video["video_idx"] == 1
    assert synth_layout().to_json() == video["motion_layout"]
    person = sample_identity(0, 3)
    m = sm.make_motion(yaw=12.0, mouth_open=0.6, gaze=[0.4, 0.0, 0.4, 0.0])
    big = sr.render_frame(person, m, 256)
    small = sr.render_frame(person, m, 64)
    assert big.shape == (256, 256, 3) and small.shape == (64, 64, 3)
    # The same scene at both resolutions: 256 area-averaged to 64 is close to the 64 render.
    pooled = big.reshape(64, 4, 64, 4, 3).mean((1, 3))
    assert np.abs(pooled - small).mean() < 3.0
    with pytest.raises(ValueError, match="shape"):
        sr.render_frame(person, np.zeros(13, np.float32), 64)


# ------------------------------------------------------------------------------------ flip


@pytest.mark.parametrize("identity_id,how", [(0, "sampled"), (1, "sampled"), (2, "sampled"),
                                             (3, "sampled"), (4, "symmetrized"),
                                             (5, "symmetrized")])
def test_flipped_motion_renders_the_mirror_image_of_a_symmetric_identity(identity_id, how):
    person = (sample_identity(0, identity_id, symmetric=True) if how == "sampled"
              else sample_identity(0, identity_id).symmetrized())
    layout = synth_layout()
    m = sm.sample_motion(np.random.default_rng(identity_id), 20)[13]
    m[sm.YAW] = 20.0 if identity_id % 2 else -20.0               # a clearly asymmetric pose
    frame = sr.render_frame(person, m, RES).astype(np.int64)
    mirrored = sr.render_frame(person, layout.flip(m), RES).astype(np.int64)
    assert np.abs(mirrored - frame[:, ::-1]).mean() < 0.1
    assert np.abs(frame - frame[:, ::-1]).mean() > 2.0            # the pose is not symmetric
    cond = sr.render_condition(person, m, RES).sum(-1) > 0
    cond_mirrored = sr.render_condition(person, layout.flip(m), RES).sum(-1) > 0
    iou = (cond_mirrored & cond[:, ::-1]).sum() / (cond_mirrored | cond[:, ::-1]).sum()
    assert iou > 0.99


# ------------------------------------------------------------------------------ motion mask


def test_motion_mask_marks_changed_pixels():
    source = np.zeros((2, 8, 8, 3), np.uint8)
    frame = source.copy()
    frame[1, 2:4, 5:7, 1] = 10
    mask = motion_mask(frame, source)
    expected = np.zeros((2, 8, 8), bool)
    expected[1, 2:4, 5:7] = True
    assert np.array_equal(mask, expected)
    assert not motion_mask(frame, source, threshold=10).any()
    grown = motion_mask(frame, source, dilate=1)
    assert grown[1, 1:5, 4:8].all() and grown.sum() == 16
    person = sample_identity(0, 0)
    src = sr.render_frame(person, sm.make_motion(), RES)
    gt = sr.render_frame(person, sm.make_motion(mouth_open=1.0), RES)
    anchors = sr.project_anchors(person, sm.make_motion(mouth_open=1.0), RES)
    mouth = motion_mask(gt, src, threshold=8)
    assert mouth.any() and _centroid(mouth.astype(float))[1] > anchors["nose"][1]
    with pytest.raises(ValueError, match="must be equal"):
        motion_mask(gt[:32], src)


def test_builder_config_takes_the_generators_defaults_and_passes_every_setting_on():
    import dataclasses

    from data_pipelines.synth_faces.builder import GENERATOR_FIELDS, SynthFacesBuilder
    from data_pipelines.synth_faces.builder import SynthFacesBuilderConfig

    assert SynthFacesBuilderConfig(name="defaults").generator_config() == SynthFacesConfig()
    settings = dict(resolution=32, num_frames=5, fps=10.0, seed=3, train_identities=2,
                    validation_identities=1, test_identities=0, videos_per_identity=1, symmetric=True)
    assert SynthFacesBuilderConfig(name="custom", **settings).generator_config() == SynthFacesConfig(**settings)
    # every generator setting but the renderer's supersampling is a builder setting
    assert set(GENERATOR_FIELDS) == set(settings)
    assert set(GENERATOR_FIELDS) == {f.name for f in dataclasses.fields(SynthFacesConfig)} - {"supersample"}
    res128 = {c.name: c for c in SynthFacesBuilder.BUILDER_CONFIGS}["res128"]
    assert res128.generator_config().resolution == 128 and res128.description.startswith("128x128, ")
