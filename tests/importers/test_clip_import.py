"""HF CLIP folders -> our CLIP vision tower: CLIPModel folders, bad keys, bad shapes."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from mimaface_jax.importers.clip import load_clip_vision
from mimaface_jax.importers.common import WeightImportError
from mimaface_jax.models.clip_vision import clip_vision_apply
from tiny_checkpoints import edited_copy

HF_WEIGHTS = "model.safetensors"

VISION = dict(
    image_size=28, patch_size=7, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
)
TEXT = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=50)


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory):
    """(reference, folder) of a tiny random CLIPModel (vision + text towers + projections)."""
    folder = tmp_path_factory.mktemp("tiny_clip_model")
    torch.manual_seed(0)
    config = transformers.CLIPConfig(vision_config=VISION, text_config=TEXT, projection_dim=8)
    reference = transformers.CLIPModel(config).eval()
    reference.save_pretrained(folder, safe_serialization=True)
    return reference, folder


@pytest.fixture(scope="module")
def vision_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_clip_vision")
    torch.manual_seed(1)
    reference = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**VISION))
    reference.save_pretrained(folder, safe_serialization=True)
    return folder


def test_clip_model_folder_imports_its_vision_tower(clip_model):
    reference, folder = clip_model
    config, model = load_clip_vision(folder)
    assert (config.hidden_size, config.num_hidden_layers, config.num_positions) == (32, 2, 17)
    pixels = np.random.default_rng(0).normal(size=(2, 3, 28, 28)).astype(np.float32)
    with torch.no_grad():
        ref = reference.vision_model(torch.from_numpy(pixels)).last_hidden_state.numpy()
    graphdef, state = nnx.split(model)
    ours = jax.jit(clip_vision_apply, static_argnums=0)(graphdef, state, jnp.asarray(pixels.transpose(0, 2, 3, 1)))
    assert np.max(np.abs(np.asarray(ours) - ref)) <= 1e-4


def test_legacy_position_ids_buffer_is_ignored(vision_folder, tmp_path):
    def add_buffer(t):
        t["vision_model.embeddings.position_ids"] = np.arange(17, dtype=np.int64)[None]

    _, model = load_clip_vision(edited_copy(vision_folder, tmp_path / "legacy", weights=HF_WEIGHTS, edit_weights=add_buffer))
    _, plain = load_clip_vision(vision_folder)
    np.testing.assert_array_equal(
        np.asarray(model.embeddings.position_embedding[...]), np.asarray(plain.embeddings.position_embedding[...])
    )


def test_renamed_key_is_reported_by_name(vision_folder, tmp_path):
    key = "vision_model.encoder.layers.1.mlp.fc1.weight"

    def rename(t):
        t["vision_model.encoder.layers.1.mlp.fc_1.weight"] = t.pop(key)

    with pytest.raises(WeightImportError) as err:
        load_clip_vision(edited_copy(vision_folder, tmp_path / "renamed", weights=HF_WEIGHTS, edit_weights=rename))
    assert err.value.missing == [key]
    assert err.value.unexpected == ["vision_model.encoder.layers.1.mlp.fc_1.weight"]
    assert key in str(err.value)


def test_mis_shaped_tensor_is_reported_by_name(vision_folder, tmp_path):
    key = "vision_model.embeddings.position_embedding.weight"

    def truncate(t):
        t[key] = t[key][:16]

    with pytest.raises(WeightImportError) as err:
        load_clip_vision(edited_copy(vision_folder, tmp_path / "misshaped", weights=HF_WEIGHTS, edit_weights=truncate))
    assert [m[0] for m in err.value.mismatched] == [key]
    assert f"{key}: (16, 32) -> (17, 32)" in str(err.value)


def test_unknown_vision_key_is_an_error_but_text_tower_is_not(clip_model, tmp_path):
    def add_key(t):
        t["vision_model.encoder.layers.0.extra_gate.weight"] = np.zeros((32,), np.float32)

    with pytest.raises(WeightImportError) as err:
        load_clip_vision(edited_copy(clip_model[1], tmp_path / "extra", weights=HF_WEIGHTS, edit_weights=add_key))
    assert err.value.unexpected == ["vision_model.encoder.layers.0.extra_gate.weight"]
    assert not err.value.missing and not err.value.mismatched


def test_non_clip_config_is_rejected(vision_folder, tmp_path):
    folder = edited_copy(vision_folder, tmp_path / "not_clip", weights=HF_WEIGHTS)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "siglip_vision_model"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="siglip_vision_model"):
        load_clip_vision(folder)
