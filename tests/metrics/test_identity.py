"""Identity similarity through the project's ArcFace embedder, on real faces shipped in packages.

The ONNX "ArcFace" here is a tiny random network (no real identity weights can be used in
tests), so "a different person scores lower" is checked against the identity of the image
with itself (exactly 1) and against a slightly degraded copy of the same face, which any
smooth embedding keeps closer than another face; it is not evidence of a trained model."""

import cv2
import numpy as np
import pytest

from mimaface_jax.face.identity import ArcFaceEmbedder
from mimaface_jax.metrics.identity import IdentityScorer, cosine_similarity


@pytest.fixture(scope="module")
def scorer(tmp_path_factory, onnx_models, landmarker):
    path = onnx_models.tiny_arcface(str(tmp_path_factory.mktemp("arcface") / "tiny_arcface.onnx"))
    return IdentityScorer(ArcFaceEmbedder(path), landmarker)


def test_cosine_similarity_hand_computed():
    np.testing.assert_allclose(cosine_similarity(np.array([1.0, 0.0]), np.array([[2.0, 0.0], [1.0, 1.0]])),
                               [1.0, np.sqrt(0.5)])


def test_same_image_is_one_other_person_lower(scorer, astronaut, group_photo):
    # the group photo's face FaceMesh finds, centred on a canvas of the astronaut's size
    face = group_photo
    other = cv2.resize(face, (512, int(512 * face.shape[0] / face.shape[1])))
    canvas = np.full_like(astronaut, 128)
    canvas[:other.shape[0]] = other[:512]
    blurred = cv2.GaussianBlur(astronaut, (5, 5), 1.0)
    out = scorer.score(astronaut, np.stack([astronaut, blurred, canvas]))
    same, degraded, different = out["per_frame"]
    assert same == pytest.approx(1.0, abs=1e-6)
    assert out["frames_without_face"] == 0 and out["source_has_face"]
    assert different < degraded < same
    assert out["identity_similarity"] == pytest.approx(np.mean(out["per_frame"]))


def test_frames_without_a_face_are_nan_and_counted(scorer, astronaut):
    blank = np.full_like(astronaut, 128)
    out = scorer.score(astronaut, np.stack([blank, astronaut]))
    assert np.isnan(out["per_frame"][0]) and out["per_frame"][1] == pytest.approx(1.0, abs=1e-6)
    assert out["frames_without_face"] == 1
    assert scorer.score(blank, astronaut[None])["source_has_face"] is False
