"""Shared 2-D blocks (models/layers.py) against their diffusers counterparts.

Weights move through the importer machinery (``importers.common``), as the VAE / U-Net
importers do.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention as TorchAttention
from diffusers.models.downsampling import Downsample2D as TorchDownsample2D
from diffusers.models.resnet import ResnetBlock2D as TorchResnetBlock2D
from diffusers.models.upsampling import Upsample2D as TorchUpsample2D
from flax import nnx

from mimaface_jax.importers.common import WeightImportError, apply_plan, build_default_plan
from mimaface_jax.models.layers import Attention, Downsample2D, GroupNorm, ResnetBlock2D, Upsample2D

TOL = 1e-5


def load_from_torch(ours: nnx.Module, theirs: torch.nn.Module, rename=lambda k: k.replace(".to_out.", ".to_out.0.")):
    """Fills ``ours`` from ``theirs``' state dict with the default key/layout plan."""
    rename_full = lambda k: rename("." + k)[1:]  # noqa: E731  (match ".name." at the start too)
    state = nnx.state(ours)
    tensors = {k: v.detach().numpy() for k, v in theirs.state_dict().items()}
    nnx.update(ours, apply_plan(state, build_default_plan(state, rename_full), tensors, source="torch"))


def randomise(module: torch.nn.Module, seed: int):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return module.eval()


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).detach().numpy()


def test_group_norm_statistics_per_sample():
    x = np.random.default_rng(0).standard_normal((6, 5, 4, 16)).astype(np.float32) * 3 + 1
    ours = GroupNorm(16, 4, eps=1e-5)
    theirs = randomise(torch.nn.GroupNorm(4, 16, eps=1e-5), 0)
    load_from_torch(ours, theirs)
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(x))), nhwc(theirs(nchw(x))), atol=TOL)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=16, out_channels=32, temb_channels=24, groups=4, eps=1e-5),  # U-Net, 1x1 shortcut
        dict(in_channels=16, out_channels=16, temb_channels=None, groups=8, eps=1e-6),  # VAE, no temb
    ],
)
def test_resnet_block_matches_diffusers(kwargs):
    theirs = randomise(TorchResnetBlock2D(**kwargs), 1)
    ours = ResnetBlock2D(
        kwargs["in_channels"],
        kwargs["out_channels"],
        temb_channels=kwargs["temb_channels"],
        groups=kwargs["groups"],
        eps=kwargs["eps"],
        rngs=nnx.Rngs(0),
    )
    load_from_torch(ours, theirs)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 8, kwargs["in_channels"])).astype(np.float32)
    temb = rng.standard_normal((2, 24)).astype(np.float32) if kwargs["temb_channels"] else None
    with torch.no_grad():
        ref = theirs(nchw(x), None if temb is None else torch.from_numpy(temb))
    out = ours(jnp.asarray(x), None if temb is None else jnp.asarray(temb))
    np.testing.assert_allclose(np.asarray(out), nhwc(ref), atol=TOL)


@pytest.mark.parametrize("padding", [0, 1])
def test_downsample_matches_diffusers(padding):
    theirs = randomise(TorchDownsample2D(8, use_conv=True, out_channels=8, padding=padding, name="op"), 2)
    ours = Downsample2D(8, padding=padding, rngs=nnx.Rngs(0))
    load_from_torch(ours, theirs)
    x = np.random.default_rng(2).standard_normal((2, 9, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = nhwc(theirs(nchw(x)))
    out = np.asarray(ours(jnp.asarray(x)))
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=TOL)


def test_upsample_matches_diffusers():
    theirs = randomise(TorchUpsample2D(8, use_conv=True, out_channels=4), 3)
    ours = Upsample2D(8, 4, rngs=nnx.Rngs(0))
    load_from_torch(ours, theirs)
    x = np.random.default_rng(3).standard_normal((2, 5, 6, 8)).astype(np.float32)
    with torch.no_grad():
        ref = nhwc(theirs(nchw(x)))
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(x))), ref, atol=TOL)


def test_cross_attention_matches_diffusers():
    theirs = randomise(TorchAttention(query_dim=16, cross_attention_dim=12, heads=2, dim_head=8), 4)
    ours = Attention(16, cross_attention_dim=12, heads=2, dim_head=8, rngs=nnx.Rngs(0))
    load_from_torch(ours, theirs)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 10, 16)).astype(np.float32)
    ctx = rng.standard_normal((2, 7, 12)).astype(np.float32)
    with torch.no_grad():
        ref = theirs(torch.from_numpy(x), torch.from_numpy(ctx)).numpy()
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(x), jnp.asarray(ctx))), ref, atol=TOL)


def test_vae_style_spatial_attention_matches_diffusers():
    """GroupNorm first, biases everywhere, residual, rescale (the VAE mid-block attention)."""
    kw = dict(heads=1, dim_head=16, bias=True, norm_num_groups=4, residual_connection=True)
    theirs = randomise(
        TorchAttention(query_dim=16, eps=1e-6, rescale_output_factor=2.0, upcast_softmax=True, **kw), 5
    )
    ours = Attention(16, norm_eps=1e-6, rescale_output_factor=2.0, rngs=nnx.Rngs(0), **kw)
    load_from_torch(ours, theirs)
    x = np.random.default_rng(5).standard_normal((2, 4, 6, 16)).astype(np.float32)
    with torch.no_grad():
        ref = nhwc(theirs(nchw(x)))
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(x))), ref, atol=TOL)


def test_load_from_torch_rejects_a_foreign_module():
    """The shared plan machinery refuses a state dict of another shape, naming the keys."""
    ours = ResnetBlock2D(8, 8, temb_channels=None, groups=4, rngs=nnx.Rngs(0))
    theirs = TorchResnetBlock2D(in_channels=8, out_channels=16, temb_channels=None, groups=4)
    with pytest.raises(WeightImportError) as info:
        load_from_torch(ours, theirs)
    names = {m[0] for m in info.value.mismatched}
    assert "conv1.weight" in names and "conv_shortcut.weight" in info.value.unexpected
