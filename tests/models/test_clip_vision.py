"""CLIP vision tower: parity with transformers' CLIPVisionModel, size of ViT-L/14, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from mimaface_jax.importers.clip import load_clip_vision
from mimaface_jax.models.clip_vision import CLIPVisionConfig, CLIPVisionModel, clip_vision_apply

TINY = dict(
    image_size=28, patch_size=7, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
)


def _param_count(state) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state))


def _save_tiny_reference(tmp_path, **overrides):
    torch.manual_seed(0)
    reference = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**{**TINY, **overrides})).eval()
    reference.save_pretrained(tmp_path, safe_serialization=True)
    return reference


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(reference, folder) of a tiny random CLIPVisionModel saved with save_pretrained."""
    folder = tmp_path_factory.mktemp("tiny_clip")
    return _save_tiny_reference(folder), folder


def test_last_hidden_state_matches_transformers(tiny):
    reference, folder = tiny
    config, model = load_clip_vision(folder)
    assert config.num_positions == 17 and config.hidden_act == "quick_gelu"
    pixels = np.random.default_rng(0).normal(size=(2, 3, 28, 28)).astype(np.float32)  # NCHW
    with torch.no_grad():
        ref = reference(torch.from_numpy(pixels))
    graphdef, state = nnx.split(model)  # the jitted pure function the training program calls
    ours = jax.jit(clip_vision_apply, static_argnums=0)(graphdef, state, jnp.asarray(pixels.transpose(0, 2, 3, 1)))
    assert ours.shape == (2, 17, 32)
    assert np.max(np.abs(np.asarray(ours) - ref.last_hidden_state.numpy())) <= 1e-4
    # last_hidden_state carries no post_layernorm; pooled() is HF's pooler_output.
    assert np.max(np.abs(np.asarray(model.pooled(ours)) - ref.pooler_output.numpy())) <= 1e-4


def test_gelu_variant_matches_transformers(tmp_path):
    reference = _save_tiny_reference(tmp_path, hidden_act="gelu")
    _, model = load_clip_vision(tmp_path)
    pixels = np.random.default_rng(1).normal(size=(1, 3, 28, 28)).astype(np.float32)
    with torch.no_grad():
        ref = reference(torch.from_numpy(pixels)).last_hidden_state.numpy()
    assert np.max(np.abs(np.asarray(model(jnp.asarray(pixels.transpose(0, 2, 3, 1)))) - ref)) <= 1e-4


def test_wrong_image_size_is_a_clear_error(tiny):
    _, model = load_clip_vision(tiny[1])
    with pytest.raises(ValueError, match=r"\(B, 28, 28, 3\)"):
        model(jnp.zeros((1, 32, 32, 3)))


def test_vit_l14_parameter_count_equals_transformers_without_allocating():
    config = CLIPVisionConfig()  # ViT-L/14 defaults
    abstract = nnx.eval_shape(lambda: CLIPVisionModel(config, rngs=nnx.Rngs(0)))
    leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)
    with torch.device("meta"):
        reference = transformers.CLIPVisionModel(
            transformers.CLIPVisionConfig(
                hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=224, patch_size=14,
            )
        )
    expected = sum(p.numel() for p in reference.parameters())
    assert _param_count(leaves) == expected == 303_179_776
    assert config.num_positions == 257
