"""Timestep and positional embeddings."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mimaface_jax.models.layers import Linear


def timestep_embedding(
    timesteps: jax.Array,
    dim: int,
    *,
    flip_sin_to_cos: bool = False,
    downscale_freq_shift: float = 1.0,
    scale: float = 1.0,
    max_period: float = 10000.0,
) -> jax.Array:
    """Sinusoidal embedding of (possibly fractional) timesteps, as diffusers' ``get_timestep_embedding``.

    Frequencies ``exp(-ln(max_period) * i / (dim/2 - downscale_freq_shift))``, i < dim/2;
    output ``[sin, cos]`` (or ``[cos, sin]`` with ``flip_sin_to_cos``), zero-padded to an odd
    ``dim``. Computed in fp32. timesteps: (N,) -> (N, dim).
    """
    if timesteps.ndim != 1:
        raise ValueError(f"timesteps must be 1-D, got shape {timesteps.shape}")
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - downscale_freq_shift)
    args = timesteps.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :] * scale
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if flip_sin_to_cos:
        emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class TimestepEmbedding(nnx.Module):
    """Two-layer MLP on the sinusoidal embedding: ``linear_2(silu(linear_1(x)))``.

    Args:
      in_channels: width of the sinusoidal embedding; ``time_embed_dim``: output width.
    """

    def __init__(
        self,
        in_channels: int,
        time_embed_dim: int,
        *,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.linear_1 = Linear(in_channels, time_embed_dim, axes=("embed", "mlp"), **kw)
        self.linear_2 = Linear(time_embed_dim, time_embed_dim, axes=("mlp", "embed"), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear_2(nnx.silu(self.linear_1(x)))


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """Transformer positional encoding table (length, dim), float32, numpy (a constant).

    ``pe[p, 2i] = sin(p * w_i)``, ``pe[p, 2i+1] = cos(p * w_i)``,
    ``w_i = exp(-2i * ln(10000) / dim)``: AnimateDiff's ``PositionalEncoding`` and diffusers'
    ``SinusoidalPositionalEmbedding``. It is not learned, so it is not a parameter.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal positions need an even width, got {dim}")
    position = np.arange(length, dtype=np.float32)[:, None]
    div_term = np.exp(np.arange(0, dim, 2, dtype=np.float32) * np.float32(-math.log(10000.0) / dim))
    pe = np.zeros((length, dim), np.float32)
    pe[:, 0::2] = np.sin(position * div_term)
    pe[:, 1::2] = np.cos(position * div_term)
    return pe
