"""CLIP image preprocessing equal to transformers' ``CLIPImageProcessor()`` defaults.

Steps (for every image): resize so that the SHORT side is 224 (the long side becomes
``int(224 * long / short)``) with PIL's bicubic filter on the uint8 image, centre crop 224x224
(top/left offsets rounded down), rescale by 1/255 (in float64, then cast to float32) and
normalise with the OpenAI CLIP mean/std in float32. PIL does the resize because the reference
does, and a re-implemented bicubic filter would not reproduce its uint8 rounding.

numpy in, numpy out: uint8 RGB images, one ``(H, W, 3)`` or a batch ``(B, H, W, 3)`` / a list
of ``(H, W, 3)`` of any sizes; returns float32 NHWC ``(B, 224, 224, 3)`` (or ``(224, 224, 3)``
for a single image).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _check_image(image: np.ndarray, where: str) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{where}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(
            f"{where}: expected uint8 RGB pixels in [0, 255], got dtype {image.dtype}; "
            "convert with np.clip(x, 0, 255).astype(np.uint8) (or (x * 255).round() for [0, 1] floats)"
        )
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{where}: expected shape (H, W, 3), got {image.shape}; convert greyscale/RGBA to RGB first")


def resize_shortest_side(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> uint8 with the short side = ``size`` (PIL bicubic, aspect kept)."""
    height, width = image.shape[:2]
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_height, new_width = (new_long, size) if width <= height else (size, new_long)
    resized = Image.fromarray(image).resize((new_width, new_height), resample=Image.Resampling.BICUBIC)
    return np.asarray(resized)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) -> (size, size, C); top/left offsets rounded down, as the reference."""
    height, width = image.shape[:2]
    if height < size or width < size:
        raise ValueError(f"center crop {size} is larger than the image {height}x{width}")
    top = (height - size) // 2
    left = (width - size) // 2
    return image[top : top + size, left : left + size]


def preprocess_one(image: np.ndarray, *, size: int = 224, crop: int = 224) -> np.ndarray:
    """(H, W, 3) uint8 -> (crop, crop, 3) float32, normalised."""
    _check_image(image, "clip preprocess")
    if crop > size:
        raise ValueError(f"clip preprocess: crop {crop} must not exceed the resize size {size}")
    image = center_crop(resize_shortest_side(image, size), crop)
    scaled = (image.astype(np.float64) * (1 / 255)).astype(np.float32)
    mean = np.asarray(CLIP_MEAN, np.float32)
    std = np.asarray(CLIP_STD, np.float32)
    return (scaled - mean) / std


def clip_preprocess(images: np.ndarray | Sequence[np.ndarray], *, size: int = 224, crop: int = 224) -> np.ndarray:
    """Preprocesses one image (H, W, 3) -> (crop, crop, 3), or a batch / list -> (B, crop, crop, 3)."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        return preprocess_one(images, size=size, crop=crop)
    if isinstance(images, np.ndarray) and images.ndim != 4:
        raise ValueError(f"clip preprocess: expected (H, W, 3) or (B, H, W, 3), got shape {images.shape}")
    if len(images) == 0:
        raise ValueError("clip preprocess: got an empty batch")
    out = []
    for i, image in enumerate(images):
        _check_image(image, f"clip preprocess: image {i}")
        out.append(preprocess_one(image, size=size, crop=crop))
    return np.stack(out)
