"""``python -m mimaface_jax.animate`` on real faces (the astronaut), a tiny FaceMesh-layout model.

Runs call ``animate.main`` in the test process: the generation function of one model and
settings is compiled once and shared by the runs (as by the jobs of one animate process)."""

import json
import os
import shutil

import av
import cv2
import numpy as np
import pytest

from mimaface_jax import animate
from mimaface_jax.face.align import invert_transform

# one xdist worker builds the shared model / bundle fixture and compiles its generator once
pytestmark = pytest.mark.xdist_group("inference_facemesh_bundle")

STEPS = ["--steps", "1", "--quiet"]
DRIVING_FRAMES, DRIVING_FPS = 10, 20.0  # tests/inference/conftest.py: animate_inputs


def _animate(capsys, *argv):
    code = animate.main([str(a) for a in argv])
    return code, capsys.readouterr()


def _decode(path):
    with av.open(str(path)) as c:
        fps = float(c.streams.video[0].average_rate)
        audio = len(c.streams.audio)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return frames, fps, audio


def test_real_face_video_has_every_frame_fps_audio_and_pastes_back(facemesh_bundle, animate_inputs, astronaut,
                                                                   tmp_path, capsys):
    bundle, _ = facemesh_bundle
    assert (animate_inputs["num_frames"], animate_inputs["fps"]) == (DRIVING_FRAMES, DRIVING_FPS)
    out = tmp_path / "result.mp4"
    code, cap = _animate(capsys, "--model", bundle, "--source", animate_inputs["source"],
                         "--driving", animate_inputs["driving"], "--out", out, "--lossless", *STEPS)
    assert code == 0, cap.err
    frames, fps, audio = _decode(out)
    assert frames.shape == (DRIVING_FRAMES,) + astronaut.shape  # every frame, at the source's size
    assert fps == pytest.approx(DRIVING_FPS) and audio == 1
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["paste_back"] and doc["audio"] and doc["frames"] == DRIVING_FRAMES
    assert doc["driving_missing_frames"] == 0 and len(doc["motion"]) == DRIVING_FRAMES
    assert [c["frames"] for c in doc["timings"]["clips"]] == [4, 4, 2]
    assert [c["compiled"] for c in doc["timings"]["clips"]][1:] == [False, False]
    # outside the pasted crop's footprint (grown by one crop pixel + 2 px) every pixel is the source's
    m = np.asarray(doc["crop_transform"])
    r = doc["generation"]["resolution"]
    footprint = cv2.warpAffine(np.ones((r, r), np.uint8), invert_transform(m), astronaut.shape[1::-1],
                               flags=cv2.INTER_NEAREST, borderValue=0)
    grow = int(np.ceil(1.0 / np.hypot(m[0, 0], m[1, 0]))) + 2  # source pixels per crop pixel, + 2
    footprint = cv2.dilate(footprint, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)).astype(bool)
    assert 0.005 < footprint.mean() < 0.5
    diff = np.abs(frames.astype(int) - astronaut[None].astype(int)).max(-1)  # (T, H, W)
    assert diff[:, ~footprint].max() <= 1
    assert diff[:, footprint].mean() > 1  # the face region is generated, not the source


def test_side_by_side_and_no_paste_back_sizes(facemesh_bundle, animate_inputs, astronaut, tmp_path, capsys):
    bundle, _ = facemesh_bundle
    crop = tmp_path / "crop.mp4"
    code, cap = _animate(capsys, "--model", bundle, "--source", animate_inputs["source"], "--driving",
                         animate_inputs["driving"], "--out", crop, "--no_paste_back", *STEPS)
    assert code == 0, cap.err
    frames, _, _ = _decode(crop)
    assert frames.shape == (DRIVING_FRAMES, 32, 32, 3)
    both = tmp_path / "both.mp4"
    code, cap = _animate(capsys, "--model", bundle, "--source", animate_inputs["source"], "--driving",
                         animate_inputs["driving"], "--out", both, "--side_by_side", *STEPS)
    assert code == 0, cap.err
    frames, _, _ = _decode(both)
    # source | driving (160 px video at height 512) | result, all at the source's height
    assert frames.shape == (DRIVING_FRAMES, 512, 512 + 512 + 512, 3)


