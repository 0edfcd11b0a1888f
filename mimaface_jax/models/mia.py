"""MIA: Motion-Identity modulated Appearance learning (the U-Net's cross-attention context).

The source portrait's CLIP tokens ``A`` are turned into per-frame context tokens:

1. ``A -> proj_in(A)``: linear from the CLIP width to the context width (768 for SD-1.5).
2. Motion modulation (switch ``motion_modulation``): one motion token per motion group
   (pose / expression / gaze, sizes read from the :class:`MotionLayout`) from a small MLP of
   that group's slice of the frame's motion vector; then, per frame,
   ``A <- A + CrossAttention(query=LN(A), keys/values=LN(motion tokens))``.
3. Identity modulation (switch ``identity_modulation``): ``A <- LN(A) * (1 + gamma(id)) +
   beta(id)`` with ``gamma`` / ``beta`` zero-initialised (the identity starts as a no-op), and
   ``num_identity_tokens`` identity tokens from an MLP of the identity vector.
4. Mapper: a small pre-LN transformer over ``[identity tokens; motion tokens; A]`` followed by a
   LayerNorm gives the context ``(B*F, L, context_dim)`` used by every cross-attention layer.

A switch that is off removes its parameters (and its tokens) from the module. At call time
(inference ablations, ``evaluate --ablate motion_tokens=off`` / ``identity=off``), the static
flags ``use_motion`` / ``use_identity`` cut a path that the module has, keeping its parameters:
the call then computes what a module built with that switch off computes from the shared
parameters (no motion tokens and no motion cross-attention; no identity FiLM, its LayerNorm
included, and no identity tokens), so the context is shorter by those tokens. Training calls
with both on.
``context="clip_mean"`` averages the motion over the clip's frames first, so every frame of a
clip gets the same context (computed once, then repeated).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from mimaface_jax.face.motion_layout import GROUPS, MotionLayout, facemesh_layout
from mimaface_jax.models.attention import AttentionConfig
from mimaface_jax.models.layers import Attention, LayerNorm, Linear, constrain_activation

Array = jax.Array
ContextMode = Literal["per_frame", "clip_mean"]
CONTEXT_MODES = ("per_frame", "clip_mean")


@dataclasses.dataclass(frozen=True)
class MIAConfig:
    """MIA sizes and switches (defaults: CLIP ViT-L/14 tokens -> SD-1.5 context).

    Attributes:
      clip_width: width of the appearance tokens (1024 for ViT-L/14).
      num_clip_tokens: number of appearance tokens (257 for ViT-L/14 at 224 px).
      context_dim: width of the output context (the U-Net's cross-attention dim).
      num_heads: heads of the motion cross-attention and of the mapper.
      motion_layout: names the motion vector's parts; group sizes are read from it.
      motion_hidden: hidden width of each motion-group MLP.
      identity_dim: width of the identity vector (ArcFace: 512).
      identity_hidden: hidden width of the identity-token MLP.
      num_identity_tokens: identity tokens added to the mapper's input.
      mapper_layers: transformer layers of the mapper.
      mapper_mlp_ratio: feed-forward width / context_dim in the mapper.
      motion_modulation / identity_modulation: switches (off = no parameters, no effect).
      context: ``"per_frame"`` (one context per frame) or ``"clip_mean"`` (motion averaged
        over the clip's frames, one context per clip repeated over its frames).
      layer_norm_eps: epsilon of every LayerNorm.
      attention: attention kernel selection.
    """

    clip_width: int = 1024
    num_clip_tokens: int = 257
    context_dim: int = 768
    num_heads: int = 8
    motion_layout: MotionLayout = dataclasses.field(default_factory=facemesh_layout)
    motion_hidden: int = 256
    identity_dim: int = 512
    identity_hidden: int = 768
    num_identity_tokens: int = 4
    mapper_layers: int = 3
    mapper_mlp_ratio: int = 4
    motion_modulation: bool = True
    identity_modulation: bool = True
    context: ContextMode = "per_frame"
    layer_norm_eps: float = 1e-5
    attention: AttentionConfig = AttentionConfig()

    def __post_init__(self):
        if self.context not in CONTEXT_MODES:
            raise ValueError(f"MIAConfig.context={self.context!r}; expected one of {CONTEXT_MODES}")
        if self.context_dim % self.num_heads:
            raise ValueError(
                f"MIAConfig: context_dim={self.context_dim} is not divisible by num_heads={self.num_heads}"
            )
        if self.motion_modulation and not self.motion_groups:
            raise ValueError(
                f"MIAConfig: motion layout {self.motion_layout.version!r} has no field in any of the "
                f"groups {GROUPS}; turn motion_modulation off or use another layout"
            )

    @property
    def motion_groups(self) -> tuple[str, ...]:
        """The motion groups that have at least one entry in the layout (one token each)."""
        sizes = self.motion_layout.group_sizes()
        return tuple(g for g in GROUPS if sizes[g] > 0)

    @property
    def num_motion_tokens(self) -> int:
        return len(self.motion_groups) if self.motion_modulation else 0

    @property
    def num_context_tokens(self) -> int:
        """L of the output context: identity tokens + motion tokens + appearance tokens."""
        return self.context_length()

    def context_length(self, use_motion: bool = True, use_identity: bool = True) -> int:
        """L of a call with the inference flags ``use_motion`` / ``use_identity``."""
        n_id = self.num_identity_tokens if self.identity_modulation and use_identity else 0
        return n_id + (self.num_motion_tokens if use_motion else 0) + self.num_clip_tokens


class MLP(nnx.Module):
    """Linear -> SiLU/GELU -> Linear."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, *, activation=nnx.silu, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.activation = activation
        self.fc1 = Linear(d_in, d_hidden, axes=("embed", "mlp"), **kw)
        self.fc2 = Linear(d_hidden, d_out, axes=("mlp", "embed"), **kw)

    def __call__(self, x: Array) -> Array:
        return self.fc2(self.activation(self.fc1(x)))


class MotionTokens(nnx.Module):
    """One token per motion group from an MLP of the group's slice: (..., D_motion) -> (..., G, C)."""

    def __init__(self, config: MIAConfig, *, dtype, param_dtype, rngs):
        layout = config.motion_layout
        self.groups = config.motion_groups
        # Static numpy index arrays into the motion vector (read from the layout).
        self.indices = {g: tuple(int(i) for i in layout.group_indices(g)) for g in self.groups}
        self.mlps = nnx.Dict(
            {
                g: MLP(len(self.indices[g]), config.motion_hidden, config.context_dim,
                       dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                for g in self.groups
            }
        )

    def __call__(self, motion: Array) -> Array:
        tokens = [self.mlps[g](motion[..., jnp.asarray(self.indices[g])]) for g in self.groups]
        return jnp.stack(tokens, axis=-2)


class IdentityModulation(nnx.Module):
    """``A <- LN(A) * (1 + gamma(id)) + beta(id)`` (zero-init gamma/beta) and identity tokens."""

    def __init__(self, config: MIAConfig, *, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        c = config.context_dim
        self.num_tokens = config.num_identity_tokens
        self.context_dim = c
        self.norm = LayerNorm(c, eps=config.layer_norm_eps, param_dtype=param_dtype)
        self.scale_shift = Linear(
            config.identity_dim, 2 * c, axes=("embed", "mlp"),
            kernel_init=nnx.initializers.zeros_init(), **kw,
        )
        self.token_mlp = MLP(config.identity_dim, config.identity_hidden, self.num_tokens * c, **kw)
        self.token_norm = LayerNorm(c, eps=config.layer_norm_eps, param_dtype=param_dtype)

    def modulate(self, appearance: Array, identity: Array) -> Array:
        # appearance (B, ..., C), identity (B, I): per-sample scale and shift of every token
        gamma, beta = jnp.split(self.scale_shift(identity), 2, axis=-1)  # (B, C) each
        expand = (slice(None),) + (None,) * (appearance.ndim - 2)
        return self.norm(appearance) * (1.0 + gamma[expand]) + beta[expand]

    def tokens(self, identity: Array) -> Array:  # (B, I) -> (B, n_id, C)
        t = self.token_mlp(identity)
        return self.token_norm(t.reshape(*identity.shape[:-1], self.num_tokens, self.context_dim))


class MapperLayer(nnx.Module):
    """Pre-LN transformer layer: x + attn(LN(x)); x + mlp(LN(x))."""

    def __init__(self, config: MIAConfig, *, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        c, eps = config.context_dim, config.layer_norm_eps
        self.norm1 = LayerNorm(c, eps=eps, param_dtype=param_dtype)
        self.attn = Attention(c, heads=config.num_heads, dim_head=c // config.num_heads, bias=True,
                              attention_config=config.attention, **kw)
        self.norm2 = LayerNorm(c, eps=eps, param_dtype=param_dtype)
        self.mlp = MLP(c, config.mapper_mlp_ratio * c, c, activation=nnx.gelu, **kw)

    def __call__(self, x: Array) -> Array:  # (N, L, C)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MIA(nnx.Module):
    """Appearance tokens + motion + identity -> per-frame cross-attention context.

    Call:
      appearance: (B, N, clip_width) CLIP last hidden state of the source image.
      motion: (B, F, D_motion) per-frame motion vectors in ``config.motion_layout``.
      identity: (B, identity_dim) L2-normalised identity vector; required when identity
        modulation is on, ignored when it is off.
      frame_weights: optional (B, F) non-negative weights of the frames in the ``clip_mean``
        average (e.g. 0 at unused ICA context slots); default: all frames equally.
      use_motion / use_identity: static; False cuts the motion / identity path (module
        docstring); the motion / identity input is then not read.
    Returns:
      context (B*F, L, context_dim), frames folded batch-major (index b*F + f) like the U-Net,
      with L = ``config.context_length(use_motion, use_identity)``.
    """

    def __init__(self, config: MIAConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        c, eps = config.context_dim, config.layer_norm_eps
        self.config = config
        self.proj_in = Linear(config.clip_width, c, axes=("embed", "mlp"), **kw)
        if config.motion_modulation:
            self.motion_tokens = MotionTokens(config, **kw)
            self.motion_query_norm = LayerNorm(c, eps=eps, param_dtype=param_dtype)
            self.motion_token_norm = LayerNorm(c, eps=eps, param_dtype=param_dtype)
            self.motion_attn = Attention(c, heads=config.num_heads, dim_head=c // config.num_heads,
                                         bias=True, attention_config=config.attention, **kw)
        else:
            self.motion_tokens = None
        self.identity = IdentityModulation(config, **kw) if config.identity_modulation else None
        self.mapper = nnx.List([MapperLayer(config, **kw) for _ in range(config.mapper_layers)])
        self.norm_out = LayerNorm(c, eps=eps, param_dtype=param_dtype)

    def _check_inputs(self, appearance, motion, identity, frame_weights, use_identity):
        cfg = self.config
        if appearance.ndim != 3 or appearance.shape[-1] != cfg.clip_width:
            raise ValueError(f"MIA: appearance tokens must be (B, N, {cfg.clip_width}), got {appearance.shape}")
        if appearance.shape[1] != cfg.num_clip_tokens:
            raise ValueError(f"MIA: expected {cfg.num_clip_tokens} appearance tokens "
                             f"(MIAConfig.num_clip_tokens), got {appearance.shape}")
        b = appearance.shape[0]
        if motion.ndim != 3 or motion.shape[0] != b or motion.shape[-1] != cfg.motion_layout.size:
            raise ValueError(
                f"MIA: motion must be (B={b}, F, {cfg.motion_layout.size}) in layout "
                f"{cfg.motion_layout.version!r}, got {motion.shape}"
            )
        if cfg.identity_modulation and use_identity:
            if identity is None:
                raise ValueError("MIA: identity modulation is on but no identity vector was given; "
                                 "pass identity (B, identity_dim) or set identity_modulation=False")
            if identity.shape != (b, cfg.identity_dim):
                raise ValueError(f"MIA: identity must be (B={b}, {cfg.identity_dim}), got {identity.shape}")
        if frame_weights is not None and frame_weights.shape != motion.shape[:2]:
            raise ValueError(f"MIA: frame_weights must be (B, F) = {motion.shape[:2]}, got {frame_weights.shape}")

    def __call__(self, appearance: Array, motion: Array, identity: Array | None = None, *,
                 frame_weights: Array | None = None, use_motion: bool = True, use_identity: bool = True) -> Array:
        cfg = self.config
        self._check_inputs(appearance, motion, identity, frame_weights, use_identity)
        b, num_frames = motion.shape[:2]
        if cfg.context == "clip_mean":
            w = jnp.ones(motion.shape[:2], motion.dtype) if frame_weights is None else frame_weights
            w = w.astype(motion.dtype)
            denom = jnp.maximum(jnp.sum(w, axis=1, keepdims=True), 1e-6)
            motion = (jnp.sum(motion * w[..., None], axis=1) / denom)[:, None]  # (B, 1, D)
        f = motion.shape[1]  # frames whose context is computed (1 for clip_mean)

        a = self.proj_in(appearance)  # (B, N, C)
        a = jnp.broadcast_to(a[:, None], (b, f, *a.shape[1:]))  # (B, f, N, C)
        prefix = []
        if self.motion_tokens is not None and use_motion:
            mtok = self.motion_tokens(motion)  # (B, f, G, C)
            q = self.motion_query_norm(a).reshape(b * f, *a.shape[2:])
            kv = self.motion_token_norm(mtok).reshape(b * f, *mtok.shape[2:])
            a = a + self.motion_attn(q, kv).reshape(a.shape)
            prefix.append(mtok)
        if self.identity is not None and use_identity:
            ident = identity.astype(a.dtype)
            a = self.identity.modulate(a, ident)
            idtok = self.identity.tokens(ident)  # (B, n_id, C)
            prefix.insert(0, jnp.broadcast_to(idtok[:, None], (b, f, *idtok.shape[1:])))
        x = jnp.concatenate(prefix + [a], axis=2)  # (B, f, L, C)
        x = x.reshape(b * f, *x.shape[2:])
        x = constrain_activation(x, ("batch", "length", "act_embed"))
        for layer in self.mapper:
            x = layer(x)
        x = self.norm_out(x)  # (B*f, L, C)
        if f != num_frames:  # clip_mean: the same context for every frame of the clip
            x = jnp.repeat(x.reshape(b, 1, *x.shape[1:]), num_frames, axis=1)
            x = x.reshape(b * num_frames, *x.shape[2:])
        return x  # (B*F, L, C)
