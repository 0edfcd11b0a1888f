"""A fixed, exactly invertible "autoencoder" for the tiny SynthFaces configs.

Design choice: instead of a learned VAE, latents are the pixels rearranged space-to-depth:
every ``factor x factor`` patch of a ``C``-channel image becomes one latent pixel with
``C * factor**2`` channels, ordered ``(dy, dx, c)``. It has the VAE's interface (``encode`` ->
``(mean, logvar)``, ``decode``, ``scaling_factor``, ``downsample_factor``,
``latent_channels``) so the rest of the pipeline cannot tell them apart, it has no
parameters, and ``decode(encode(x)[0]) == x`` bitwise (a pure reshape / transpose).

The latent channel count is therefore NOT free: it is ``in_channels * factor**2``
(64x64x3 with factor 8 -> 8x8x192; factor 4 -> 16x16x48). The U-Net of a config that uses
it must be built with that many latent channels. ``logvar`` is the constant
``config.logvar`` (default -30, the KL-VAE's clamp minimum: std ~ 3e-7, i.e. a
deterministic posterior); ``scaling_factor`` is 1 because pixels in [-1, 1] already have
unit-order scale.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SpaceToDepthConfig:
    factor: int = 8
    in_channels: int = 3
    logvar: float = -30.0
    scaling_factor: float = 1.0

    def __post_init__(self):
        if self.factor < 1 or self.in_channels < 1:
            raise ValueError(f"SpaceToDepthConfig: factor and in_channels must be >= 1, got {self}")

    @property
    def latent_channels(self) -> int:
        return self.in_channels * self.factor**2

    @property
    def downsample_factor(self) -> int:
        return self.factor


def space_to_depth(x: Array, factor: int) -> Array:
    """(N, H, W, C) -> (N, H/f, W/f, f*f*C), channel order (dy, dx, c)."""
    n, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"space_to_depth: image {h}x{w} is not divisible by factor {factor}")
    x = x.reshape(n, h // factor, factor, w // factor, factor, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)  # (N, H/f, W/f, dy, dx, C)
    return x.reshape(n, h // factor, w // factor, factor * factor * c)


def depth_to_space(z: Array, factor: int) -> Array:
    """(N, h, w, f*f*C) -> (N, h*f, w*f, C); the exact inverse of :func:`space_to_depth`."""
    n, h, w, cz = z.shape
    if cz % (factor * factor):
        raise ValueError(f"depth_to_space: {cz} channels are not divisible by factor**2 = {factor * factor}")
    c = cz // (factor * factor)
    z = z.reshape(n, h, w, factor, factor, c).transpose(0, 1, 3, 2, 4, 5)  # (N, h, dy, w, dx, C)
    return z.reshape(n, h * factor, w * factor, c)


class SpaceToDepthAutoencoder(nnx.Module):
    """Parameter-free stand-in for ``AutoencoderKL`` (see the module docstring)."""

    def __init__(self, config: SpaceToDepthConfig = SpaceToDepthConfig()):
        self.config = config

    @property
    def scaling_factor(self) -> float:
        return self.config.scaling_factor

    def encode(self, x: Array) -> tuple[Array, Array]:
        """(N, H, W, C) -> mean (N, H/f, W/f, C*f*f), logvar (same shape, constant)."""
        if x.ndim != 4 or x.shape[-1] != self.config.in_channels:
            raise ValueError(f"encode expects NHWC images with {self.config.in_channels} channels, got {x.shape}")
        mean = space_to_depth(x, self.config.factor)
        return mean, jnp.full_like(mean, self.config.logvar)

    def decode(self, z: Array) -> Array:
        """(N, h, w, C*f*f) -> (N, h*f, w*f, C)."""
        if z.ndim != 4 or z.shape[-1] != self.config.latent_channels:
            raise ValueError(f"decode expects (N, h, w, {self.config.latent_channels}) latents, got {z.shape}")
        return depth_to_space(z, self.config.factor)