def _motion_file(path, layout, frames=5):
    rng = np.random.default_rng(0)
    motion = np.zeros((frames, layout.size), np.float32)
    parts = layout.split(motion)
    parts["yaw"][:, 0] = 15.0 + np.arange(frames) * 2.0
    parts["pitch"][:, 0] = -4.0 + np.arange(frames)
    parts["roll"][:, 0] = 3.0
    parts["translation"][:] = 0.02 * rng.standard_normal((frames, 2))
    parts["log_scale"][:, 0] = -1.4
    parts["expression"][:] = rng.standard_normal(parts["expression"].shape)
    parts["gaze"][:] = 0.1 * rng.standard_normal((frames, 4))
    motion = layout.join(parts)
    np.savez(path, motion=motion, fps=np.float32(25.0))
    return motion


def test_relative_absolute_and_expression_only_transfer(facemesh_bundle, animate_inputs, tmp_path, capsys):
    """A driving motion whose first frame has a 15 deg yaw: relative mode starts at the source's own
    motion, absolute mode at the driving frame's; ``--transfer expression`` keeps the source's pose."""
    from mimaface_jax.face.motion_layout import facemesh_layout

    bundle, _ = facemesh_bundle
    layout = facemesh_layout(4)
    driving = _motion_file(tmp_path / "yaw15.npz", layout)
    pose = layout.group_indices("pose")
    angles = [layout.slice(n).start for n in ("yaw", "pitch", "roll")]
    docs = {}
    for name, extra in (("relative", []), ("absolute", ["--motion", "absolute"]),
                        ("expression", ["--transfer", "expression"])):
        out = tmp_path / f"{name}.mp4"
        code, cap = _animate(capsys, "--model", bundle, "--source", animate_inputs["source"], "--driving",
                             tmp_path / "yaw15.npz", "--out", out, *extra, *STEPS)
        assert code == 0, cap.err
        docs[name] = json.loads(out.with_suffix(".json").read_text())
        assert len(docs[name]["motion"]) == len(driving)
    source = np.asarray(docs["relative"]["source_motion"])
    assert abs(source[angles[0]]) < 10  # the astronaut looks roughly at the camera, not at 15 deg
    rel = np.asarray(docs["relative"]["motion"])
    np.testing.assert_allclose(rel[0, angles], source[angles], atol=1.0)
    np.testing.assert_allclose(rel[0, pose], source[pose], atol=1e-4)
    np.testing.assert_allclose(rel[:, angles] - rel[0, angles], driving[:, angles] - driving[0, angles], atol=1e-3)
    ab = np.asarray(docs["absolute"]["motion"])
    np.testing.assert_allclose(ab, driving, atol=1e-5)
    expr = np.asarray(docs["expression"]["motion"])
    np.testing.assert_allclose(expr[:, pose], np.broadcast_to(source[pose], expr[:, pose].shape), atol=1e-6)
    e = layout.group_indices("expression")
    np.testing.assert_allclose(expr[:, e] - expr[0, e], driving[:, e] - driving[0, e], atol=1e-4)
    gaze = layout.group_indices("gaze")
    np.testing.assert_allclose(expr[:, gaze], np.broadcast_to(source[gaze], expr[:, gaze].shape), atol=1e-6)


