"""JPEG bytes <-> RGB uint8 frames with OpenCV (the records' frame encoding)."""

from __future__ import annotations

import cv2
import numpy as np


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"encode_jpeg expects (H, W, 3) uint8 RGB, got {image.shape} "
                         f"{image.dtype}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError(f"cv2 could not JPEG-encode an image of shape {image.shape}")
    return buf.tobytes()


class CorruptFrameError(ValueError):
    """A stored frame does not decode (the pipeline skips such records and counts them)."""


def decode_jpeg(data: bytes, where: str = "record") -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB; ``where`` names the record in errors."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise CorruptFrameError(f"{where}: frame is not a decodable JPEG ({len(data)} bytes)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
