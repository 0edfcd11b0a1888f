"""The on-disk record schema shared by the TFDS builders (``data_pipelines/``) and the pipeline.

A dataset is a TFDS folder (``<data_dir>/<name>/<config>/<version>/``) of ArrayRecord files,
one record per CLIP of a video, plus ``metadata.json`` (a ``tfds.core.MetadataDict``) and, for
FaceMesh datasets, ``expression_basis.npz`` beside the data.

Two record formats (``metadata["record_format"]``):

``FACEMESH_FORMAT`` (real videos: voxceleb2, hdtf, celebv_hq, video_folder), T frames:
  frames         Sequence(bytes) (T,)   JPEG of the aligned RGB crop (crop_size^2)
  landmarks      (T, 478, 3) float32     FaceMesh landmarks in CROP pixels (z in the same
                                         scale); frames where tracking lost the face hold
                                         values interpolated in time (see ``face_found``)
  face_found     (T,) bool               tracking found the face in that frame
  motion         (T, D) float32          ``facemesh_layout(K)``: pose and gaze measured on the
                                         crop; the EXPRESSION field is zero in the records and
                                         is computed at read time (see below)
  neutral_shape  (468, 3) float32        the video's neutral canonical shape (mean over all its
                                         frames with a face, template units)
  crop_transform (T, 2, 3) float32       image pixels -> crop pixels (cv2 warpAffine direction)
  source_size    (2,) int32              (width, height) of the original video
  identity       (E,) float32            ArcFace embedding (only when the builder had a model)
  speaker_id, video_id, clip_id  Text;  clip_index, start_frame, num_frames  int32;  fps float32

  Why expression is computed at read time: the expression PCA basis is fitted on the TRAIN
  split's landmarks, which exist only after the (single, Beam-parallel) landmark pass; and a
  mixture of datasets must share ONE basis. So builders store landmarks + the neutral shape,
  fit the basis on the train split in a cheap post-pass over the written records
  (``expression_basis.npz``), and the pipeline measures the whole motion vector (pose, gaze,
  expression) from the landmarks of the sampled frames with the configured basis.

``STORED_MOTION_FORMAT`` (SynthFaces: exact motion and renders from the generator):
  frames, condition  Sequence(bytes) (T,) JPEG;  motion (T, D) float32 (layout in metadata);
  identity_code (C,) float32; speaker_id, video_id, clip_id Text; clip_index, start_frame,
  num_frames int32; fps float32.

Metadata keys (all formats): ``record_format``, ``motion_layout`` (``MotionLayout.to_json``),
``crop_size``, ``clip_length``, ``min_clip_frames``, ``skipped`` ({reason: count}),
``skipped_files`` ({reason: [first paths]}), ``videos`` ({"seen", "used"}), ``clips``
({split: count}), ``speakers`` ({split: count}), ``split_fractions``; FaceMesh only:
``expression_basis`` (file name beside the data), ``num_expression``, ``has_identity``.
"""

from __future__ import annotations

FACEMESH_FORMAT = "mimaface-facemesh-clips-v1"
STORED_MOTION_FORMAT = "mimaface-stored-motion-clips-v1"
RECORD_FORMATS = (FACEMESH_FORMAT, STORED_MOTION_FORMAT)

EXPRESSION_BASIS_FILE = "expression_basis.npz"

# Metadata keys.
META_FORMAT = "record_format"
META_LAYOUT = "motion_layout"
META_CROP_SIZE = "crop_size"
META_CLIP_LENGTH = "clip_length"
META_MIN_CLIP_FRAMES = "min_clip_frames"
META_SKIPPED = "skipped"
META_SKIPPED_FILES = "skipped_files"
META_VIDEOS = "videos"
META_CLIPS = "clips"
META_SPEAKERS = "speakers"
META_SPLIT_FRACTIONS = "split_fractions"
META_EXPRESSION_BASIS = "expression_basis"
META_NUM_EXPRESSION = "num_expression"
META_HAS_IDENTITY = "has_identity"


class CorruptDatasetError(ValueError):
    """Too many corrupt records in a row for the pipeline to skip them."""
