"""The 3-D (video) U-Net: SD-1.5 inflated with AnimateDiff-v3 motion modules (Flax NNX).

Frames are folded into the batch: every 2-D layer acts per frame, the motion modules unfold
``(B*F, H, W, C)`` to attend over frames. The module tree mirrors diffusers'
``UNetMotionModel`` (``down_blocks[i].resnets[j]``, ``.attentions[j]``, ``.motion_modules[j]``,
``.downsamplers[0]``, ``mid_block``, ``up_blocks`` ...) so the importer maps keys directly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mimaface_jax.models.attention import AttentionConfig
from mimaface_jax.models.embeddings import TimestepEmbedding, timestep_embedding
from mimaface_jax.models.layers import (
    BasicTransformerBlock,
    Conv2d,
    Downsample2D,
    GroupNorm,
    Linear,
    ResnetBlock2D,
    Upsample2D,
    constrain_activation,
)
from mimaface_jax.models.motion_module import MotionModule
from mimaface_jax.models.remat_in_order import remat_in_order
from mimaface_jax.models.unet_config import CROSS_ATTN_DOWN, CROSS_ATTN_UP, UNetConfig

_ACT = ("batch", "height", "width", "act_channels")  # logical names of (N, H, W, C) activations


def _remat_policy(name: str):
    if name == "full":
        return None
    policy = getattr(jax.checkpoint_policies, name, None)
    if policy is None:
        raise ValueError(f"unknown remat policy {name!r}")
    return policy


def _checkpointed(fn, policy: str):
    """``fn(module, *arrays)`` under ``nnx.remat`` with the named policy ("none": ``fn`` itself)."""
    if policy == "none":
        return fn
    return nnx.remat(fn, policy=_remat_policy(policy), prevent_cse=True)


def _layer_checkpointed(fn, policy: str):
    """``_checkpointed`` for one layer inside a block: the "full" policy recomputes the layer
    only once its output's gradient exists (``remat_in_order``), so that the recomputations of
    a block's layers are not all live at once."""
    return remat_in_order(fn) if policy == "full" else _checkpointed(fn, policy)


def _layer_remat(config: UNetConfig) -> str:
    """The remat policy of each layer inside a block: the config's under ``remat_scope="layer"``."""
    return config.remat_policy if config.remat_scope == "layer" else "none"


def _call_resnet(m, x, temb):
    return m(x, temb)


def _call_transformer(m, x, context):
    return m(x, context)


