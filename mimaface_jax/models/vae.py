"""KL autoencoder (diffusers ``AutoencoderKL``, SD-1.5 / sd-vae-ft-mse layout) in Flax NNX, NHWC.

``encode(x)`` returns the MOMENTS ``(mean, logvar)`` of the diagonal Gaussian posterior
(``logvar`` clamped to [-30, 20] like diffusers' ``DiagonalGaussianDistribution``), so that data
pipelines can cache them; ``sample_latent`` draws from them. ``decode(z)`` maps latents back to
pixels. The caller multiplies latents by ``config.scaling_factor`` (0.18215 for SD-1.5) before
the U-Net and divides before ``decode``.

Shapes: pixels (N, H, W, in_channels) in [-1, 1] <-> latents (N, H/f, W/f, latent_channels) with
f = 2 ** (len(block_out_channels) - 1).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from mimaface_jax.models.attention import AttentionConfig
from mimaface_jax.models.layers import Attention, Conv2d, Downsample2D, GroupNorm, ResnetBlock2D, Upsample2D

Array = jax.Array
Dtype = Any

# diffusers uses eps 1e-6 for every GroupNorm of the VAE.
_VAE_NORM_EPS = 1e-6
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """diffusers ``AutoencoderKL`` config; defaults are SD-1.5's VAE."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True
    attention: AttentionConfig = AttentionConfig()

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


