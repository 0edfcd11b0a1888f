"""The U-Net importer rejects checkpoints that do not fit, naming every bad key, all at once."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel

from mimaface_jax.importers.common import WeightImportError
from tiny_checkpoints import edited_copy
from mimaface_jax.importers.unet import import_unet, import_unet_state, unet_config_from_checkpoint



@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny diffusers U-Net folder and MotionAdapter folder."""
    path = tmp_path_factory.mktemp("unet_import")
    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=16,
        attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    ).save_pretrained(path / "unet", safe_serialization=True)
    MotionAdapter(
        block_out_channels=(16, 32),
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=4,
        use_motion_mid_block=False,
    ).save_pretrained(path / "motion", safe_serialization=True)
    return path / "unet", path / "motion"


def test_clean_folders_import(folders):
    unet_dir, motion_dir = folders
    config, _, state = import_unet_state(unet_dir, motion_dir)
    assert config.use_motion_module and state["conv_in"]["kernel"].shape == (3, 3, 13, 16)


def test_renamed_key_is_named(folders, tmp_path):
    unet_dir, motion_dir = folders
    old = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    new = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_key.weight"
    bad = edited_copy(unet_dir, tmp_path / "unet", edit_weights=lambda t: t.__setitem__(new, t.pop(old)))
    with pytest.raises(WeightImportError) as info:
        import_unet(bad, motion_dir)
    assert info.value.missing == [old]
    assert info.value.unexpected == [new]
    assert old in str(info.value) and new in str(info.value)


def test_misshaped_tensor_is_named(folders, tmp_path):
    unet_dir, motion_dir = folders
    key = "up_blocks.1.motion_modules.1.transformer_blocks.0.ff.net.2.weight"

    def edit(t):
        t[key] = np.zeros((t[key].shape[0], t[key].shape[1] + 1), t[key].dtype)

    bad = edited_copy(motion_dir, tmp_path / "motion", edit_weights=edit)
    with pytest.raises(WeightImportError) as info:
        import_unet(unet_dir, bad)
    assert [m[0] for m in info.value.mismatched] == [key]
    assert not info.value.missing and not info.value.unexpected
    assert key in str(info.value)


def test_every_problem_is_reported_at_once(folders, tmp_path):
    unet_dir, motion_dir = folders
    dropped = "conv_out.bias"
    bad_unet = edited_copy(unet_dir, tmp_path / "unet", edit_weights=lambda t: t.pop(dropped))
    pe_key = "down_blocks.1.motion_modules.0.transformer_blocks.0.pos_embed.pe"
    extra = "down_blocks.0.motion_modules.0.surprise.weight"

    def edit(t):
        t[pe_key] = t[pe_key] + 1.0  # not a sinusoidal table any more
        t[extra] = np.zeros((3,), np.float32)

    bad_motion = edited_copy(motion_dir, tmp_path / "motion", edit_weights=edit)
    with pytest.raises(WeightImportError) as info:
        import_unet(bad_unet, bad_motion)
    assert info.value.missing == [dropped]
    assert info.value.unexpected == [extra]
    assert any(pe_key in m for m in info.value.other)


def test_weights_without_a_place_in_the_model_are_rejected(folders):
    """Motion weights given to a model configured without motion modules: rejected, not half-used."""
    unet_dir, motion_dir = folders
    config = unet_config_from_checkpoint(unet_dir, motion_dir)
    smaller = dataclasses.replace(config, use_motion_module=False)
    with pytest.raises(WeightImportError) as info:
        import_unet(unet_dir, motion_dir, config=smaller)
    assert info.value.unexpected and all(".motion_modules." in k for k in info.value.unexpected)
    assert not info.value.missing
