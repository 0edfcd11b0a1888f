"""The driving motion: from a video (FaceMesh, one followed face) or a motion file.

- Video: landmarks are tracked frame by frame while the video is decoded as a stream (only the
  landmarks are kept), measured in the model's crop (``motion_track.py``); frames without a
  face are interpolated and counted, too many is an error. fps: the video's.
- Folder of frames (image files, in name order): tracked like a video; fps 25.
- Motion file (``.npz``): as ``face.inspect`` writes it (``motion`` (T, D), ``found``,
  ``landmarks``, ``fps``), re-measured from its landmarks in the model's crop when it has them
  (FaceMesh models), else its ``motion`` must be in the model's layout; or as
  ``SynthFaces.export_motion`` writes it (``motion`` (T, 14), ``fps``) for SynthFaces models.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import numpy as np

from mimaface_jax.face import media_io
from mimaface_jax.inference.errors import AnimateError
from mimaface_jax.inference.motion_track import check_missing, fill_missing, measure
from mimaface_jax.inference.source import _load_npz

DEFAULT_FPS = 25.0


@dataclasses.dataclass
class Driving:
    path: str
    kind: str                 # "video" | "frames" | "motion"
    motion: np.ndarray        # (T, D) float32, finite
    found: np.ndarray         # (T,) bool: measured (else interpolated)
    fps: float
    landmarks: np.ndarray | None = None   # (T, 478, 3) image pixels, NaN where not found (tracked kinds)

    @property
    def num_missing(self) -> int:
        return int((~self.found).sum())

    def frames(self) -> Iterator[np.ndarray] | None:
        """The driving video's frames again, as a stream (None for a motion file)."""
        if self.kind == "video":
            return media_io.iter_video(self.path)
        if self.kind == "frames":
            return (media_io.read_image(f) for f in frame_files(self.path))
        return None


def frame_files(folder: str) -> list[str]:
    """The image files of a folder of frames, in name order (an error when there is none)."""
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(media_io.IMAGE_SUFFIXES))
    if not names:
        raise AnimateError(f"{folder}: a folder of driving frames holds no image "
                           f"({', '.join(media_io.IMAGE_SUFFIXES)})")
    return [os.path.join(folder, n) for n in names]


def _video(path: str, loaded, max_missing: float) -> Driving:
    from mimaface_jax.inference.errors import quiet_mediapipe

    folder = os.path.isdir(path)
    if loaded.basis is None:
        what = "folder of frames" if folder else "VIDEO"
        raise AnimateError(f"{path}: a driving {what} needs a FaceMesh model; this model's motion layout is "
                           f"{loaded.layout.version!r} (drive it with a motion file)")
    if folder:
        files = frame_files(path)
        frames, fps, kind = (media_io.read_image(f) for f in files), DEFAULT_FPS, "frames"
    else:
        frames, fps, kind = media_io.iter_video(path), media_io.video_fps(path), "video"
    with quiet_mediapipe():
        from mimaface_jax.face.landmarks import FaceLandmarker

        with FaceLandmarker() as landmarker:
            track = landmarker.track_video(frames, "largest")
    check_missing(track.found, max_missing, path)
    r = int(loaded.config.data.resolution)
    motion = measure(track.landmarks, track.found, r, loaded.basis, loaded.basis.num_components)
    return Driving(path, kind, fill_missing(motion, track.found), track.found, fps, track.landmarks)


def _motion_file(path: str, loaded, max_missing: float) -> Driving:
    data = _load_npz(path)
    if "motion" not in data:
        raise AnimateError(f"{path}: a motion file needs a 'motion' (T, D) array (face.inspect or "
                           "SynthFaces.export_motion write one)")
    fps = float(np.asarray(data.get("fps", np.nan)))
    fps = fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS
    if "landmarks" in data and loaded.basis is not None:
        landmarks = np.asarray(data["landmarks"], np.float32)
        found = np.isfinite(landmarks).all(axis=(1, 2))
        if "found" in data:
            found &= np.asarray(data["found"], bool)
        check_missing(found, max_missing, path)
        r = int(loaded.config.data.resolution)
        motion = measure(landmarks, found, r, loaded.basis, loaded.basis.num_components)
        return Driving(path, "motion", fill_missing(motion, found), found, fps)
    motion = np.asarray(data["motion"], np.float32)
    if motion.ndim != 2 or motion.shape[1] != loaded.layout.size or len(motion) == 0:
        raise AnimateError(f"{path}: motion has shape {motion.shape}; the model's layout {loaded.layout.version!r} "
                           f"needs (T >= 1, {loaded.layout.size})")
    found = np.isfinite(motion).all(axis=1)
    check_missing(found, max_missing, path)
    return Driving(path, "motion", fill_missing(motion, found), found, fps)


def load_driving(path: str, loaded, max_missing: float = 0.5) -> Driving:
    if path.lower().endswith(".npz"):
        return _motion_file(path, loaded, max_missing)
    if not (media_io.is_video_path(path) or os.path.isdir(path)):
        raise AnimateError(f"{path}: --driving takes a video ({', '.join(media_io.VIDEO_SUFFIXES)}), a folder of "
                           "frames or a motion file (.npz)")
    return _video(path, loaded, max_missing)