def test_animate_frames_equal_the_generators(facemesh_bundle, animate_inputs, tmp_path, capsys):
    """One generation path: animate's frames are the shared ClipGenerator's for the same inputs and
    seed (and the trainer's samples import that generator, not a sampler of their own)."""
    from mimaface_jax.inference.bundle import load_model
    from mimaface_jax.inference.driving import load_driving
    from mimaface_jax.inference.generator import ClipGenerator, GenerationSettings
    from mimaface_jax.inference.motion_transfer import TransferSettings, transfer
    from mimaface_jax.inference.source import load_source
    from mimaface_jax.training import samples

    bundle, _ = facemesh_bundle
    out = tmp_path / "crop.mp4"
    code, cap = _animate(capsys, "--model", bundle, "--source", animate_inputs["source"], "--driving",
                         animate_inputs["driving"], "--out", out, "--no_paste_back", "--lossless", "--seed", "11",
                         *STEPS)
    assert code == 0, cap.err
    got, _, _ = _decode(out)

    loaded = load_model(bundle, log=lambda _: None)
    source = load_source(str(animate_inputs["source"]), loaded, None)
    driving = load_driving(str(animate_inputs["driving"]), loaded)
    motion, _ = transfer(source.motion, driving.motion, loaded.layout, TransferSettings())
    gen = ClipGenerator(loaded.config, loaded.model, loaded.params, loaded.ae_params, loaded.mesh, loaded.rules,
                        GenerationSettings.from_config(loaded.config, num_steps=1, seed=11))
    want = gen.video(source.crop, source.identity, motion, lambda a, b: np.stack([source.render(m) for m in motion[a:b]]),
                     source_motion=source.motion, source_condition=source.render(source.motion))
    np.testing.assert_array_equal(got, want)
    assert samples.ClipGenerator is ClipGenerator
    assert not any(name.endswith("_sample") for name in vars(samples))  # no sampler of its own


def _leftovers(folder, before):
    return sorted(set(os.listdir(folder)) - set(before))


@pytest.mark.parametrize("case", ["no_face_source", "unreadable_driving", "empty_driving", "faceless_driving",
                                  "bundle_version", "unwritable_folder", "existing_output"])
def test_bad_input_is_one_line_exit_1_and_no_file(case, facemesh_bundle, animate_inputs, tmp_path, capsys):
    bundle, _ = facemesh_bundle
    source, driving = animate_inputs["source"], animate_inputs["driving"]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "result.mp4"
    named = None
    if case == "no_face_source":
        source = named = animate_inputs["no_face_image"]
    elif case == "unreadable_driving":
        driving = named = animate_inputs["corrupt_video"]
    elif case == "empty_driving":
        driving = named = animate_inputs["empty_video"]
    elif case == "faceless_driving":
        driving = named = animate_inputs["no_face_video"]
    elif case == "bundle_version":
        copy = tmp_path / "old_bundle"
        shutil.copytree(bundle, copy)
        doc = json.loads((copy / "bundle.json").read_text())
        doc["format_version"] = 99
        (copy / "bundle.json").write_text(json.dumps(doc))
        bundle, named = copy, copy / "bundle.json"
    elif case == "unwritable_folder":
        blocker = out_dir / "not_a_folder"
        blocker.write_text("a file")
        out, named = blocker / "result.mp4", blocker
    elif case == "existing_output":
        out.write_bytes(b"keep me")
        named = out
    before = os.listdir(out_dir)
    code, cap = _animate(capsys, "--model", bundle, "--source", source, "--driving", driving, "--out", out, *STEPS)
    assert code == 1
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("animate: error: "), cap.err
    assert str(named) in lines[0]
    assert _leftovers(out_dir, before) == []
    if case == "existing_output":
        assert out.read_bytes() == b"keep me"


