"""CLIP ViT vision tower (transformers' ``CLIPVisionModel``) in Flax NNX.

The call returns the LAST HIDDEN STATE ``(B, 1 + (S/P)^2, D)`` (ViT-L/14: (B, 257, 1024)),
exactly like HF's ``last_hidden_state``: the encoder output WITHOUT ``post_layernorm``. HF
applies ``post_layernorm`` only to the class token for ``pooler_output``; it is kept here (as
``post_layernorm``) so that the weights and the parameter count match, and ``pooled`` gives
that output.

Input: NHWC pixel values already normalised (see ``clip_preprocess.py``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from mimaface_jax.models.attention import AttentionConfig, attention_from_config
from mimaface_jax.models.layers import Conv2d, LayerNorm, Linear
from mimaface_jax.models.partitioning import logical

Array = jax.Array

# HF activation names -> functions ("gelu" is torch's exact erf GELU).
_ACTIVATIONS = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
    """ViT-L/14 defaults (openai/clip-vit-large-patch14)."""

    image_size: int = 224
    patch_size: int = 14
    num_channels: int = 3
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention: AttentionConfig = AttentionConfig()

    def __post_init__(self):
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"CLIP hidden_act {self.hidden_act!r} is not supported; use one of {sorted(_ACTIVATIONS)}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"CLIP hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )

    @property
    def num_positions(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def _layer_norm(dim: int, eps: float, param_dtype) -> LayerNorm:
    return LayerNorm(dim, eps=eps, param_dtype=param_dtype)


def _linear(d_in: int, d_out: int, axes: tuple[str, str], dtype, param_dtype, rngs: nnx.Rngs) -> Linear:
    return Linear(d_in, d_out, axes=axes, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class CLIPAttention(nnx.Module):
    def __init__(self, config: CLIPVisionConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.attention = config.attention
        self.q_proj = _linear(d, d, ("embed", "heads"), dtype, param_dtype, rngs)
        self.k_proj = _linear(d, d, ("embed", "heads"), dtype, param_dtype, rngs)
        self.v_proj = _linear(d, d, ("embed", "heads"), dtype, param_dtype, rngs)
        self.out_proj = _linear(d, d, ("heads", "embed"), dtype, param_dtype, rngs)

    def __call__(self, x: Array) -> Array:  # (B, L, D) -> (B, L, D)
        b, length, d = x.shape
        split = lambda t: t.reshape(b, length, self.num_heads, d // self.num_heads)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        out = attention_from_config(q, k, v, self.attention)  # (B, L, H, Dh)
        return self.out_proj(out.reshape(b, length, d))


class CLIPMLP(nnx.Module):
    def __init__(self, config: CLIPVisionConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.act = _ACTIVATIONS[config.hidden_act]
        self.fc1 = _linear(config.hidden_size, config.intermediate_size, ("embed", "mlp"), dtype, param_dtype, rngs)
        self.fc2 = _linear(config.intermediate_size, config.hidden_size, ("mlp", "embed"), dtype, param_dtype, rngs)

    def __call__(self, x: Array) -> Array:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nnx.Module):
    """Pre-LN transformer layer: x + attn(LN1(x)), then x + mlp(LN2(x))."""

    def __init__(self, config: CLIPVisionConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        d, eps = config.hidden_size, config.layer_norm_eps
        self.layer_norm1 = _layer_norm(d, eps, param_dtype)
        self.self_attn = CLIPAttention(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.layer_norm2 = _layer_norm(d, eps, param_dtype)
        self.mlp = CLIPMLP(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPVisionEmbeddings(nnx.Module):
    """Patch conv (no bias) + class token + learned positions."""

    def __init__(self, config: CLIPVisionConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        d, p = config.hidden_size, config.patch_size
        self.patch_embedding = Conv2d(
            config.num_channels, d, p, stride=p, padding=0, use_bias=False,
            dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        )
        self.class_embedding = nnx.Param(
            logical(nnx.initializers.normal(1.0), "norm")(rngs.params(), (d,), param_dtype)
        )
        self.position_embedding = nnx.Param(
            logical(nnx.initializers.normal(0.02), "vocab", "embed")(
                rngs.params(), (config.num_positions, d), param_dtype
            )
        )

    def __call__(self, pixel_values: Array) -> Array:  # (B, S, S, C) -> (B, 1 + (S/P)^2, D)
        b, h, w, c = pixel_values.shape
        cfg = self.config
        if (h, w, c) != (cfg.image_size, cfg.image_size, cfg.num_channels):
            raise ValueError(
                f"CLIP vision tower expects NHWC pixels of shape (B, {cfg.image_size}, {cfg.image_size}, "
                f"{cfg.num_channels}), got {pixel_values.shape}; preprocess with clip_preprocess()"
            )
        patches = self.patch_embedding(pixel_values)  # (B, S/P, S/P, D), row-major like HF's flatten
        patches = patches.reshape(b, -1, patches.shape[-1])
        cls = jnp.broadcast_to(self.class_embedding[...].astype(patches.dtype), (b, 1, patches.shape[-1]))
        tokens = jnp.concatenate([cls, patches], axis=1)
        return tokens + self.position_embedding[...].astype(tokens.dtype)[None]


class CLIPVisionModel(nnx.Module):
    """``__call__(pixels) -> last_hidden_state``; ``pooled(last_hidden_state) -> pooler_output``."""

    def __init__(self, config: CLIPVisionConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        d, eps = config.hidden_size, config.layer_norm_eps
        self.embeddings = CLIPVisionEmbeddings(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.pre_layrnorm = _layer_norm(d, eps, param_dtype)  # HF's spelling
        self.layers = nnx.List(
            [
                CLIPEncoderLayer(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                for _ in range(config.num_hidden_layers)
            ]
        )
        self.post_layernorm = _layer_norm(d, eps, param_dtype)

    def __call__(self, pixel_values: Array) -> Array:  # (B, S, S, 3) -> (B, 1 + (S/P)^2, D)
        x = self.pre_layrnorm(self.embeddings(pixel_values))
        for layer in self.layers:
            x = layer(x)
        return x

    def pooled(self, last_hidden_state: Array) -> Array:  # (B, L, D) -> (B, D)
        return self.post_layernorm(last_hidden_state[:, 0])


def clip_vision_apply(graphdef: nnx.GraphDef, state: nnx.State, pixel_values: Array) -> Array:
    """Pure function over ``nnx.split`` state: ``jax.jit(clip_vision_apply, static_argnums=0)``."""
    return nnx.merge(graphdef, state)(pixel_values)
