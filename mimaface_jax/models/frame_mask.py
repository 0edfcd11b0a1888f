"""Frame masks for the temporal layers of the motion modules.

A boolean frame mask (F, F) or (B, F, F) (True = frame i may attend to frame j) restricts
both the temporal attention and the GroupNorm statistics of a motion module, so that frames
masked off from each other cannot influence one another through either. ICA's cross-clip
attention (``models/ica.py``) builds these masks; the motion module applies them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def frame_masked_group_norm(x: Array, frame_mask: Array | None, num_groups: int, eps: float,
                            scale: Array, bias: Array) -> Array:
    """GroupNorm of a clip where frame i's statistics pool only the frames it may attend to.

    x: (B, F, H, W, C); frame_mask: (F, F) or (B, F, F) bool (``None`` = all frames, the
    plain clip GroupNorm of AnimateDiff's motion modules). Statistics are per sample, per
    group, over ``{j : mask[i, j]} x H x W x (C / groups)`` in fp32: per-frame means and
    centred sums of squares (two-pass) are combined with Chan's parallel formula, so the
    result matches a two-pass GroupNorm over the selected frames. With the ICA masks, context
    frames in ``isolated`` mode are normalised by context statistics only, and unused slots
    never enter any other frame's statistics.
    """
    b, f, h, w, c = x.shape
    g = num_groups
    if c % g:
        raise ValueError(f"frame_masked_group_norm: {c} channels not divisible by {g} groups")
    # frames as rows of channels: per-channel reductions keep the minor axis and no kept axis is
    # a unit one (XLA's CPU backend runs such reductions far slower; BENCHMARKS.md)
    rows = x.astype(jnp.promote_types(x.dtype, jnp.float32)).reshape(b * f, h * w, c)  # (B*F, HW, C)
    n = h * w * (c // g)

    def per_group(channel_sums):  # (B*F, C) -> (B, F, G)
        return channel_sums.reshape(b, f, g, c // g).sum(axis=-1)

    def to_rows(stat):  # (B, F, G) -> (B*F, 1, C)
        return jnp.repeat(stat, c // g, axis=-1).reshape(b * f, 1, c)

    mu = per_group(rows.sum(axis=1)) / n  # (B, F, G)
    m2 = per_group(jnp.square(rows - to_rows(mu)).sum(axis=1))  # (B, F, G)
    if frame_mask is None:
        weights = jnp.ones((1, f, f), rows.dtype)
    else:
        frame_mask = jnp.asarray(frame_mask, bool)
        if frame_mask.ndim == 2:
            frame_mask = frame_mask[None]
        if frame_mask.shape[1:] != (f, f) or frame_mask.shape[0] not in (1, b):
            raise ValueError(f"frame mask must be (F, F) or (B, F, F) with F={f}, B={b}; got {frame_mask.shape}")
        weights = frame_mask.astype(rows.dtype)
    count = jnp.sum(weights, axis=-1)[..., None]  # (B, F, 1) frames pooled by frame i
    mean = jnp.einsum("bij,bjg->big", weights, mu) / count  # (B, F, G)
    # sum_j w_ij [m2_j + n (mu_j - mean_i)^2]
    spread = jnp.square(mu[:, None, :, :] - mean[:, :, None, :])  # (B, Fi, Fj, G)
    total = jnp.einsum("bij,bjg->big", weights, m2) + n * jnp.einsum("bij,bijg->big", weights, spread)
    var = total / (count * n)
    factor = to_rows(jax.lax.rsqrt(var + eps)) * scale.astype(rows.dtype)  # (B*F, 1, C)
    y = (rows - to_rows(mean)) * factor + bias.astype(rows.dtype)
    return y.reshape(b, f, h, w, c).astype(x.dtype)


def expand_frame_mask(frame_mask: Array, batch: int, tokens: int) -> Array:
    """A (F, F) or (B, F, F) frame mask as an attention mask for the temporal attention's
    folded batch (B*tokens, heads, F, F): (1, 1, F, F) or (B*tokens, 1, F, F)."""
    frame_mask = jnp.asarray(frame_mask, bool)
    if frame_mask.ndim == 2:
        return frame_mask[None, None]
    f = frame_mask.shape[-1]
    if frame_mask.shape != (batch, f, f):
        raise ValueError(f"per-sample frame mask must be (B={batch}, F, F), got {frame_mask.shape}")
    m = jnp.broadcast_to(frame_mask[:, None], (batch, tokens, f, f))
    return m.reshape(batch * tokens, 1, f, f)
