"""TFDS feature specs of the record formats (``mimaface_jax/data/records.py``).

Only Tensor / Scalar / Text / Sequence(bytes) features: they build and read without
TensorFlow (tfds.features.Image / Video need TF). Frames are JPEG bytes encoded with cv2.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

NUM_LANDMARKS = 478
NUM_FACE_POINTS = 468


def _jpeg_sequence():
    return tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_))


def _ids() -> dict:
    return {
        "speaker_id": tfds.features.Text(),
        "video_id": tfds.features.Text(),
        "clip_id": tfds.features.Text(),
        "clip_index": tfds.features.Scalar(dtype=np.int32),
        "start_frame": tfds.features.Scalar(dtype=np.int32),
        "num_frames": tfds.features.Scalar(dtype=np.int32),
        "fps": tfds.features.Scalar(dtype=np.float32),
    }


def facemesh_features(motion_size: int, identity_dim: int = 0) -> tfds.features.FeaturesDict:
    """Features of ``FACEMESH_FORMAT`` records; ``identity`` only when ``identity_dim > 0``."""
    spec = {
        "frames": _jpeg_sequence(),
        "landmarks": tfds.features.Tensor(shape=(None, NUM_LANDMARKS, 3), dtype=np.float32),
        "face_found": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
        "motion": tfds.features.Tensor(shape=(None, motion_size), dtype=np.float32),
        "neutral_shape": tfds.features.Tensor(shape=(NUM_FACE_POINTS, 3), dtype=np.float32),
        "crop_transform": tfds.features.Tensor(shape=(None, 2, 3), dtype=np.float32),
        "source_size": tfds.features.Tensor(shape=(2,), dtype=np.int32),
        **_ids(),
    }
    if identity_dim > 0:
        spec["identity"] = tfds.features.Tensor(shape=(identity_dim,), dtype=np.float32)
    return tfds.features.FeaturesDict(spec)


def stored_motion_features(motion_size: int, identity_code_size: int,
                           ) -> tfds.features.FeaturesDict:
    """Features of ``STORED_MOTION_FORMAT`` records (SynthFaces)."""
    return tfds.features.FeaturesDict({
        "frames": _jpeg_sequence(),
        "condition": _jpeg_sequence(),
        "motion": tfds.features.Tensor(shape=(None, motion_size), dtype=np.float32),
        "identity_code": tfds.features.Tensor(shape=(identity_code_size,), dtype=np.float32),
        **_ids(),
    })
