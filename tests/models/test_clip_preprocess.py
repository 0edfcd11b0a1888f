"""clip_preprocess equals transformers' CLIPImageProcessor() (pixel_values, NCHW -> NHWC)."""

import numpy as np
import pytest
import skimage.data
from transformers import CLIPImageProcessor

from mimaface_jax.models.clip_preprocess import clip_preprocess


def _reference(images):
    out = CLIPImageProcessor()(images, return_tensors="np")["pixel_values"]
    return out.transpose(0, 2, 3, 1)  # (B, 3, 224, 224) -> (B, 224, 224, 3)


@pytest.mark.parametrize(
    "crop",
    [
        (slice(None), slice(None)),  # the full 512x512 photo (downscale)
        (slice(30, 430), slice(120, 380)),  # 400x260 portrait (non-square, tall)
        (slice(60, 160), slice(0, 500)),  # 100x500 strip (upscale of the short side)
    ],
)
def test_single_image_matches_clip_image_processor(crop):
    image = np.ascontiguousarray(skimage.data.astronaut()[crop])
    ours = clip_preprocess(image)
    ref = _reference(image)[0]
    assert ours.shape == (224, 224, 3) and ours.dtype == np.float32
    assert np.max(np.abs(ours - ref)) <= 1e-5


def test_batches_match_clip_image_processor():
    photo = skimage.data.astronaut()
    batch = np.stack([photo, photo[::-1], photo[:, ::-1]])  # (3, 512, 512, 3)
    ours = clip_preprocess(batch)
    assert ours.shape == (3, 224, 224, 3)
    assert np.max(np.abs(ours - _reference(list(batch)))) <= 1e-5
    # A list of differently sized images.
    mixed = [photo[:300, :200], photo[100:, 50:]]
    ours_mixed = clip_preprocess(mixed)
    assert ours_mixed.shape == (2, 224, 224, 3)
    assert np.max(np.abs(ours_mixed - _reference(mixed))) <= 1e-5


def test_rejects_float_and_non_rgb_input():
    photo = skimage.data.astronaut()
    with pytest.raises(ValueError, match="uint8"):
        clip_preprocess(photo.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        clip_preprocess(photo[..., :1])
    with pytest.raises(ValueError, match="empty"):
        clip_preprocess([])