class VAEMidBlock(nnx.Module):
    """resnet -> [single-head self-attention with GroupNorm and residual] -> resnet."""

    def __init__(self, channels: int, config: VAEConfig, *, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        groups = config.norm_num_groups
        self.resnets = nnx.List(
            [ResnetBlock2D(channels, channels, groups=groups, eps=_VAE_NORM_EPS, **kw) for _ in range(2)]
        )
        self.attention = (
            Attention(
                channels,
                heads=1,
                dim_head=channels,
                bias=True,
                norm_num_groups=groups,
                norm_eps=_VAE_NORM_EPS,
                residual_connection=True,
                attention_config=config.attention,
                **kw,
            )
            if config.mid_block_add_attention
            else None
        )

    def __call__(self, x: Array) -> Array:  # (N, H, W, C) -> (N, H, W, C)
        x = self.resnets[0](x)
        if self.attention is not None:
            x = self.attention(x)
        return self.resnets[1](x)


class EncoderBlock(nnx.Module):
    """``DownEncoderBlock2D``: resnets, then (except the last block) a stride-2 conv."""

    def __init__(self, c_in: int, c_out: int, add_downsample: bool, config: VAEConfig, *, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.resnets = nnx.List(
            [
                ResnetBlock2D(c_in if i == 0 else c_out, c_out, groups=config.norm_num_groups, eps=_VAE_NORM_EPS, **kw)
                for i in range(config.layers_per_block)
            ]
        )
        # padding=0: diffusers pads only bottom/right by one before the stride-2 conv.
        self.downsample = Downsample2D(c_out, c_out, padding=0, **kw) if add_downsample else None

    def __call__(self, x: Array) -> Array:
        for resnet in self.resnets:
            x = resnet(x)
        return x if self.downsample is None else self.downsample(x)


class DecoderBlock(nnx.Module):
    """``UpDecoderBlock2D``: layers_per_block + 1 resnets, then (except the last) nearest x2 + conv."""

    def __init__(self, c_in: int, c_out: int, add_upsample: bool, config: VAEConfig, *, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.resnets = nnx.List(
            [
                ResnetBlock2D(c_in if i == 0 else c_out, c_out, groups=config.norm_num_groups, eps=_VAE_NORM_EPS, **kw)
                for i in range(config.layers_per_block + 1)
            ]
        )
        self.upsample = Upsample2D(c_out, c_out, **kw) if add_upsample else None

    def __call__(self, x: Array) -> Array:
        for resnet in self.resnets:
            x = resnet(x)
        return x if self.upsample is None else self.upsample(x)


class Encoder(nnx.Module):
    """pixels (N, H, W, in) -> moments (N, H/f, W/f, 2 * latent)."""

    def __init__(self, config: VAEConfig, *, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        widths = config.block_out_channels
        self.conv_in = Conv2d(config.in_channels, widths[0], 3, padding=1, **kw)
        self.down_blocks = nnx.List(
            [
                EncoderBlock(widths[max(i - 1, 0)], widths[i], i < len(widths) - 1, config, **kw)
                for i in range(len(widths))
            ]
        )
        self.mid_block = VAEMidBlock(widths[-1], config, **kw)
        self.conv_norm_out = GroupNorm(widths[-1], config.norm_num_groups, eps=_VAE_NORM_EPS, param_dtype=param_dtype)
        self.conv_out = Conv2d(widths[-1], 2 * config.latent_channels, 3, padding=1, **kw)

    def __call__(self, x: Array) -> Array:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(nnx.silu(self.conv_norm_out(x)))


class Decoder(nnx.Module):
    """latents (N, h, w, latent) -> pixels (N, h*f, w*f, out)."""

    def __init__(self, config: VAEConfig, *, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        widths = tuple(reversed(config.block_out_channels))
        self.conv_in = Conv2d(config.latent_channels, widths[0], 3, padding=1, **kw)
        self.mid_block = VAEMidBlock(widths[0], config, **kw)
        self.up_blocks = nnx.List(
            [
                DecoderBlock(widths[max(i - 1, 0)], widths[i], i < len(widths) - 1, config, **kw)
                for i in range(len(widths))
            ]
        )
        self.conv_norm_out = GroupNorm(widths[-1], config.norm_num_groups, eps=_VAE_NORM_EPS, param_dtype=param_dtype)
        self.conv_out = Conv2d(widths[-1], config.out_channels, 3, padding=1, **kw)

    def __call__(self, z: Array) -> Array:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(nnx.silu(self.conv_norm_out(x)))


class AutoencoderKL(nnx.Module):
    """The SD KL-VAE. See the module docstring for the interface."""

    def __init__(
        self,
        config: VAEConfig = VAEConfig(),
        *,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.config = config
        latent = config.latent_channels
        self.encoder = Encoder(config, **kw)
        self.decoder = Decoder(config, **kw)
        self.quant_conv = Conv2d(2 * latent, 2 * latent, 1, padding=0, **kw) if config.use_quant_conv else None
        self.post_quant_conv = Conv2d(latent, latent, 1, padding=0, **kw) if config.use_post_quant_conv else None

    @property
    def scaling_factor(self) -> float:
        return self.config.scaling_factor

    def encode(self, x: Array) -> tuple[Array, Array]:
        """(N, H, W, in) -> mean, logvar, each (N, H/f, W/f, latent)."""
        f = self.config.downsample_factor
        if x.ndim != 4 or x.shape[-1] != self.config.in_channels or x.shape[1] % f or x.shape[2] % f:
            raise ValueError(
                f"VAE.encode expects NHWC images (N, H, W, {self.config.in_channels}) with H, W divisible "
                f"by {f}, got {x.shape}"
            )
        moments = self.encoder(x)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z: Array) -> Array:
        """(N, h, w, latent) unscaled latents -> (N, h*f, w*f, out) pixels."""
        if z.ndim != 4 or z.shape[-1] != self.config.latent_channels:
            raise ValueError(f"VAE.decode expects (N, h, w, {self.config.latent_channels}) latents, got {z.shape}")
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)


def sample_latent(mean: Array, logvar: Array, key: Array) -> Array:
    """A draw from N(mean, exp(logvar)) (diffusers' ``latent_dist.sample()``)."""
    return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)


def vae_encode_apply(graphdef: nnx.GraphDef, state: nnx.State, x: Array) -> tuple[Array, Array]:
    """Pure ``encode`` over ``nnx.split`` state: ``jax.jit(vae_encode_apply, static_argnums=0)``."""
    return nnx.merge(graphdef, state).encode(x)


def vae_decode_apply(graphdef: nnx.GraphDef, state: nnx.State, z: Array) -> Array:
    """Pure ``decode`` over ``nnx.split`` state: ``jax.jit(vae_decode_apply, static_argnums=0)``."""
    return nnx.merge(graphdef, state).decode(z)
