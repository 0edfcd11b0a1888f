"""Shared 2-D building blocks of the U-Net and the KL-VAE (Flax NNX, NHWC).

Every block acts on ``(N, H, W, C)`` tensors; video models fold frames into ``N`` so that
convolutions, norms and spatial attention act per frame (GroupNorm statistics per frame).
Attribute names follow the diffusers modules they mirror (``norm1``, ``conv1``,
``time_emb_proj``, ``conv_shortcut``, ``to_q`` ...) so importers map keys mechanically.

Parameter names: convolutions and linears have ``kernel`` / ``bias``; norms ``scale`` /
``bias``. Every parameter carries logical axis names (see ``partitioning.py``).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mimaface_jax.models.attention import AttentionConfig, attention_from_config
from mimaface_jax.models.partitioning import logical

Dtype = Any

# torch's default init for Linear / Conv is kaiming-uniform(a=sqrt(5)) == uniform(+-1/sqrt(fan_in))
# == variance_scaling(1/3, fan_in, uniform). Matching it keeps freshly built models at a sane
# scale; pretrained weights replace it anyway.
_torch_default_kernel_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def constrain_activation(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Activation sharding hint with logical axis names (``"batch"``, ``"length"``, ...).

    The single call site for activation constraints of the models in this package:
    ``mimaface_jax.parallel.constrain`` (a no-op outside a mesh). Imported lazily because
    ``parallel`` may import model code.
    """
    from mimaface_jax.parallel import constrain

    return constrain(x, tuple(names))