def test_synthfaces_person_driven_by_another_persons_motion(synth_workdir, tmp_path, capsys):
    """The demo's path: a SynthFaces model (layout synth-v1) from a training workdir, a held-out
    person file as the source and another person's motion file as the driving."""
    import dataclasses

    from mimaface_jax.data import synth_faces

    gen_config = synth_faces.SynthFacesConfig(resolution=32, num_frames=6, validation_identities=2)
    dataset = tmp_path / "synth"
    dataset.mkdir()
    (dataset / "metadata.json").write_text(json.dumps({"generator": dataclasses.asdict(gen_config)}))
    assert synth_faces.main(["--dataset", str(dataset), "--out_dir", str(tmp_path), "--frames", "7"]) == 0
    workdir = synth_workdir
    out = tmp_path / "animate.mp4"
    code, cap = _animate(capsys, "--model", workdir, "--source", tmp_path / "person.npz", "--driving",
                         tmp_path / "motion.npz", "--out", out, "--side_by_side", "--lossless", *STEPS)
    assert code == 0, cap.err
    frames, fps, audio = _decode(out)
    assert frames.shape == (7, 32, 3 * 32, 3) and fps == pytest.approx(gen_config.fps) and audio == 0
    faces = synth_faces.SynthFaces(dataclasses.replace(gen_config, num_frames=7))
    driver = int(faces.identity_ids("validation")[1])
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["model"]["kind"] == "workdir" and not doc["paste_back"]
    # relative transfer from the driver's first frame onto the person's own first-frame motion
    drv = faces.motion(driver, 0)
    got = np.asarray(doc["motion"])
    pose = faces.layout.group_indices("pose")
    np.testing.assert_allclose(got[:, pose] - got[0, pose], drv[:, pose] - drv[0, pose], atol=1e-5)
    # the middle panel is the condition render of that motion (the person's face under it)
    person = faces.identity(int(faces.identity_ids("validation")[0]))
    from mimaface_jax.data.synth_render import render_condition

    np.testing.assert_array_equal(frames[2, :, 32:64], render_condition(person, got[2], 32))


def test_jobs_run_in_one_process_with_one_compiled_function(facemesh_bundle, animate_inputs, tmp_path, capsys):
    from mimaface_jax.face.motion_layout import facemesh_layout

    bundle, _ = facemesh_bundle
    _motion_file(tmp_path / "drive.npz", facemesh_layout(4), frames=6)
    jobs = tmp_path / "jobs.txt"
    jobs.write_text(f"# source driving out\n{animate_inputs['source']} {tmp_path / 'drive.npz'} {tmp_path / 'a.mp4'}\n"
                    f"{animate_inputs['source']} {animate_inputs['driving']} {tmp_path / 'b.mp4'}\n")
    code, cap = _animate(capsys, "--model", bundle, "--jobs", jobs, "--steps", "1")
    assert code == 0, cap.err
    assert "clip 1/2" in cap.err and "frames/s" in cap.err and "ETA" in cap.err  # progress lines
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert a["frames"] == 6 and b["frames"] == DRIVING_FRAMES
    assert not any(c["compiled"] for c in b["timings"]["clips"])  # the second job reuses the function


def test_identity_model_gives_the_sources_identity_input(facemesh_bundle, animate_inputs, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    from mimaface_jax.inference.bundle import load_model
    from mimaface_jax.inference.source import load_source

    spec = importlib.util.spec_from_file_location(
        "face_test_onnx_models", Path(__file__).resolve().parents[1] / "face" / "onnx_models.py")
    onnx_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(onnx_models)
    bundle, _ = facemesh_bundle
    loaded = load_model(bundle, log=lambda _: None)
    dim = int(loaded.config.model.mia.identity_dim)
    good = onnx_models.tiny_arcface(str(tmp_path / "arcface_small.onnx"), dim=dim)
    source = load_source(str(animate_inputs["source"]), loaded, None, good)
    assert source.identity.shape == (dim,) and abs(np.linalg.norm(source.identity) - 1) < 1e-5
    assert not np.allclose(load_source(str(animate_inputs["source"]), loaded, None).identity, source.identity)
    wrong = onnx_models.tiny_arcface(str(tmp_path / "arcface_512.onnx"), dim=dim + 4)
    out = tmp_path / "x.mp4"
    code, cap = _animate(capsys, "--model", bundle, "--source", animate_inputs["source"], "--driving",
                         animate_inputs["driving"], "--out", out, "--identity_model", wrong, *STEPS)
    assert code == 1 and wrong in cap.err and "identity_dim" in cap.err and not out.exists()
