"""AnimateDiff-v3 motion module: temporal attention over the frames of a clip.

Layout (diffusers ``AnimateDiffTransformer3D``; AnimateDiff's ``TemporalTransformer3DModel``):
GroupNorm over the whole clip (statistics per sample over frames x H x W, eps 1e-6) ->
``proj_in`` (Linear) -> transformer blocks, each: two temporal self-attentions (LayerNorm,
then sinusoidal positional encoding added to the normalised input) and a GEGLU
feed-forward -> ``proj_out`` (Linear, zero-initialised) -> added to the input.

Temporal attention folds H*W into the batch and attends over frames. An optional boolean
frame mask (F, F) or per sample (B, F, F) (True = frame i may attend to frame j) restricts
which frames see which: ICA uses it to keep the previous clip's context frames from
attending to the current clip. With a mask, frame i's GroupNorm statistics also pool only
the frames it may attend to (``frame_masked_group_norm``); frames masked off from each
other then do not influence each other at all. Without a mask the computation is exactly
AnimateDiff's (clip statistics, full attention).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mimaface_jax.models.frame_mask import expand_frame_mask, frame_masked_group_norm
from mimaface_jax.models.attention import AttentionConfig
from mimaface_jax.models.embeddings import sinusoidal_positions
from mimaface_jax.models.layers import BasicTransformerBlock, GroupNorm, Linear, constrain_activation


class MotionModule(nnx.Module):
    """One temporal transformer (diffusers ``AnimateDiffTransformer3D``).

    Args:
      in_channels: C of the feature map.
      num_attention_heads: temporal heads; head width is ``in_channels // heads``.
      num_layers: transformer blocks (1 in AnimateDiff-v3).
      norm_num_groups: GroupNorm groups (diffusers' ``UNetMotionModel`` uses the U-Net's).
      max_seq_length: the longest clip the positional encoding covers (32).
      zero_init_out: initialise ``proj_out`` to zero, so a new module is the identity.
    Call: x (B*F, H, W, C), num_frames F, temporal_mask (F, F) / (B, F, F) bool or None
    -> (B*F, H, W, C).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        num_attention_heads: int = 8,
        num_layers: int = 1,
        norm_num_groups: int = 32,
        max_seq_length: int = 32,
        zero_init_out: bool = True,
        attention_config: AttentionConfig = AttentionConfig(),
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        dim_head = in_channels // num_attention_heads
        inner = num_attention_heads * dim_head
        self.max_seq_length = max_seq_length
        self.inner_dim = inner
        self.norm = GroupNorm(in_channels, norm_num_groups, eps=1e-6, param_dtype=param_dtype)
        self.proj_in = Linear(in_channels, inner, axes=("embed", "mlp"), **kw)
        self.transformer_blocks = nnx.List(
            [
                BasicTransformerBlock(
                    inner,
                    num_attention_heads,
                    dim_head,
                    double_self_attention=True,
                    attention_config=attention_config,
                    **kw,
                )
                for _ in range(num_layers)
            ]
        )
        self.proj_out = Linear(
            inner,
            in_channels,
            axes=("mlp", "embed"),
            kernel_init=nnx.initializers.zeros_init() if zero_init_out else None,
            **kw,
        )

    def __call__(self, x: jax.Array, num_frames: int, temporal_mask: jax.Array | None = None) -> jax.Array:
        n, h, w, c = x.shape  # (B*F, H, W, C)
        if n % num_frames:
            raise ValueError(f"batch*frames {n} is not a multiple of num_frames={num_frames}")
        if num_frames > self.max_seq_length:
            raise ValueError(
                f"num_frames={num_frames} exceeds the motion module's max_seq_length={self.max_seq_length}"
            )
        b = n // num_frames
        # Pin the input to the batch sharding of the U-Net's activations. Without this, with a
        # temporal mask, XLA's sharding propagation carried a spatial (H over fsdp) sharding from
        # the frame-folded reshapes below back into the preceding ResNet block, and the partitioned
        # program was wrong (max error 1.1 on outputs of 1.9, data=2 x fsdp=4 on CPU;
        # tests/parallel/test_unet_mask_sharding.py). No effect outside a mesh.
        x = constrain_activation(x, ("batch", "height", "width", "act_channels"))
        residual = x
        x5 = x.reshape(b, num_frames, h, w, c)
        if temporal_mask is None:
            t = self.norm(x5)  # statistics over the whole clip (AnimateDiff)
            mask = None
        else:
            temporal_mask = jnp.asarray(temporal_mask, dtype=bool)
            if temporal_mask.shape not in ((num_frames, num_frames), (b, num_frames, num_frames)):
                raise ValueError(
                    f"temporal_mask must be (F, F) or (B, F, F) with B={b}, F={num_frames}; "
                    f"got {temporal_mask.shape}"
                )
            # frame i's GroupNorm statistics pool only the frames it may attend to, so that
            # frames masked off from each other do not influence each other at all
            t = frame_masked_group_norm(
                x5, temporal_mask, self.norm.num_groups, self.norm.eps, self.norm.scale[...], self.norm.bias[...]
            )
            mask = expand_frame_mask(temporal_mask, b, h * w)  # (1 or B*H*W, 1, F, F)
        t = t.transpose(0, 2, 3, 1, 4).reshape(b * h * w, num_frames, c)  # (B*H*W, F, C)
        t = constrain_activation(t, ("batch", "length", "act_embed"))
        t = self.proj_in(t)
        pos = jnp.asarray(sinusoidal_positions(num_frames, self.inner_dim))
        for block in self.transformer_blocks:
            t = block(t, mask=mask, pos=pos)
        t = self.proj_out(t)
        t = t.reshape(b, h, w, num_frames, c).transpose(0, 3, 1, 2, 4).reshape(n, h, w, c)
        return t + residual
