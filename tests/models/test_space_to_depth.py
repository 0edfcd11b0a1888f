"""The space-to-depth autoencoder is an exact (bitwise) invertible rearrangement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
import torch
from flax import nnx

from mimaface_jax.models.space_to_depth import SpaceToDepthAutoencoder, SpaceToDepthConfig


@pytest.mark.parametrize("factor", [1, 2, 8])
def test_round_trip_is_bitwise_on_random_images(factor):
    ae = SpaceToDepthAutoencoder(SpaceToDepthConfig(factor=factor))
    x = jax.random.normal(jax.random.key(factor), (2, 64, 48, 3), jnp.float32)
    mean, logvar = ae.encode(x)
    assert mean.shape == (2, 64 // factor, 48 // factor, 3 * factor**2)
    assert ae.config.latent_channels == 3 * factor**2
    assert np.all(np.asarray(logvar) == ae.config.logvar)
    assert np.array_equal(np.asarray(ae.decode(mean)), np.asarray(x))


def test_round_trip_is_bitwise_on_a_real_photo_under_jit():
    ae = SpaceToDepthAutoencoder(SpaceToDepthConfig(factor=8))
    photo = skimage.data.astronaut().astype(np.float32) / 127.5 - 1.0  # (512, 512, 3) in [-1, 1]
    x = jnp.asarray(photo[None])
    graphdef, state = nnx.split(ae)

    @jax.jit
    def round_trip(state, x):
        model = nnx.merge(graphdef, state)
        return model.decode(model.encode(x)[0])

    assert np.array_equal(np.asarray(round_trip(state, x)), photo[None])
    assert ae.scaling_factor == 1.0


def test_latent_layout_is_torch_pixel_unshuffle_with_channels_last():
    # Independent reference for the channel order: torch's pixel_unshuffle gives (c, dy, dx);
    # ours is (dy, dx, c).
    f, c = 4, 3
    x = np.random.default_rng(0).normal(size=(2, 16, 8, c)).astype(np.float32)
    ours = np.asarray(SpaceToDepthAutoencoder(SpaceToDepthConfig(factor=f)).encode(jnp.asarray(x))[0])
    ref = torch.nn.functional.pixel_unshuffle(torch.from_numpy(x).permute(0, 3, 1, 2), f).numpy()
    ref = ref.reshape(2, c, f, f, 16 // f, 8 // f).transpose(0, 4, 5, 2, 3, 1).reshape(ours.shape)
    assert np.array_equal(ours, ref)


def test_bad_shapes_raise():
    ae = SpaceToDepthAutoencoder(SpaceToDepthConfig(factor=8))
    with pytest.raises(ValueError, match="divisible"):
        ae.encode(jnp.zeros((1, 60, 64, 3)))
    with pytest.raises(ValueError, match="192"):
        ae.decode(jnp.zeros((1, 8, 8, 4)))
