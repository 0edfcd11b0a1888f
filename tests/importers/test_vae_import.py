"""diffusers AutoencoderKL folders -> our VAE: bad keys, bad shapes, legacy names, configs."""


import diffusers
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from mimaface_jax.importers.common import WeightImportError
from mimaface_jax.importers.vae import load_vae
from tiny_checkpoints import edited_copy

WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_vae")
    torch.manual_seed(0)
    diffusers.AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
    ).save_pretrained(folder, safe_serialization=True)
    return folder


def test_renamed_key_is_reported_by_name(vae_folder, tmp_path):
    key = "decoder.up_blocks.0.upsamplers.0.conv.weight"

    def rename(t):
        t["decoder.up_blocks.0.upsampler.conv.weight"] = t.pop(key)

    with pytest.raises(WeightImportError) as err:
        load_vae(edited_copy(vae_folder, tmp_path / "renamed", edit_weights=rename))
    assert err.value.missing == [key]
    assert err.value.unexpected == ["decoder.up_blocks.0.upsampler.conv.weight"]
    assert key in str(err.value)


def test_mis_shaped_tensor_is_reported_by_name(vae_folder, tmp_path):
    key = "encoder.down_blocks.1.resnets.0.conv_shortcut.weight"

    def widen(t):
        t[key] = np.zeros((16, 12, 1, 1), np.float32)

    with pytest.raises(WeightImportError) as err:
        load_vae(edited_copy(vae_folder, tmp_path / "misshaped", edit_weights=widen))
    assert err.value.mismatched == [(key, (16, 12, 1, 1), (1, 1, 8, 16))]
    assert key in str(err.value)


def test_legacy_attention_names_import_to_the_same_weights(vae_folder, tmp_path):
    new_to_old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}

    def to_legacy(t):
        for key in [k for k in t if ".attentions.0." in k]:
            prefix, rest = key.split(".attentions.0.")
            name, leaf = rest.rsplit(".", 1)
            if name in new_to_old:
                t[f"{prefix}.attentions.0.{new_to_old[name]}.{leaf}"] = t.pop(key)

    legacy_folder = edited_copy(vae_folder, tmp_path / "legacy", edit_weights=to_legacy)
    assert "encoder.mid_block.attentions.0.query.weight" in load_file(legacy_folder / WEIGHTS)
    _, legacy = load_vae(legacy_folder)
    _, current = load_vae(vae_folder)
    for name in ("to_q", "to_k", "to_v", "to_out"):
        for block in (legacy.encoder, legacy.decoder):
            assert getattr(block.mid_block.attention, name).kernel.shape == (16, 16)
        np.testing.assert_array_equal(
            np.asarray(getattr(legacy.decoder.mid_block.attention, name).kernel[...]),
            np.asarray(getattr(current.decoder.mid_block.attention, name).kernel[...]),
        )


def test_config_fields_set_the_architecture(vae_folder, tmp_path):
    config, _ = load_vae(vae_folder)
    assert config.block_out_channels == (8, 16) and config.layers_per_block == 1 and config.norm_num_groups == 4
    assert config.scaling_factor == 0.18215

    def unsupported(c):
        c["down_block_types"] = ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"]

    with pytest.raises(ValueError, match="AttnDownEncoderBlock2D"):
        load_vae(edited_copy(vae_folder, tmp_path / "attn_blocks", edit_config=unsupported))

    def wrong_depth(c):
        c["layers_per_block"] = 2

    with pytest.raises(WeightImportError, match="encoder.down_blocks.0.resnets.1.conv1.weight"):
        load_vae(edited_copy(vae_folder, tmp_path / "deeper", edit_config=wrong_depth))
