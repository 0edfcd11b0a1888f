"""ArcFace embedder: loads a tiny ArcFace-shaped ONNX model through insightface; errors."""

import numpy as np
import pytest

from mimaface_jax.face.align import arcface_crop
from mimaface_jax.face.identity import ArcFaceEmbedder, IdentityModelError


def test_tiny_arcface_gives_unit_512d_embeddings(tmp_path, onnx_models, landmarker,
                                                 astronaut, group_photo):
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    path = onnx_models.tiny_arcface(str(tmp_path / "tiny_arcface.onnx"))
    embedder = ArcFaceEmbedder(path)
    assert isinstance(embedder.model, ArcFaceONNX) and embedder.dim == 512
    crop = arcface_crop(astronaut, landmarker.detect_one(astronaut).landmarks)
    other = arcface_crop(group_photo, landmarker.detect_one(group_photo, 0).landmarks)
    emb = embedder.embed(np.stack([crop, other, crop]))
    assert emb.shape == (3, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb[0], emb[2], atol=1e-6)     # deterministic per crop
    assert emb[0] @ emb[1] < 0.999                             # different faces differ
    # RGB in, BGR to insightface: equal to running the ONNX graph on RGB (x - 127.5) / 127.5
    import onnxruntime

    sess = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    blob = ((crop.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
    direct = sess.run(None, {"input.1": blob})[0][0]
    np.testing.assert_allclose(emb[0], direct / np.linalg.norm(direct), atol=1e-5)
    assert embedder.embed(crop).shape == (1, 512)


def test_bad_models_give_specific_errors(tmp_path, onnx_models):
    two = onnx_models.two_output_model(str(tmp_path / "two_outputs.onnx"))
    with pytest.raises(IdentityModelError, match=r"two_outputs\.onnx: expected 1 output"):
        ArcFaceEmbedder(two)
    small = onnx_models.tiny_arcface(str(tmp_path / "small_input.onnx"), size=64)
    with pytest.raises(IdentityModelError, match=r"small_input\.onnx: input .* \['N', 3, 64, 64\]"):
        ArcFaceEmbedder(small)
    missing = tmp_path / "nowhere" / "arcface.onnx"
    with pytest.raises(IdentityModelError, match=r"nowhere/arcface\.onnx: file does not exist"):
        ArcFaceEmbedder(missing)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not a protobuf" * 10)
    with pytest.raises(IdentityModelError, match=r"junk\.onnx: not a readable ONNX model"):
        ArcFaceEmbedder(junk)
