"""The source portrait of a generation: its crop at the model resolution, its own motion, its
identity input, how to render its face under a motion, and how to paste a crop back.

- FaceMesh models: an image file. The face (``face_index``: largest first, default the
  largest) is aligned to the model's crop (``face/align.py``, the training crop template);
  its motion is measured in that crop; the condition render is the source's own face shape
  re-posed by a motion (``face/render.py``). The identity input is the ArcFace embedding of
  the face when an ArcFace ``.onnx`` is given (``--identity_model``; its weights are the
  user's, not part of a bundle), else zeros.
- SynthFaces models (layout ``synth-v1``): an identity file written by
  ``SynthFaces.export_person`` (``.npz``): the person is rebuilt exactly from its generator
  config and id; the source frame is the person under its own first motion.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable

import numpy as np

from mimaface_jax.data.synth_faces import PERSON_FILE_KIND as SYNTH_PERSON_KIND
from mimaface_jax.face.media_io import read_image
from mimaface_jax.inference.errors import AnimateError


@dataclasses.dataclass
class Source:
    path: str
    image: np.ndarray                  # (H, W, 3) uint8 as read
    crop: np.ndarray                   # (r, r, 3) uint8: the model's source input
    transform: np.ndarray | None       # (2, 3) image -> crop (None: the image is the crop)
    motion: np.ndarray                 # (D,) float32
    identity: np.ndarray               # (E,) float32
    render: Callable[[np.ndarray], np.ndarray]  # motion (D,) -> (r, r, 3) uint8 condition
    person: object | None = None       # SynthFaces: the rebuilt ``SynthIdentity`` (exact renders)


def identity_embedding(image: np.ndarray, landmarks: np.ndarray, model_path: str | None, dim: int) -> np.ndarray:
    """The model's identity input: the ArcFace embedding of the face (``model_path``: an ArcFace
    ``.onnx``, as the training data's identities were made), or zeros without one."""
    if model_path is None:
        return np.zeros((dim,), np.float32)
    from mimaface_jax.face import align
    from mimaface_jax.face.identity import ArcFaceEmbedder

    embedding = ArcFaceEmbedder(model_path).embed(align.arcface_crop(image, landmarks))[0]
    if embedding.shape != (dim,):
        raise AnimateError(f"{model_path}: gives {embedding.shape[0]}-d embeddings; the model's identity "
                           f"input has {dim} (model.mia.identity_dim)")
    return embedding.astype(np.float32)


def facemesh_source(path: str, loaded, face_index: int | None, identity_model: str | None = None) -> Source:
    from mimaface_jax.face import align, render
    from mimaface_jax.inference.errors import quiet_mediapipe
    from mimaface_jax.face.motion import MotionExtractor
    from mimaface_jax.inference.motion_track import crop_landmarks

    r = int(loaded.config.data.resolution)
    image = read_image(path)
    with quiet_mediapipe():
        from mimaface_jax.face.landmarks import FaceLandmarker

        with FaceLandmarker() as landmarker:
            face = landmarker.detect_one(image, "largest" if face_index is None else face_index, source=path)
    m = align.estimate_crop_transform(face.landmarks, r)
    crop = align.warp_crop(image, m, r, border="replicate")
    basis = loaded.basis
    result = MotionExtractor(basis, num_expression=basis.num_components).extract(
        crop_landmarks(face.landmarks, m)[None], (r, r))
    shape = result.neutral_shape
    layout = loaded.layout

    def render_motion(motion: np.ndarray) -> np.ndarray:
        return render.render_from_motion(shape, motion, layout, basis, size=r)

    identity = identity_embedding(image, face.landmarks, identity_model, int(loaded.config.model.mia.identity_dim))
    return Source(path, image, crop, m, result.vectors[0].astype(np.float32), identity, render_motion)


def synth_source(path: str, loaded) -> Source:
    from mimaface_jax.data import synth_render
    from mimaface_jax.data.synth_faces import SynthFaces, SynthFacesConfig

    r = int(loaded.config.data.resolution)
    data = _load_npz(path)
    if str(data.get("kind", "")) != SYNTH_PERSON_KIND:
        raise AnimateError(f"{path}: a SynthFaces model takes a person file written by SynthFaces.export_person "
                           f"(kind {SYNTH_PERSON_KIND!r}) as --source")
    person = SynthFaces(SynthFacesConfig(**json.loads(str(data["generator"])))).identity(int(data["identity_id"]))
    motion = np.asarray(data["source_motion"], np.float32)
    if motion.shape != (loaded.layout.size,):
        raise AnimateError(f"{path}: source_motion has shape {motion.shape}, the model's layout "
                           f"{loaded.layout.version!r} has {loaded.layout.size} entries")
    crop = synth_render.render_frame(person, motion, r)
    identity = np.asarray(data["identity_code"], np.float32)
    return Source(path, crop, crop, None, motion, identity,
                  lambda mot: synth_render.render_condition(person, mot, r), person)


def _load_npz(path: str) -> dict:
    import os
    import zipfile

    if not os.path.isfile(path):
        raise AnimateError(f"{path}: file does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise AnimateError(f"{path}: not a readable .npz file ({err.__class__.__name__})") from None


def load_source(path: str, loaded, face_index: int | None, identity_model: str | None = None) -> Source:
    if loaded.config.model.mia.motion_layout == "synth-v1":
        return synth_source(path, loaded)
    return facemesh_source(path, loaded, face_index, identity_model)
