"""The SD-1.5 configs train what the method trains (names of the abstract SD-1.5 model):
stage 1 the U-Net, MIA and the CLIP tower; stage 2 the motion modules (+ unet.conv_in), MIA and
the last two CLIP layers, nothing else of the U-Net or CLIP."""

import re

import pytest

import runner
from mimaface_jax.training import mesh_and_model, optimizer


def _split(name):
    c = runner.load_config(name)
    c.mesh.fsdp = 1
    c.mesh.data = -1
    mesh, rules = mesh_and_model.build_mesh(c)
    model = mesh_and_model.abstract_model(c, mesh, rules)
    trainable, frozen = optimizer.split_trainable(model.spec.names, c)
    return c, set(trainable), set(frozen)


@pytest.mark.parametrize("name", ["sd15_stage1_image"])
def test_stage1_trains_unet_mia_and_clip(name):
    c, trainable, frozen = _split(name)
    assert c.model.clip.trainable
    assert not frozen, sorted(frozen)[:5]
    for prefix in ("unet.", "mia.", "clip."):
        assert any(n.startswith(prefix) for n in trainable), prefix


def test_stage2_trains_motion_modules_mia_and_last_clip_layers():
    c, trainable, frozen = _split("sd15_stage2_video")
    assert c.model.clip.trainable  # the gradient must reach the last CLIP layers
    clip_layers = {int(m.group(1)) for n in trainable if (m := re.match(r"clip\.layers\.(\d+)\.", n))}
    assert clip_layers == {22, 23}
    assert "clip.layers.21.mlp.fc1.kernel" in frozen and "clip.embeddings.patch_embedding.kernel" in frozen
    assert {n for n in trainable if n.startswith("mia.")} == {n for n in trainable | frozen if n.startswith("mia.")}
    unet_trained = {n for n in trainable if n.startswith("unet.")}
    assert unet_trained and all("motion_modules" in n or n.startswith("unet.conv_in.") for n in unet_trained)
    assert any("motion_modules" in n for n in unet_trained) and "unet.conv_in.kernel" in unet_trained
    assert any(n.startswith("unet.down_blocks.0.resnets.") for n in frozen)
