"""Face-video test fixtures: short face videos made by warping skimage's astronaut along known
motions, bad videos, and one ``video_folder`` dataset built once per session (in tmp dirs).

Shared by the conftest.py of tests/data and tests/training (``from face_video_fixtures import``)."""

from __future__ import annotations

import dataclasses
import os
import shutil

import cv2
import numpy as np
import pytest

ASTRONAUT_FACE_CENTRE = (225.0, 125.0)  # pixel centre of the face in astronaut() (512x512)
VIDEO_SIZE = 160
VIDEO_FRAMES = 20
CROP = 64
CLIP_LENGTH = 10
NUM_EXPRESSION = 4
FRACTIONS = (("train", 0.6), ("test", 0.4))


@dataclasses.dataclass(frozen=True)
class FaceMotion:
    """Known per-frame similarity applied to the astronaut: roll (deg, counter-clockwise on
    screen), scale, shift (x, y) pixels."""

    roll: np.ndarray
    scale: np.ndarray
    shift: np.ndarray


def motion_for(seed: int, frames: int = VIDEO_FRAMES) -> FaceMotion:
    rng = np.random.default_rng(seed)
    t = np.arange(frames)
    amp, phase = rng.uniform(5.0, 9.0), rng.uniform(0, np.pi)
    roll = amp * np.sin(2 * np.pi * t / frames + phase)
    scale = 0.72 + 0.04 * np.sin(t / 3.0 + seed)
    shift = np.stack([4 * np.sin(t / 4.0 + seed), 3 * np.cos(t / 5.0 + seed)], 1)
    return FaceMotion(roll, scale, shift)


def warp_astronaut(astronaut: np.ndarray, motion: FaceMotion, size: int = VIDEO_SIZE):
    frames = []
    cx, cy = ASTRONAUT_FACE_CENTRE
    for roll, scale, (dx, dy) in zip(motion.roll, motion.scale, motion.shift):
        m = cv2.getRotationMatrix2D((cx, cy), float(roll), float(scale))
        m[:, 2] += (size / 2 - cx + dx, size / 2 - cy + dy)
        frames.append(cv2.warpAffine(astronaut, m, (size, size), borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)


def faceless_frames(frames: int = VIDEO_FRAMES, size: int = VIDEO_SIZE) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    out = [np.stack([(x * 255 // size + 8 * t) % 256, y * 255 // size,
                     np.full_like(x, 90)], -1).astype(np.uint8) for t in range(frames)]
    return np.stack(out)


def pick_speakers(candidates, want: dict[str, int], fractions=FRACTIONS) -> dict[str, list]:
    """Choose candidate names whose hashed split fills ``want`` ({split: count})."""
    from data_pipelines.common.splits import assign_split

    chosen = {s: [] for s in want}
    for name in candidates:
        split = assign_split(name, fractions)
        if split in chosen and len(chosen[split]) < want[split]:
            chosen[split].append(name)
    missing = {s: n - len(chosen[s]) for s, n in want.items() if len(chosen[s]) < n}
    assert not missing, f"not enough candidate names for splits {missing}"
    return chosen


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def face_videos(tmp_path_factory, astronaut) -> dict:
    """Three good face mp4s (known motions), one faceless mp4, one corrupt .mp4."""
    from mimaface_jax.face.media_io import write_video

    root = tmp_path_factory.mktemp("videos")
    out = {"good": [], "motions": []}
    for seed in range(3):
        motion = motion_for(seed)
        path = str(root / f"face{seed}.mp4")
        write_video(path, warp_astronaut(astronaut, motion), fps=25.0)
        out["good"].append(path)
        out["motions"].append(motion)
    out["noface"] = str(root / "noface.mp4")
    write_video(out["noface"], faceless_frames(), fps=25.0)
    out["corrupt"] = str(root / "corrupt.mp4")
    with open(out["corrupt"], "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(3000))
    return out


def builder_config(name: str = "test64", **overrides):
    from data_pipelines.common.builder import FaceVideoConfig

    kwargs = dict(name=name, crop_size=CROP, clip_length=CLIP_LENGTH, min_clip_frames=8,
                  num_expression=NUM_EXPRESSION, split_fractions=FRACTIONS, jpeg_quality=95)
    kwargs.update(overrides)
    return FaceVideoConfig(**kwargs)


def build(builder_cls, manual_dir, data_dir, beam_runner=None, **overrides):
    import tensorflow_datasets as tfds

    builder = builder_cls(config=builder_config(**overrides), data_dir=str(data_dir),
                          file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(manual_dir), beam_runner=beam_runner))
    return builder


@pytest.fixture(scope="session")
def video_folder_layout(tmp_path_factory, face_videos) -> dict:
    """manual_dir for ``video_folder``: two train speakers and one test speaker (hash-chosen);
    the corrupt and the faceless file sit in train speakers' folders."""
    speakers = pick_speakers([f"person{i}" for i in range(40)], {"train": 2, "test": 1})
    root = tmp_path_factory.mktemp("video_folder_manual")
    train_a, train_b = speakers["train"]
    (test_a,) = speakers["test"]
    placed = {f"{train_a}/take1.mp4": face_videos["good"][0],
              f"{train_b}/take1.mp4": face_videos["good"][1],
              f"{test_a}/take1.mp4": face_videos["good"][2],
              f"{train_a}/broken.mp4": face_videos["corrupt"],
              f"{train_b}/empty_room.mp4": face_videos["noface"]}
    for rel, src in placed.items():
        os.makedirs(root / os.path.dirname(rel), exist_ok=True)
        shutil.copy(src, root / rel)
    motions = {f"{train_a}/take1": face_videos["motions"][0],
               f"{train_b}/take1": face_videos["motions"][1],
               f"{test_a}/take1": face_videos["motions"][2]}
    return {"root": root, "speakers": speakers, "motions": motions}


@pytest.fixture(scope="session")
def video_folder_dataset(tmp_path_factory, video_folder_layout):
    """The ``video_folder`` dataset built (in process) from ``video_folder_layout``."""
    from data_pipelines.video_folder import VideoFolder

    data_dir = tmp_path_factory.mktemp("tfds")
    builder = build(VideoFolder, video_folder_layout["root"], data_dir)
    return builder


@pytest.fixture(scope="session")
def kit():
    """The helpers and constants above, for test modules (tests are not a package)."""
    import types

    names = ("ASTRONAUT_FACE_CENTRE VIDEO_SIZE VIDEO_FRAMES CROP CLIP_LENGTH NUM_EXPRESSION "
             "FRACTIONS motion_for warp_astronaut faceless_frames pick_speakers builder_config "
             "build").split()
    return types.SimpleNamespace(**{n: globals()[n] for n in names})


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    """A tiny ``synth_faces`` dataset: 2 train people, 1 test person, 16-frame videos cut into
    8-frame clips, 32x32."""
    import tensorflow_datasets as tfds

    from data_pipelines.synth_faces.builder import SynthFacesBuilder, SynthFacesBuilderConfig

    config = SynthFacesBuilderConfig(name="tiny32", resolution=32, num_frames=16,
                                     train_identities=2, validation_identities=0,
                                     test_identities=1, videos_per_identity=1, clip_length=8)
    builder = SynthFacesBuilder(config=config, data_dir=str(tmp_path_factory.mktemp("synth")),
                                file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig())
    return builder