class Transformer2D(nnx.Module):
    """Spatial transformer (diffusers ``Transformer2DModel`` over continuous input).

    GroupNorm (eps 1e-6) -> ``proj_in`` (1x1 conv, or Linear with ``use_linear_projection``)
    -> BasicTransformerBlocks (self-attn, cross-attn, GEGLU FF) -> ``proj_out`` -> + input.
    Call: x (N, H, W, C), context (N, S, D) -> (N, H, W, C).
    """

    def __init__(
        self,
        in_channels: int,
        heads: int,
        *,
        cross_attention_dim: int,
        norm_num_groups: int = 32,
        num_layers: int = 1,
        use_linear_projection: bool = False,
        attention_config: AttentionConfig = AttentionConfig(),
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        dim_head = in_channels // heads
        inner = heads * dim_head
        self.use_linear_projection = use_linear_projection
        self.norm = GroupNorm(in_channels, norm_num_groups, eps=1e-6, param_dtype=param_dtype)
        if use_linear_projection:
            self.proj_in = Linear(in_channels, inner, axes=("embed", "mlp"), **kw)
            self.proj_out = Linear(inner, in_channels, axes=("mlp", "embed"), **kw)
        else:
            self.proj_in = Conv2d(in_channels, inner, 1, padding=0, **kw)
            self.proj_out = Conv2d(inner, in_channels, 1, padding=0, **kw)
        self.transformer_blocks = nnx.List(
            [
                BasicTransformerBlock(
                    inner,
                    heads,
                    dim_head,
                    cross_attention_dim=cross_attention_dim,
                    attention_config=attention_config,
                    **kw,
                )
                for _ in range(num_layers)
            ]
        )

    def __call__(self, x, context):
        n, h, w, c = x.shape
        residual = x
        t = self.norm(x)
        t = self.proj_in(t)  # 1x1 conv and linear are the same map in NHWC
        t = t.reshape(n, h * w, t.shape[-1])  # (N, H*W, inner)
        t = constrain_activation(t, ("batch", "length", "act_embed"))
        for block in self.transformer_blocks:
            t = block(t, context)
        t = self.proj_out(t.reshape(n, h, w, t.shape[-1]))
        return t + residual


def _transformers(channels: int, heads: int, n: int, config: UNetConfig, kw) -> nnx.List:
    """``n`` spatial transformer blocks (self + cross attention) of one U-Net block."""
    return nnx.List(
        [
            Transformer2D(
                channels,
                heads,
                cross_attention_dim=config.cross_attention_dim,
                norm_num_groups=config.norm_num_groups,
                num_layers=config.transformer_layers_per_block,
                use_linear_projection=config.use_linear_projection,
                attention_config=config.attention,
                **kw,
            )
            for _ in range(n)
        ]
    )


def _motion_modules(channels: int, heads: int, n: int, config: UNetConfig, kw) -> nnx.List:
    """``n`` AnimateDiff motion modules of one U-Net block."""
    return nnx.List(
        [
            MotionModule(
                channels,
                num_attention_heads=heads,
                num_layers=config.motion_transformer_layers,
                norm_num_groups=config.motion_norm_num_groups,
                max_seq_length=config.motion_max_seq_length,
                attention_config=config.attention,
                **kw,
            )
            for _ in range(n)
        ]
    )


class _BlockBase(nnx.Module):
    """Shared construction of the resnet / attention / motion triples of a U-Net block."""

    def _build_layers(
        self,
        in_channels_per_layer,
        out_channels: int,
        *,
        temb_channels: int,
        cross_attention: bool,
        heads: int,
        motion_heads: int,
        config: UNetConfig,
        kw,
    ):
        self.resnets = nnx.List(
            [
                ResnetBlock2D(
                    c_in,
                    out_channels,
                    temb_channels=temb_channels,
                    groups=config.norm_num_groups,
                    eps=config.norm_eps,
                    **kw,
                )
                for c_in in in_channels_per_layer
            ]
        )
        n = len(in_channels_per_layer)
        self.attentions = _transformers(out_channels, heads, n, config, kw) if cross_attention else None
        self.motion_modules = (
            _motion_modules(out_channels, motion_heads, n, config, kw) if config.use_motion_module else None
        )
        self.layer_remat = _layer_remat(config)

    def _layer(self, i, x, temb, context, num_frames, temporal_mask):
        def motion(m, x, mask):
            return m(x, num_frames, mask)

        x = _layer_checkpointed(_call_resnet, self.layer_remat)(self.resnets[i], x, temb)
        if self.attentions is not None:
            x = _layer_checkpointed(_call_transformer, self.layer_remat)(self.attentions[i], x, context)
        if self.motion_modules is not None:
            x = _layer_checkpointed(motion, self.layer_remat)(self.motion_modules[i], x, temporal_mask)
        return constrain_activation(x, _ACT)


class DownBlock(_BlockBase):
    """A down block: (resnet [-> attention] [-> motion module]) x layers [-> downsampler].

    Call returns the new hidden state and the skip tensors (one per layer, plus the
    downsampled output).
    """

    def __init__(self, in_channels, out_channels, *, temb_channels, cross_attention, add_downsample,
                 heads, motion_heads, config: UNetConfig, kw):
        self._build_layers(
            [in_channels] + [out_channels] * (config.layers_per_block - 1),
            out_channels,
            temb_channels=temb_channels,
            cross_attention=cross_attention,
            heads=heads,
            motion_heads=motion_heads,
            config=config,
            kw=kw,
        )
        self.downsamplers = (
            nnx.List([Downsample2D(out_channels, padding=config.downsample_padding, **kw)])
            if add_downsample
            else None
        )

    def __call__(self, x, temb, context, temporal_mask, *, num_frames):
        skips = []
        for i in range(len(self.resnets)):
            x = self._layer(i, x, temb, context, num_frames, temporal_mask)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, tuple(skips)


class UpBlock(_BlockBase):
    """An up block: (concat skip -> resnet [-> attention] [-> motion module]) x layers [-> upsampler]."""

    def __init__(self, in_channels, prev_output_channels, out_channels, *, temb_channels, cross_attention,
                 add_upsample, heads, motion_heads, config: UNetConfig, kw):
        n = config.layers_per_block + 1
        ins = []
        for i in range(n):
            skip = in_channels if i == n - 1 else out_channels
            ins.append((prev_output_channels if i == 0 else out_channels) + skip)
        self._build_layers(
            ins,
            out_channels,
            temb_channels=temb_channels,
            cross_attention=cross_attention,
            heads=heads,
            motion_heads=motion_heads,
            config=config,
            kw=kw,
        )
        self.upsamplers = nnx.List([Upsample2D(out_channels, **kw)]) if add_upsample else None

    def __call__(self, x, skips, temb, context, temporal_mask, *, num_frames):
        skips = list(skips)
        for i in range(len(self.resnets)):
            x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = self._layer(i, x, temb, context, num_frames, temporal_mask)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class MidBlock(nnx.Module):
    """resnet -> (attention [-> motion module] -> resnet) x mid_block_layers."""

    def __init__(self, channels, *, temb_channels, heads, motion_heads, config: UNetConfig, kw):
        n = config.mid_block_layers
        self.resnets = nnx.List(
            [
                ResnetBlock2D(
                    channels,
                    channels,
                    temb_channels=temb_channels,
                    groups=config.norm_num_groups,
                    eps=config.norm_eps,
                    output_scale_factor=config.mid_block_scale_factor,
                    **kw,
                )
                for _ in range(n + 1)
            ]
        )
        self.attentions = _transformers(channels, heads, n, config, kw)
        self.motion_modules = (
            _motion_modules(channels, motion_heads, n, config, kw)
            if config.use_motion_module and config.use_motion_mid_block
            else None
        )
        self.layer_remat = _layer_remat(config)

    def __call__(self, x, temb, context, temporal_mask, *, num_frames):
        def motion(m, x, mask):
            return m(x, num_frames, mask)

        resnet = _layer_checkpointed(_call_resnet, self.layer_remat)
        x = resnet(self.resnets[0], x, temb)
        for i in range(len(self.attentions)):
            x = _layer_checkpointed(_call_transformer, self.layer_remat)(self.attentions[i], x, context)
            if self.motion_modules is not None:
                x = _layer_checkpointed(motion, self.layer_remat)(self.motion_modules[i], x, temporal_mask)
            x = resnet(self.resnets[i + 1], x, temb)
        return constrain_activation(x, _ACT)


class UNet3D(nnx.Module):
    """The video U-Net.

    Call: ``unet(sample, timesteps, context, *, num_frames, temporal_mask=None)``
      sample: (B*F, H, W, in_channels) NHWC, frames of a clip consecutive;
      timesteps: (B,) (one per clip) or (B*F,) (one per frame), int or float;
      context: (B*F, L, cross_attention_dim), the cross-attention tokens of each frame;
      num_frames: F (static);
      temporal_mask: optional (F, F) or per-clip (B, F, F) bool, True = frame i may attend to
        frame j, used by every motion module (temporal attention and its GroupNorm
        statistics; ICA context isolation). 2-D layers act per frame, so frames masked off
        from each other do not influence each other anywhere in the U-Net.
    Returns (B*F, H, W, out_channels).
    """

    def __init__(self, config: UNetConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        c = config
        boc = c.block_out_channels
        temb_channels = boc[0] * 4
        heads = c.heads_per_block()
        motion_heads = c.motion_heads_per_block()

        self.conv_in = Conv2d(c.in_channels, boc[0], 3, padding=1, **kw)
        self.time_embedding = TimestepEmbedding(boc[0], temb_channels, **kw)

        down = []
        out_ch = boc[0]
        for i, block_type in enumerate(c.down_block_types):
            in_ch, out_ch = out_ch, boc[i]
            down.append(
                DownBlock(
                    in_ch,
                    out_ch,
                    temb_channels=temb_channels,
                    cross_attention=block_type == CROSS_ATTN_DOWN,
                    add_downsample=i < len(boc) - 1,
                    heads=heads[i],
                    motion_heads=motion_heads[i],
                    config=c,
                    kw=kw,
                )
            )
        self.down_blocks = nnx.List(down)

        self.mid_block = MidBlock(
            boc[-1], temb_channels=temb_channels, heads=heads[-1], motion_heads=motion_heads[-1], config=c, kw=kw
        )

        up = []
        rev = list(reversed(boc))
        rev_heads = list(reversed(heads))
        rev_motion_heads = list(reversed(motion_heads))
        out_ch = rev[0]
        for i, block_type in enumerate(c.up_block_types):
            prev_out, out_ch = out_ch, rev[i]
            in_ch = rev[min(i + 1, len(boc) - 1)]
            up.append(
                UpBlock(
                    in_ch,
                    prev_out,
                    out_ch,
                    temb_channels=temb_channels,
                    cross_attention=block_type == CROSS_ATTN_UP,
                    add_upsample=i < len(boc) - 1,
                    heads=rev_heads[i],
                    motion_heads=rev_motion_heads[i],
                    config=c,
                    kw=kw,
                )
            )
        self.up_blocks = nnx.List(up)

        self.conv_norm_out = GroupNorm(boc[0], c.norm_num_groups, eps=c.norm_eps, param_dtype=param_dtype)
        self.conv_out = Conv2d(boc[0], c.out_channels, 3, padding=1, **kw)

    def _run(self, block, *args, num_frames):
        """Calls a block, under ``nnx.remat`` when gradient checkpointing is on at block scope
        (at layer scope the block checkpoints its own layers)."""
        name = self.config.remat_policy if self.config.remat_scope == "block" else "none"

        def call(b, *a):
            return b(*a, num_frames=num_frames)

        return _checkpointed(call, name)(block, *args)

    def __call__(self, sample, timesteps, context, *, num_frames: int, temporal_mask=None):
        n, h, w, c_in = sample.shape  # (B*F, H, W, C_in)
        cfg = self.config
        if c_in != cfg.in_channels:
            raise ValueError(f"U-Net expects {cfg.in_channels} input channels, got sample {sample.shape}")
        if n % num_frames:
            raise ValueError(f"sample batch {n} is not a multiple of num_frames={num_frames}")
        factor = 2 ** (len(cfg.block_out_channels) - 1)
        if h % factor or w % factor:
            raise ValueError(f"sample height/width {h}x{w} must be multiples of {factor}")
        if context.ndim != 3 or context.shape[0] != n:
            raise ValueError(f"context must be (B*F={n}, L, {cfg.cross_attention_dim}), got {context.shape}")

        timesteps = jnp.asarray(timesteps)
        if timesteps.ndim == 0:
            timesteps = jnp.broadcast_to(timesteps, (n,))
        elif timesteps.shape == (n // num_frames,):
            timesteps = jnp.repeat(timesteps, num_frames)  # one per clip -> one per frame
        elif timesteps.shape != (n,):
            raise ValueError(f"timesteps must be (B,)=({n // num_frames},) or (B*F,)=({n},), got {timesteps.shape}")

        t_emb = timestep_embedding(
            timesteps,
            cfg.block_out_channels[0],
            flip_sin_to_cos=cfg.flip_sin_to_cos,
            downscale_freq_shift=cfg.freq_shift,
        )
        temb = self.time_embedding(t_emb.astype(self.conv_in.dtype))  # (B*F, 4*C0)

        x = self.conv_in(sample)
        x = constrain_activation(x, _ACT)
        skips = [x]
        for block in self.down_blocks:
            x, res = self._run(block, x, temb, context, temporal_mask, num_frames=num_frames)
            skips.extend(res)

        x = self._run(self.mid_block, x, temb, context, temporal_mask, num_frames=num_frames)

        for block in self.up_blocks:
            k = len(block.resnets)
            res, skips = tuple(skips[-k:]), skips[:-k]
            x = self._run(block, x, res, temb, context, temporal_mask, num_frames=num_frames)

        x = nnx.silu(self.conv_norm_out(x))
        return self.conv_out(x)  # (B*F, H, W, out_channels)
