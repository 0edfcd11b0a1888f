"""KL-VAE: parity with diffusers' AutoencoderKL, size of the SD VAE, jit."""

import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from mimaface_jax.importers.vae import load_vae
from mimaface_jax.models.vae import AutoencoderKL, VAEConfig, vae_decode_apply, vae_encode_apply

TINY = dict(block_out_channels=(8, 16, 16), layers_per_block=2, latent_channels=4, norm_num_groups=4)


def _tiny_reference(**overrides):
    torch.manual_seed(0)
    kwargs = {**TINY, **overrides}
    n = len(kwargs["block_out_channels"])
    return diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n, **kwargs
    ).eval()


_encode = jax.jit(vae_encode_apply, static_argnums=0)
_decode = jax.jit(vae_decode_apply, static_argnums=0)


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.numpy().transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(reference, folder) of a tiny random diffusers VAE saved with save_pretrained."""
    folder = tmp_path_factory.mktemp("tiny_vae")
    reference = _tiny_reference()
    reference.save_pretrained(folder, safe_serialization=True)
    return reference, folder


def test_moments_and_decode_match_diffusers(tiny):
    """Through the jitted pure functions over nnx.split state, as the training program calls them."""
    reference, folder = tiny
    config, model = load_vae(folder)
    assert config.block_out_channels == (8, 16, 16) and config.downsample_factor == 4
    # Odd-looking size (32 x 24) exercises the asymmetric (0, 1, 0, 1) downsample padding.
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 3, 32, 24)).astype(np.float32)
    z = np.random.default_rng(1).normal(size=(2, 4, 8, 6)).astype(np.float32)
    with torch.no_grad():
        posterior = reference.encode(torch.from_numpy(x)).latent_dist
        decoded = reference.decode(torch.from_numpy(z)).sample
    graphdef, state = nnx.split(model)
    mean, logvar = _encode(graphdef, state, jnp.asarray(x.transpose(0, 2, 3, 1)))
    assert mean.shape == logvar.shape == (2, 8, 6, 4)
    assert np.max(np.abs(np.asarray(mean) - _nhwc(posterior.mean))) <= 1e-4
    assert np.max(np.abs(np.asarray(logvar) - _nhwc(posterior.logvar))) <= 1e-4
    ours = _decode(graphdef, state, jnp.asarray(z.transpose(0, 2, 3, 1)))
    assert ours.shape == (2, 32, 24, 3)
    assert np.max(np.abs(np.asarray(ours) - _nhwc(decoded))) <= 1e-4


def test_logvar_is_clamped_like_diffusers(tiny):
    # Models are built from imported weights: random NNX init compiles one kernel per shape.
    _, model = load_vae(tiny[1])
    graphdef, state = nnx.split(model)
    bias = state["quant_conv"]["bias"]
    x = jnp.zeros((1, 16, 16, 3))
    for logvar_bias, clamped in ((1e3, 20.0), (-1e3, -30.0)):  # far outside [-30, 20]
        bias[...] = bias[...].at[4:].set(logvar_bias)
        _, logvar = _encode(graphdef, state, x)
        assert np.all(np.asarray(logvar) == clamped)


def test_sd_vae_parameter_count_equals_diffusers_without_allocating():
    config = VAEConfig()  # SD-1.5 defaults
    abstract = nnx.eval_shape(lambda: AutoencoderKL(config, rngs=nnx.Rngs(0)))
    leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)
    with torch.device("meta"):
        reference = diffusers.AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            norm_num_groups=32,
        )
    expected = sum(p.numel() for p in reference.parameters())
    assert sum(int(np.prod(leaf.shape)) for leaf in leaves) == expected == 83_653_863
    assert config.scaling_factor == 0.18215
