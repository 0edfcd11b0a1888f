"""Face test fixtures: real faces that ship inside installed packages (no network)."""

from __future__ import annotations

import importlib.util
import pathlib
import types

import cv2
import numpy as np
import pytest
from face_image_fixtures import astronaut, group_photo, landmarker  # noqa: F401

# Centre of the astronaut's face in skimage.data.astronaut() (512x512), from its landmarks.
ASTRONAUT_FACE_CENTRE = (225.0, 125.0)
VIDEO_SIZE = 256
VIDEO_FRAMES = 24
BLANK_FRAMES = (9, 10, 11)


def trajectory_transform(t: int, n: int = VIDEO_FRAMES, size: int = VIDEO_SIZE) -> np.ndarray:
    """(2, 3) map astronaut -> frame t: the face drifts, turns and zooms along a known path."""
    phase = 2 * np.pi * t / n
    angle = 12.0 * np.sin(phase)
    scale = 0.9 + 0.1 * np.cos(phase)
    cx, cy = ASTRONAUT_FACE_CENTRE
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[:, 2] += np.array([size / 2 - cx + 25 * np.sin(phase), size / 2 - cy + 15 * np.cos(phase)])
    return m


def synth_frames(astronaut: np.ndarray, n: int = VIDEO_FRAMES,
                 blank: tuple[int, ...] = ()) -> np.ndarray:
    frames = []
    for t in range(n):
        if t in blank:
            frames.append(np.full((VIDEO_SIZE, VIDEO_SIZE, 3), 128, np.uint8))
            continue
        m = trajectory_transform(t, n)
        frames.append(cv2.warpAffine(astronaut, m, (VIDEO_SIZE, VIDEO_SIZE),
                                     flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)  # (T, H, W, 3)


@pytest.fixture(scope="session")
def synth_video(tmp_path_factory, astronaut) -> tuple[str, np.ndarray]:
    """A short mp4 of the moving astronaut with blank frames; -> (path, frames written)."""
    from mimaface_jax.face.media_io import write_video

    frames = synth_frames(astronaut, blank=BLANK_FRAMES)
    path = str(tmp_path_factory.mktemp("video") / "astronaut_moving.mp4")
    write_video(path, frames, fps=25.0)
    return path, frames


class _Trajectory(types.SimpleNamespace):
    """Constants and helpers of the synthesised video, handed to tests as one fixture."""


@pytest.fixture(scope="session")
def trajectory():
    return _Trajectory(transform=trajectory_transform, frames=synth_frames,
                       n_frames=VIDEO_FRAMES, size=VIDEO_SIZE, blank=BLANK_FRAMES)


@pytest.fixture(scope="session")
def onnx_models():
    """tests/face/onnx_models.py, loaded by path (tests are not a package)."""
    path = pathlib.Path(__file__).with_name("onnx_models.py")
    spec = importlib.util.spec_from_file_location("face_test_onnx_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
