"""The inspect CLI, run as a subprocess on real and broken inputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mimaface_jax.face.media_io import read_image, read_video, write_image
from mimaface_jax.face.motion_layout import MotionLayout

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _inspect(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "mimaface_jax.face.inspect", *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _load_outputs(out):
    stem = os.path.splitext(str(out))[0]
    data = np.load(stem + ".npz")
    with open(stem + ".json") as f:
        doc = json.load(f)
    return data, doc


def test_inspect_image(tmp_path, astronaut):
    src = tmp_path / "astronaut.png"
    write_image(src, astronaut)
    out = tmp_path / "out" / "astronaut_inspect.png"
    proc = _inspect(src, "--out", out)
    assert proc.returncode == 0, proc.stderr
    picture = read_image(out)
    assert picture.shape == (512, 512 + 512, 3)
    assert not np.array_equal(picture[:, :512], astronaut)          # annotations drawn
    assert picture[:, 512:].max() > 100 and picture[:5, 512:].max() == 0  # a render on black
    data, doc = _load_outputs(out)
    layout = MotionLayout.from_json(json.dumps(doc["layout"]))
    assert data["motion"].shape == (1, layout.size) and np.isfinite(data["motion"]).all()
    assert data["found"].tolist() == [True] and data["landmarks"].shape == (1, 478, 3)
    # the pose translation is the face position: compare with the landmarks' centre
    parts = layout.split(data["motion"][0])
    centre = data["landmarks"][0, :468, :2].mean(0) / 512 - 0.5
    assert np.abs(parts["translation"] - centre).max() < 0.03
    assert len(doc["frames"]) == 1 and doc["frames"][0]["found"] is True
    assert doc["frames"][0]["yaw"] == pytest.approx(float(parts["yaw"][0]), abs=1e-5)


def test_inspect_video(tmp_path, synth_video, trajectory):
    path, _ = synth_video
    out = tmp_path / "video_inspect.mp4"
    proc = _inspect(path, "--out", out)
    assert proc.returncode == 0, proc.stderr
    frames, fps = read_video(out)
    n, size = trajectory.n_frames, trajectory.size
    assert frames.shape == (n, size, 2 * size, 3) and fps == pytest.approx(25.0)
    data, doc = _load_outputs(out)
    layout = MotionLayout.from_json(json.dumps(doc["layout"]))
    motion, found = data["motion"], data["found"]
    assert motion.shape == (n, layout.size) and found.shape == (n,)
    assert np.flatnonzero(~found).tolist() == list(trajectory.blank)
    assert np.isnan(motion[~found]).all() and np.isfinite(motion[found]).all()
    assert [r["found"] for r in doc["frames"]] == found.tolist()
    assert doc["frames"][trajectory.blank[0]]["yaw"] is None
    # roll and log-scale follow the known in-plane rotation / zoom of the synthetic video
    roll, log_scale = motion[:, layout.slice("roll")][:, 0], motion[:, layout.slice("log_scale")][:, 0]
    angles, scales = [], []
    for t in range(n):
        m = trajectory.transform(t)
        scales.append(np.hypot(m[0, 0], m[1, 0]))
        angles.append(np.degrees(np.arctan2(-m[1, 0], m[0, 0])))  # cv2: +angle = counter-clockwise
    angles, scales = np.array(angles), np.array(scales)
    ok = found
    assert np.abs((roll - roll[0] - (angles - angles[0]))[ok]).max() < 2.0
    assert np.abs((log_scale - log_scale[0] - np.log(scales / scales[0]))[ok]).max() < 0.03
    # the no-face frames show the original frame and a black render with a label
    blank = trajectory.blank[0]
    assert np.abs(frames[blank, :, :size].astype(int) - 128).max() < 6


def test_inspect_image_without_face_fails_with_one_line(tmp_path):
    grey = tmp_path / "flat_grey.png"
    write_image(grey, np.full((240, 320, 3), 128, np.uint8))
    proc = _inspect(grey, "--out", tmp_path / "grey_out.png")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "flat_grey.png" in lines[0] and "no face" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "grey_out.png").exists()


def test_inspect_corrupt_video_fails_with_one_line(tmp_path):
    junk = tmp_path / "corrupt.mp4"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    proc = _inspect(junk, "--out", tmp_path / "corrupt_out.mp4")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "corrupt.mp4" in lines[0] and "not a readable video" in lines[0]
    assert "Traceback" not in proc.stderr
