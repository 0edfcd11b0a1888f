"""Reading images and videos as RGB uint8 arrays, writing H.264 mp4 (PyAV / OpenCV).

Every failure raises ``MediaReadError`` naming the file and what is wrong (missing, not an
image/video, corrupt, zero frames); nothing falls back silently.
"""

from __future__ import annotations

import fractions
import os
from typing import Iterator

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")


class MediaReadError(ValueError):
    """A file that cannot be read as the expected media."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def is_video_path(path: str | os.PathLike) -> bool:
    return os.path.splitext(str(path))[1].lower() in VIDEO_SUFFIXES


def _check_exists(path: str | os.PathLike) -> str:
    path = str(path)
    if not os.path.exists(path):
        raise MediaReadError(path, "file does not exist")
    if not os.path.isfile(path):
        raise MediaReadError(path, "is not a regular file")
    if os.path.getsize(path) == 0:
        raise MediaReadError(path, "file is empty (0 bytes)")
    return path


def read_image(path: str | os.PathLike) -> np.ndarray:
    """-> (H, W, 3) uint8 RGB. Grey and alpha images are converted; 16-bit is scaled."""
    path = _check_exists(path)
    raw = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise MediaReadError(path, "not a readable image (unknown format or corrupt data)")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise MediaReadError(path, f"unsupported image sample type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise MediaReadError(path, f"unsupported channel count {image.shape[2]}")


def _open_video(path: str):
    import av

    try:
        container = av.open(path, mode="r")
    except av.FFmpegError as err:
        raise MediaReadError(path, f"not a readable video ({err.__class__.__name__}: "
                                   f"{getattr(err, 'strerror', None) or err})") from None
    if not container.streams.video:
        container.close()
        raise MediaReadError(path, "contains no video stream")
    return container


def video_fps(path: str | os.PathLike) -> float:
    """Frames per second of the first video stream."""
    path = _check_exists(path)
    container = _open_video(path)
    try:
        return _stream_fps(path, container.streams.video[0])
    finally:
        container.close()


def _stream_fps(path: str, stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or float(rate) <= 0:
        raise MediaReadError(path, "video stream has no frame rate")
    return float(rate)


def iter_video(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yields (H, W, 3) uint8 RGB frames one at a time (for long videos).

    Raises ``MediaReadError`` if decoding fails part-way or no frame decodes.
    """
    import av

    path = _check_exists(path)
    container = _open_video(path)
    count = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                count += 1
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as err:
            raise MediaReadError(path, f"corrupt video data after {count} frame(s) "
                                       f"({err.__class__.__name__})") from None
    finally:
        container.close()
    if count == 0:
        raise MediaReadError(path, "video has zero decodable frames")


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """-> (frames (T, H, W, 3) uint8 RGB, fps)."""
    fps = video_fps(path)
    frames = list(iter_video(path))
    return np.stack(frames), fps


def read_media(path: str | os.PathLike) -> tuple[np.ndarray, float | None]:
    """Image or video by suffix -> (frames (T, H, W, 3), fps or None for an image)."""
    if is_video_path(path):
        return read_video(path)
    return read_image(path)[None], None


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad to even height/width (yuv420p needs them) by repeating the last row/column."""
    _, h, w, _ = frames.shape
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def write_video(path: str | os.PathLike, frames, fps: float, crf: int = 18) -> None:
    """Write (T, H, W, 3) uint8 RGB frames (array or iterable) as H.264 yuv420p mp4.

    Odd sizes are padded by one edge pixel to even ones.
    """
    import av

    path = str(path)
    if fps is None or not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"write_video {path}: fps must be positive, got {fps}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    rate = fractions.Fraction(fps).limit_denominator(1001)
    container = av.open(path, mode="w")
    stream = None
    count = 0
    try:
        for frame in frames:
            frame = np.asarray(frame)
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"write_video {path}: frame {count} must be (H, W, 3) uint8, "
                                 f"got {frame.shape} {frame.dtype}")
            frame = _even(frame[None])[0]
            if stream is None:
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height = frame.shape[1], frame.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf)}
            elif (frame.shape[1], frame.shape[0]) != (stream.width, stream.height):
                raise ValueError(f"write_video {path}: frame {count} has size "
                                 f"{frame.shape[1]}x{frame.shape[0]}, first frame "
                                 f"{stream.width}x{stream.height}")
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is None:
            raise ValueError(f"write_video {path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """(H, W, 3) uint8 RGB -> file (format from the suffix)."""
    path = str(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ok, buf = cv2.imencode(os.path.splitext(path)[1] or ".png",
                           cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"write_image {path}: cannot encode an image with this suffix")
    buf.tofile(path)
