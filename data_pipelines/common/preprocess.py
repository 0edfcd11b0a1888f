"""One video -> clip records: decode -> track -> align crop -> crop landmarks -> motion -> identity.

``VideoProcessor.process(item)`` yields, for one video, either a single ``Skip`` (the video is
unusable; nothing else is yielded) or ``(key, example)`` pairs, one per clip, in the
``FACEMESH_FORMAT`` of ``mimaface_jax/data/records.py`` (if the second decode fails part-way,
a ``Skip`` follows the clips already made). Bad videos are never fatal.

The chain, streaming so that a long video is never held decoded in memory:
1. pass A: decode frame by frame and track one face (``FaceLandmarker.track_video``, the
   largest face at acquisition) -> pixel landmarks (T, 478, 3), NaN where lost;
2. checks: decodable (else ``undecodable``), at least ``min_clip_frames`` frames
   (``too_short``), a face in some frame (``no_face``), in at least ``min_face_fraction`` of
   the frames (``face_lost``);
3. lost frames get landmarks interpolated linearly in time (``face_found`` keeps the truth);
   the video's neutral shape = mean canonical shape over its frames with a face;
4. clips: consecutive runs of ``clip_length`` frames; a last shorter run is kept if it has
   ``min_clip_frames``; each clip gets ONE similarity transform (``crop_mode="clip"``: the
   five keypoints averaged over the clip's frames, fitted to the crop template, so the crop
   does not move inside a clip) or a per-frame smoothed one (``crop_mode="smooth"``:
   ``align.smooth_transforms``);
5. pass B: decode again, warp each frame into its clip's crop, JPEG-encode; landmarks mapped
   into crop pixels; motion (pose + gaze; expression is filled at read time, see records.py);
   optional ArcFace identity = the normalised mean embedding of up to ``identity_frames``
   evenly spaced frames of the clip (crops from the ORIGINAL frame).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import numpy as np

from mimaface_jax.data.jpeg import encode_jpeg

SKIP_REASONS = ("undecodable", "too_short", "no_face", "face_lost", "unrecognised_name",
                "not_in_annotations", "missing_file")


@dataclasses.dataclass(frozen=True)
class VideoItem:
    """One input video: its path and ids (ids are plain strings, used in keys and splits)."""

    path: str
    speaker_id: str
    video_id: str


@dataclasses.dataclass(frozen=True)
class Skip:
    """A video that produced no records, and why (one of ``SKIP_REASONS``)."""

    reason: str
    path: str
    detail: str = ""

    def __post_init__(self):
        if self.reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {self.reason!r}; known: {SKIP_REASONS}")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    crop_size: int = 512
    clip_length: int = 64
    min_clip_frames: int = 24
    max_clips_per_video: int = 0          # 0 = all
    min_face_fraction: float = 0.9
    crop_mode: str = "clip"               # "clip" | "smooth"
    smooth_window: int = 9
    face_fraction: float = 0.7            # align.FACE_FRACTION: face size in the crop
    jpeg_quality: int = 95
    num_expression: int = 64
    arcface_model: str | None = None      # path to an ArcFace .onnx (None: no identity)
    identity_frames: int = 4
    tracker_crop_size: int = 256

    def __post_init__(self):
        if self.crop_mode not in ("clip", "smooth"):
            raise ValueError(f"crop_mode must be 'clip' or 'smooth', got {self.crop_mode!r}")
        if not 1 <= self.min_clip_frames <= self.clip_length:
            raise ValueError(f"need 1 <= min_clip_frames ({self.min_clip_frames}) <= "
                             f"clip_length ({self.clip_length})")
        if not 0.0 < self.min_face_fraction <= 1.0:
            raise ValueError(f"min_face_fraction must be in (0, 1], got "
                             f"{self.min_face_fraction}")
        if self.crop_size < 16:
            raise ValueError(f"crop_size must be >= 16, got {self.crop_size}")


def clip_bounds(num_frames: int, clip_length: int, min_clip_frames: int,
                max_clips: int = 0) -> list[tuple[int, int]]:
    """[(start, stop)] of consecutive clips; a last run shorter than clip_length is kept when it
    has at least ``min_clip_frames`` frames."""
    bounds = []
    for start in range(0, num_frames, clip_length):
        stop = min(start + clip_length, num_frames)
        if stop - start >= min_clip_frames:
            bounds.append((start, stop))
    return bounds[:max_clips] if max_clips > 0 else bounds


def interpolate_missing(landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
    """(T, N, 3) with NaN rows where ``found`` is False -> linear interpolation in time
    (nearest valid frame at the ends)."""
    lm = np.asarray(landmarks, np.float64)
    if found.all():
        return lm.astype(np.float32)
    t = np.arange(len(lm))
    flat = lm.reshape(len(lm), -1)
    out = np.empty_like(flat)
    valid_t = t[found]
    for k in range(flat.shape[1]):
        out[:, k] = np.interp(t, valid_t, flat[found, k])
    return out.reshape(lm.shape).astype(np.float32)


def landmarks_to_crop(landmarks: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """(T, 478, 3) image pixels, (T, 2, 3) image->crop -> (T, 478, 3) crop pixels.

    x, y go through the similarity; z (same pixel scale as x) is multiplied by its scale.
    """
    lin = transforms[:, :, :2]
    xy = np.einsum("tij,tnj->tni", lin, landmarks[..., :2]) + transforms[:, None, :, 2]
    scale = np.sqrt(np.abs(np.linalg.det(lin)))
    z = landmarks[..., 2] * scale[:, None]
    return np.concatenate([xy, z[..., None]], axis=-1).astype(np.float32)


class VideoProcessor:
    """Holds the MediaPipe graphs (and the ArcFace model) of one worker; see module doc."""

    def __init__(self, config: PreprocessConfig):
        self.config = config
        self._landmarker = None
        self._embedder = None

    def _get_landmarker(self):
        if self._landmarker is None:
            from mimaface_jax.face.landmarks import FaceLandmarker

            self._landmarker = FaceLandmarker(crop_size=self.config.tracker_crop_size)
        return self._landmarker

    def _get_embedder(self):
        if self._embedder is None and self.config.arcface_model:
            from mimaface_jax.face.identity import ArcFaceEmbedder

            self._embedder = ArcFaceEmbedder(self.config.arcface_model)
        return self._embedder

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    # -- the chain -------------------------------------------------------------------------
    def _track(self, item: VideoItem):
        from mimaface_jax.face import media_io

        fps = media_io.video_fps(item.path)
        size = None

        def frames():
            nonlocal size
            for frame in media_io.iter_video(item.path):
                size = (frame.shape[1], frame.shape[0])
                yield frame

        track = self._get_landmarker().track_video(frames())
        return track, fps, size

    def _clip_transforms(self, landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
        """(n, 478, 3) pixel landmarks of one clip -> (n, 2, 3) image -> crop transforms."""
        from mimaface_jax.face import align
        from mimaface_jax.face.landmarks import five_keypoints

        c = self.config
        n = len(landmarks)
        if not found.any():  # every frame of this clip was interpolated
            found = np.ones_like(found)
        if c.crop_mode == "clip":
            keypoints = np.mean([five_keypoints(lm) for lm in landmarks[found]], axis=0)
            m = align.estimate_crop_transform(keypoints, c.crop_size, c.face_fraction)
            return np.broadcast_to(m, (n, 2, 3)).astype(np.float64)
        per_frame = np.full((n, 2, 3), np.nan)
        for i in np.flatnonzero(found):
            per_frame[i] = align.estimate_crop_transform(landmarks[i], c.crop_size,
                                                         c.face_fraction)
        return align.smooth_transforms(per_frame, c.crop_size, window=c.smooth_window)

    def process(self, item: VideoItem) -> Iterator[Skip | tuple[str, dict]]:
        from mimaface_jax.face import align, media_io
        from mimaface_jax.face import expression as expression_lib
        from mimaface_jax.face.motion import MotionExtractor

        c = self.config
        if not os.path.isfile(item.path):
            yield Skip("missing_file", item.path, "file does not exist")
            return
        try:
            track, fps, size = self._track(item)
        except media_io.MediaReadError as err:
            yield Skip("undecodable", item.path, err.reason)
            return
        num_frames = len(track.found)
        if num_frames < c.min_clip_frames:
            yield Skip("too_short", item.path,
                       f"{num_frames} frames < min_clip_frames={c.min_clip_frames}")
            return
        found = track.found
        if not found.any():
            yield Skip("no_face", item.path, f"no face in any of {num_frames} frames")
            return
        if found.mean() < c.min_face_fraction:
            yield Skip("face_lost", item.path,
                       f"face in {int(found.sum())}/{num_frames} frames < "
                       f"min_face_fraction={c.min_face_fraction}")
            return
        landmarks = interpolate_missing(track.landmarks, found)  # (T, 478, 3) image px
        shapes = expression_lib.canonical_shapes(track.landmarks[found])
        neutral = expression_lib.neutral_shape(shapes, "mean").astype(np.float32)
        bounds = clip_bounds(num_frames, c.clip_length, c.min_clip_frames,
                             c.max_clips_per_video)
        transforms = np.zeros((num_frames, 2, 3))
        for start, stop in bounds:
            transforms[start:stop] = self._clip_transforms(landmarks[start:stop],
                                                           found[start:stop])
        extractor = MotionExtractor(None, num_expression=c.num_expression)
        embedder = self._get_embedder()

        clip_of = np.full(num_frames, -1)
        for k, (start, stop) in enumerate(bounds):
            clip_of[start:stop] = k
        jpegs: list[bytes] = []
        id_frames: list[np.ndarray] = []
        id_indices: set[int] = set()
        frames = media_io.iter_video(item.path)
        index = -1
        while True:
            try:  # decoded fine in pass A; a failure now (file changed?) is still not fatal
                frame = next(frames)
            except StopIteration:
                break
            except media_io.MediaReadError as err:
                yield Skip("undecodable", item.path, f"second pass: {err.reason}")
                return
            index += 1
            if index >= num_frames:
                break
            k = clip_of[index]
            if k < 0:
                continue
            start, stop = bounds[k]
            if index == start:
                jpegs, id_frames = [], []
                id_indices = _identity_indices(start, stop, found, c.identity_frames)
            crop = align.warp_crop(frame, transforms[index], c.crop_size)
            jpegs.append(encode_jpeg(crop, c.jpeg_quality))
            if embedder is not None and index in id_indices:
                id_frames.append(align.arcface_crop(frame, landmarks[index]))
            if index == stop - 1:
                yield self._example(item, k, start, stop, jpegs, landmarks, found, transforms,
                                    neutral, fps, size, extractor, embedder, id_frames)
        frames.close()

    def _example(self, item, k, start, stop, jpegs, landmarks, found, transforms, neutral,
                 fps, size, extractor, embedder, id_frames) -> tuple[str, dict]:
        c = self.config
        m = transforms[start:stop].astype(np.float32)
        crop_lm = landmarks_to_crop(landmarks[start:stop].astype(np.float64),
                                    transforms[start:stop])
        motion = extractor.extract(crop_lm, (c.crop_size, c.crop_size),
                                   neutral_shape=neutral).vectors
        clip_id = f"{item.video_id}/clip{k:04d}"
        example = {
            "frames": list(jpegs),
            "landmarks": crop_lm,
            "face_found": found[start:stop].astype(bool),
            "motion": motion.astype(np.float32),
            "neutral_shape": neutral,
            "crop_transform": m,
            "source_size": np.asarray(size, np.int32),
            "speaker_id": item.speaker_id,
            "video_id": item.video_id,
            "clip_id": clip_id,
            "clip_index": k,
            "start_frame": start,
            "num_frames": stop - start,
            "fps": float(fps),
        }
        if embedder is not None:
            emb = embedder.embed(np.stack(id_frames)).mean(0)
            example["identity"] = (emb / np.linalg.norm(emb)).astype(np.float32)
        return clip_id, example


def _identity_indices(start: int, stop: int, found: np.ndarray, count: int) -> set[int]:
    """Up to ``count`` evenly spaced frames of [start, stop) with a tracked face."""
    candidates = start + np.flatnonzero(found[start:stop])
    if len(candidates) == 0:
        candidates = np.arange(start, stop)
    pick = np.linspace(0, len(candidates) - 1, min(count, len(candidates))).round().astype(int)
    return {int(candidates[i]) for i in pick}