class Linear(nnx.Linear):
    """``nnx.Linear`` with logical axis names on its parameters.

    Args:
      in_features, out_features: widths.
      axes: logical names of the kernel ``(d_in, d_out)``, e.g. ``("embed", "mlp")``.
      use_bias: add a bias (logical axis ``"norm"``).
      kernel_init: initializer (default: torch's default Linear init).
      dtype / param_dtype: compute / parameter dtypes.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        axes: tuple[str | None, str | None] = ("embed", "mlp"),
        use_bias: bool = True,
        kernel_init=None,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        kernel_init = _torch_default_kernel_init if kernel_init is None else kernel_init
        super().__init__(
            in_features,
            out_features,
            use_bias=use_bias,
            kernel_init=logical(kernel_init, *axes),
            bias_init=logical(nnx.initializers.zeros_init(), "norm"),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )


class Conv2d(nnx.Conv):
    """A 2-D convolution over NHWC with torch-style integer padding.

    Args:
      in_channels, out_channels: channel counts.
      kernel_size: square kernel size.
      stride: stride in both spatial axes.
      padding: int (same on every side, as torch's ``padding=``) or explicit
        ``((top, bottom), (left, right))``.
      use_bias: add a bias.
      kernel_init: initializer (default: torch's default Conv2d init).
      dtype / param_dtype: compute / parameter dtypes.
    Kernel layout ``(kh, kw, c_in, c_out)``, logical axes ``(None, None, "conv_in", "conv_out")``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int | tuple[tuple[int, int], tuple[int, int]] = 1,
        use_bias: bool = True,
        kernel_init=None,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if isinstance(padding, int):
            padding = ((padding, padding), (padding, padding))
        kernel_init = _torch_default_kernel_init if kernel_init is None else kernel_init
        super().__init__(
            in_channels,
            out_channels,
            kernel_size=(kernel_size, kernel_size),
            strides=(stride, stride),
            padding=padding,
            use_bias=use_bias,
            kernel_init=logical(kernel_init, None, None, "conv_in", "conv_out"),
            bias_init=logical(nnx.initializers.zeros_init(), "norm"),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )


class GroupNorm(nnx.Module):
    """Group normalisation with per-sample statistics over every non-batch axis.

    The input is ``(N, ..., C)``; statistics are taken per sample ``N`` and per channel group
    over all other axes, in fp32, two-pass (as torch). Frames folded into ``N`` therefore get
    per-frame statistics; to normalise over a whole clip pass ``(B, F, H, W, C)``.

    Args:
      num_channels: C.
      num_groups: number of groups (must divide C).
      eps: variance epsilon (torch's GroupNorm default is 1e-5; diffusers' transformer blocks
        use 1e-6).
      dtype: output dtype (default: the input's).
    """

    def __init__(
        self,
        num_channels: int,
        num_groups: int = 32,
        *,
        eps: float = 1e-5,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: {num_channels} channels not divisible by {num_groups} groups")
        self.num_channels = num_channels
        self.num_groups = num_groups
        self.eps = eps
        self.dtype = dtype
        key = jax.random.key(0)  # ones / zeros need no randomness
        self.scale = nnx.Param(logical(nnx.initializers.ones_init(), "norm")(key, (num_channels,), param_dtype))
        self.bias = nnx.Param(logical(nnx.initializers.zeros_init(), "norm")(key, (num_channels,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        # x: (N, ..., C)
        if x.shape[-1] != self.num_channels:
            raise ValueError(f"GroupNorm expects {self.num_channels} channels, got input {x.shape}")
        if x.ndim < 2:
            raise ValueError(f"GroupNorm expects (N, ..., C) input, got {x.shape}")
        out_dtype = x.dtype if self.dtype is None else self.dtype
        # The textbook (N, -1, G, C/G) statistics. A per-channel row-sum rewrite (3-5x faster on
        # XLA's CPU backend, BENCHMARKS.md) gave wrong results when the batch is sharded
        # (tests/parallel/test_unet_sharding.py: 0.34 max error); it stays out until that is
        # understood.
        shape = x.shape
        g = self.num_groups
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32)).reshape(shape[0], -1, g, shape[-1] // g)
        mean = jnp.mean(xf, axis=(1, 3), keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=(1, 3), keepdims=True)
        y = ((xf - mean) * jax.lax.rsqrt(var + self.eps)).reshape(shape)
        y = y * self.scale[...].astype(y.dtype) + self.bias[...].astype(y.dtype)
        return y.astype(out_dtype)


class LayerNorm(nnx.Module):
    """Layer normalisation over the last axis, two-pass fp32 statistics (as torch).

    Args:
      num_features: width of the last axis.
      eps: variance epsilon. torch's default is 1e-5 (flax's is 1e-6): pass the reference's.
      dtype: output dtype (default: the input's).
    """

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        self.eps = eps
        self.dtype = dtype
        key = jax.random.key(0)
        self.scale = nnx.Param(logical(nnx.initializers.ones_init(), "norm")(key, (num_features,), param_dtype))
        self.bias = nnx.Param(logical(nnx.initializers.zeros_init(), "norm")(key, (num_features,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        out_dtype = x.dtype if self.dtype is None else self.dtype
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        mean = jnp.mean(xf, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps)
        y = y * self.scale[...].astype(y.dtype) + self.bias[...].astype(y.dtype)
        return y.astype(out_dtype)


class ResnetBlock2D(nnx.Module):
    """diffusers' ``ResnetBlock2D`` (time_embedding_norm "default", SiLU, pre-norm).

    ``h = conv1(silu(norm1(x))) [+ time_emb_proj(silu(temb))]; h = conv2(silu(norm2(h)))``;
    output ``(shortcut(x) + h) / output_scale_factor``. Dropout is not implemented (SD-1.5 and
    its VAE use 0).

    Args:
      in_channels: input channels.
      out_channels: output channels (default: ``in_channels``).
      temb_channels: width of the time embedding; ``None`` for no time input (the VAE).
      groups: GroupNorm groups of ``norm1``; ``groups_out`` those of ``norm2`` (default same).
      eps: GroupNorm epsilon (the U-Net uses ``norm_eps`` 1e-5, the VAE 1e-6).
      use_in_shortcut: 1x1 ``conv_shortcut`` on the residual; default: when in != out.
      conv_shortcut_bias: bias on that 1x1 conv.
      output_scale_factor: divisor of the output (1 in SD-1.5).
    Input (N, H, W, in_channels), temb (N, temb_channels) -> (N, H, W, out_channels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        temb_channels: int | None = None,
        groups: int = 32,
        groups_out: int | None = None,
        eps: float = 1e-6,
        use_in_shortcut: bool | None = None,
        conv_shortcut_bias: bool = True,
        output_scale_factor: float = 1.0,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        out_channels = in_channels if out_channels is None else out_channels
        groups_out = groups if groups_out is None else groups_out
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.output_scale_factor = output_scale_factor
        self.norm1 = GroupNorm(in_channels, groups, eps=eps, param_dtype=param_dtype)
        self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1, **kw)
        self.time_emb_proj = (
            Linear(temb_channels, out_channels, axes=("embed", "conv_out"), **kw)
            if temb_channels is not None
            else None
        )
        self.norm2 = GroupNorm(out_channels, groups_out, eps=eps, param_dtype=param_dtype)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, **kw)
        if use_in_shortcut is None:
            use_in_shortcut = in_channels != out_channels
        self.conv_shortcut = (
            Conv2d(in_channels, out_channels, 1, padding=0, use_bias=conv_shortcut_bias, **kw)
            if use_in_shortcut
            else None
        )

    def __call__(self, x: jax.Array, temb: jax.Array | None = None) -> jax.Array:
        # x: (N, H, W, C_in); temb: (N, T)
        h = self.conv1(nnx.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            if temb is None:
                raise ValueError("ResnetBlock2D was built with temb_channels but called without temb")
            h = h + self.time_emb_proj(nnx.silu(temb))[:, None, None, :]
        h = self.conv2(nnx.silu(self.norm2(h)))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        out = shortcut + h
        if self.output_scale_factor != 1.0:
            out = out / self.output_scale_factor
        return out  # (N, H, W, C_out)


class Downsample2D(nnx.Module):
    """Stride-2 3x3 convolution (diffusers ``Downsample2D(use_conv=True)``).

    Args:
      channels: input channels; ``out_channels`` default the same.
      padding: 1 = symmetric padding of 1 (the U-Net); 0 = pad only bottom/right by 1 (the
        VAE encoder, as diffusers does with ``padding=0``).
    (N, H, W, C) -> (N, ceil(H/2), ceil(W/2), C_out).
    """

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        *,
        padding: int = 1,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        out_channels = channels if out_channels is None else out_channels
        if padding == 0:
            pad = ((0, 1), (0, 1))
        else:
            pad = ((padding, padding), (padding, padding))
        self.conv = Conv2d(
            channels, out_channels, 3, stride=2, padding=pad, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class Upsample2D(nnx.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 convolution (diffusers ``Upsample2D``).

    Args:
      channels: input channels; ``out_channels`` default the same.
    (N, H, W, C) -> (N, 2H, 2W, C_out).
    """

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        *,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        out_channels = channels if out_channels is None else out_channels
        self.conv = Conv2d(channels, out_channels, 3, padding=1, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        # one broadcast instead of two repeats: (N, H, 1, W, 1, C) -> (N, 2H, 2W, C)
        x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c)).reshape(n, 2 * h, 2 * w, c)
        return self.conv(x)


class Attention(nnx.Module):
    """Multi-head attention with q/k/v/out projections (diffusers ``Attention``).

    Args:
      query_dim: width of the queries' input (and of the output).
      cross_attention_dim: width of the context (keys/values input); ``None`` = self-attention.
      heads, dim_head: number of heads and per-head width (inner width = heads * dim_head).
      bias: bias on ``to_q`` / ``to_k`` / ``to_v`` (False in the U-Net, True in the VAE).
      out_bias: bias on ``to_out``.
      norm_num_groups: if set, a ``group_norm`` (GroupNorm, ``norm_eps``) is applied to the
        input first (the VAE's mid-block attention).
      residual_connection: add the input to the output (the VAE).
      rescale_output_factor: divide the output by this.
      attention_config: kernel selection (:class:`AttentionConfig`).

    Call: ``x`` (N, L, query_dim) or (N, H, W, query_dim) (flattened to tokens and restored),
    ``context`` (N, S, cross_attention_dim) or None, ``mask`` boolean broadcastable to
    (N, heads, L, S) with True = may attend. Returns the shape of ``x``.
    """

    def __init__(
        self,
        query_dim: int,
        *,
        cross_attention_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        bias: bool = False,
        out_bias: bool = True,
        norm_num_groups: int | None = None,
        norm_eps: float = 1e-5,
        residual_connection: bool = False,
        rescale_output_factor: float = 1.0,
        attention_config: AttentionConfig = AttentionConfig(),
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        inner = heads * dim_head
        context_dim = query_dim if cross_attention_dim is None else cross_attention_dim
        self.heads = heads
        self.dim_head = dim_head
        self.residual_connection = residual_connection
        self.rescale_output_factor = rescale_output_factor
        self.attention_config = attention_config
        self.group_norm = (
            GroupNorm(query_dim, norm_num_groups, eps=norm_eps, param_dtype=param_dtype)
            if norm_num_groups is not None
            else None
        )
        self.to_q = Linear(query_dim, inner, axes=("embed", "heads"), use_bias=bias, **kw)
        self.to_k = Linear(context_dim, inner, axes=("embed", "heads"), use_bias=bias, **kw)
        self.to_v = Linear(context_dim, inner, axes=("embed", "heads"), use_bias=bias, **kw)
        self.to_out = Linear(inner, query_dim, axes=("heads", "embed"), use_bias=out_bias, **kw)

    def __call__(self, x: jax.Array, context: jax.Array | None = None, *, mask=None) -> jax.Array:
        residual = x
        spatial_shape = None
        if x.ndim == 4:  # (N, H, W, C) -> (N, H*W, C)
            spatial_shape = x.shape
            x = x.reshape(x.shape[0], -1, x.shape[-1])
        if self.group_norm is not None:
            x = self.group_norm(x)
        context = x if context is None else context
        n, length, _ = x.shape
        # the logit scale is applied to the queries (L x D values) rather than to the logits
        # (L x S): on XLA's CPU backend the latter costs a full-size pass (and buffer) over
        # the score matrix in the forward and the backward pass
        q = (self.to_q(x) * self.dim_head**-0.5).reshape(n, length, self.heads, self.dim_head)
        k = self.to_k(context).reshape(n, context.shape[1], self.heads, self.dim_head)
        v = self.to_v(context).reshape(n, context.shape[1], self.heads, self.dim_head)
        out = attention_from_config(q, k, v, self.attention_config, mask=mask, scale=1.0)
        out = self.to_out(out.reshape(n, length, self.heads * self.dim_head))
        if spatial_shape is not None:
            out = out.reshape(spatial_shape)
        if self.residual_connection:
            out = out + residual
        if self.rescale_output_factor != 1.0:
            out = out / self.rescale_output_factor
        return out


class FeedForward(nnx.Module):
    """GEGLU feed-forward (diffusers ``FeedForward(activation_fn="geglu")``).

    ``proj_in``: Linear(dim, 2 * inner) split into (hidden, gate); ``hidden * gelu(gate)``
    (exact erf GELU, as torch's default); ``proj_out``: Linear(inner, dim_out).
    diffusers names them ``ff.net.0.proj`` and ``ff.net.2``.

    Args:
      dim: input width; ``dim_out`` default the same.
      mult: inner width = ``dim * mult`` (4).
    """

    def __init__(
        self,
        dim: int,
        dim_out: int | None = None,
        *,
        mult: int = 4,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        inner = dim * mult
        dim_out = dim if dim_out is None else dim_out
        self.proj_in = Linear(dim, 2 * inner, axes=("embed", "mlp"), **kw)
        self.proj_out = Linear(inner, dim_out, axes=("mlp", "embed"), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden, gate = jnp.split(self.proj_in(x), 2, axis=-1)
        return self.proj_out(hidden * jax.nn.gelu(gate, approximate=False))


class BasicTransformerBlock(nnx.Module):
    """diffusers ``BasicTransformerBlock`` with ``norm_type="layer_norm"``.

    ``x += attn1(norm1(x) [+ pe])``; if ``cross_attention_dim`` or ``double_self_attention``:
    ``x += attn2(norm2(x) [+ pe], context)``; ``x += ff(norm3(x))``.

    Args:
      dim: token width; ``heads`` x ``dim_head`` attention.
      cross_attention_dim: width of the context of ``attn2`` (spatial blocks).
      double_self_attention: ``attn2`` is a second self-attention (temporal blocks).
      attention_bias: bias on q/k/v.
      norm_eps: LayerNorm epsilon (1e-5, torch's default).
    Call: ``x`` (N, L, dim); ``context`` (N, S, cross_attention_dim); ``mask`` boolean
    broadcastable to (N, heads, L, L), applied to the self-attentions; ``pos`` (L, dim) added
    to the normalised input of both attentions (diffusers' ``pos_embed``).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        *,
        cross_attention_dim: int | None = None,
        double_self_attention: bool = False,
        attention_bias: bool = False,
        norm_eps: float = 1e-5,
        attention_config: AttentionConfig = AttentionConfig(),
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        attn_kw = dict(heads=heads, dim_head=dim_head, bias=attention_bias, attention_config=attention_config, **kw)
        self.double_self_attention = double_self_attention
        self.norm1 = LayerNorm(dim, eps=norm_eps, param_dtype=param_dtype)
        self.attn1 = Attention(dim, **attn_kw)
        if cross_attention_dim is not None or double_self_attention:
            self.norm2 = LayerNorm(dim, eps=norm_eps, param_dtype=param_dtype)
            self.attn2 = Attention(
                dim, cross_attention_dim=None if double_self_attention else cross_attention_dim, **attn_kw
            )
        else:
            self.norm2 = None
            self.attn2 = None
        self.norm3 = LayerNorm(dim, eps=norm_eps, param_dtype=param_dtype)
        self.ff = FeedForward(dim, **kw)

    def __call__(self, x, context=None, *, mask=None, pos=None):
        # x: (N, L, dim)
        h = self.norm1(x)
        if pos is not None:
            h = h + pos.astype(h.dtype)
        x = x + self.attn1(h, mask=mask)
        if self.attn2 is not None:
            h = self.norm2(x)
            if pos is not None:
                h = h + pos.astype(h.dtype)
            if self.double_self_attention:
                x = x + self.attn2(h, mask=mask)
            else:
                x = x + self.attn2(h, context)
        return x + self.ff(self.norm3(x))
