"""Identity similarity: ArcFace cosine between the source face and each generated face.

The ArcFace network is the user's ONNX file (``face/identity.py``, nothing downloaded). Faces
are found with FaceMesh and cut with the ArcFace alignment (``align.arcface_crop``); a frame
where no face is found has NaN similarity and is counted in ``frames_without_face``.
"""

from __future__ import annotations

import numpy as np


def cosine_similarity(reference: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """reference (D,) and embeddings (N, D) -> (N,) cosine similarities."""
    reference = np.asarray(reference, np.float64)
    embeddings = np.asarray(embeddings, np.float64)
    if embeddings.ndim != 2 or reference.shape != embeddings.shape[1:]:
        raise ValueError(f"reference {reference.shape} and embeddings {embeddings.shape}: expected (D,), (N, D)")
    ref = reference / np.linalg.norm(reference)
    return embeddings @ ref / np.linalg.norm(embeddings, axis=1)


class IdentityScorer:
    """``score(source, frames)``: ArcFace cosine of each frame's face to the source's face.

    ``embedder``: a ``face.identity.ArcFaceEmbedder``; ``landmarker``: a
    ``face.landmarks.FaceLandmarker`` (static-image mode).
    """

    def __init__(self, embedder, landmarker):
        self.embedder, self.landmarker = embedder, landmarker

    def crop(self, image: np.ndarray) -> np.ndarray | None:
        """(H, W, 3) uint8 -> (112, 112, 3) ArcFace crop of the largest face, or None."""
        from mimaface_jax.face.align import arcface_crop

        faces = self.landmarker.detect(image)
        if not faces:
            return None
        face = max(faces, key=lambda f: f.area)
        return arcface_crop(image, face.landmarks)

    def score(self, source: np.ndarray, frames: np.ndarray) -> dict:
        """source (H, W, 3) uint8, frames (T, H, W, 3) uint8 -> {"identity_similarity": mean
        over frames with a face (NaN if none), "per_frame": (T,) with NaN where no face,
        "frames_without_face": int}; ``source_has_face`` False (all NaN) when the source has none."""
        ref_crop = self.crop(source)
        t = len(frames)
        if ref_crop is None:
            return {"identity_similarity": float("nan"), "per_frame": np.full((t,), np.nan),
                    "frames_without_face": t, "source_has_face": False}
        crops = [self.crop(f) for f in frames]
        have = [i for i, c in enumerate(crops) if c is not None]
        per_frame = np.full((t,), np.nan)
        if have:
            emb = self.embedder.embed(np.stack([ref_crop] + [crops[i] for i in have]))
            per_frame[have] = cosine_similarity(emb[0], emb[1:])
        mean = float(np.mean(per_frame[have])) if have else float("nan")
        return {"identity_similarity": mean, "per_frame": per_frame, "frames_without_face": t - len(have),
                "source_has_face": True}
