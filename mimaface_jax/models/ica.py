"""ICA (Inter-clip Affinity learning): the U-Net input and frame masks of a clip with context.

A clip of ``F`` current frames is generated together with the last ``k`` frames of the
previous clip (the context). The motion modules' temporal attention runs over the whole frame
sequence, so the current frames attend to the context frames.

Fixed shapes (one compiled train step for every k): the data holds ``S = k_max + F`` frames
per clip, the ``k_max`` frames before the clip first ("data order"). For a sample with ``k``
context frames the sequence is rolled into "model order"::

    [ctx_{k_max-k} .. ctx_{k_max-1} | cur_0 .. cur_{F-1} | unused context slots (k_max - k)]

so the used context frames take temporal positions ``0..k-1`` and the current frames
``k..k+F-1`` (the sinusoidal positions of the motion modules are the slot indices), exactly as
in a plain ``k + F`` run; the unused slots sit at the end, masked out of the attention (and
of the motion modules' GroupNorm statistics, see ``models/frame_mask.py``) and of the
loss. With ``k = 0`` the current frames therefore see the same computation as an ``F``-frame
run with zero context channels.

U-Net input channels per frame (13): ``[noisy latents (4) | condition-render latents (4) |
context latents (4) | context mask (1)]``. At context positions the noisy channels are zero
(context frames are conditioning only: their outputs are discarded), the context channels
hold the frame's clean latents (+ N(0, std^2) noise in training) and the mask is 1. Current
frames carry zero context channels and mask 0. Unused slots are all zero.

Temporal masks (True = may attend), per sample (B, S, S):
- ``isolated``: context frames attend only to context frames, current frames to all k + F.
- ``full``: all k + F frames attend to each other.
Unused slots attend only to themselves (a row with no valid key would be ill-defined).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
ICAMode = Literal["isolated", "full"]
ICA_MODES = ("isolated", "full")


@dataclasses.dataclass(frozen=True)
class ICAConfig:
    """Inter-clip affinity settings.

    Attributes:
      k_max: context slots per clip (the data carries k_max frames before each clip). 0 turns
        ICA off (image stage, or video without cross-clip context).
      mode: ``"isolated"`` (context frames attend only among themselves) or ``"full"``.
      p_no_context: training probability of k = 0; otherwise k ~ uniform{1..k_max}.
      context_noise_std: std of the Gaussian noise added to the clean context latents in
        training (generation uses the clean latents).
      generation_k: context frames used when generating clip by clip (unused when k_max=0).
    """

    k_max: int = 4
    mode: ICAMode = "isolated"
    p_no_context: float = 0.5
    context_noise_std: float = 0.1
    generation_k: int = 3

    def __post_init__(self):
        if self.mode not in ICA_MODES:
            raise ValueError(f"ICAConfig.mode={self.mode!r}; expected one of {ICA_MODES}")
        if self.k_max < 0:
            raise ValueError(f"ICAConfig.k_max must be >= 0, got {self.k_max}")
        if not 0.0 <= self.p_no_context <= 1.0:
            raise ValueError(f"ICAConfig.p_no_context must be in [0, 1], got {self.p_no_context}")
        if self.k_max > 0 and not 0 <= self.generation_k <= self.k_max:
            raise ValueError(
                f"ICAConfig.generation_k={self.generation_k} must be in [0, k_max={self.k_max}] "
                "(with k_max=0 ICA is off and generation_k is not used)"
            )


class FrameLayout(NamedTuple):
    """Where each of the S = k_max + F slots of a sample goes (all arrays per sample).

    order: (B, S) int32, model slot s holds data frame ``order[b, s]``.
    is_context: (B, S) bool, model slot is a used context frame.
    is_current: (B, S) bool, model slot is a current (generated, supervised) frame.
    temporal_mask: (B, S, S) bool, True = frame i may attend to frame j.
    """

    order: Array
    is_context: Array
    is_current: Array
    temporal_mask: Array


def sample_num_context(rng: Array, batch_size: int, config: ICAConfig) -> Array:
    """Training k per sample: 0 with probability ``p_no_context``, else uniform in 1..k_max. (B,) int32."""
    if config.k_max == 0:
        return jnp.zeros((batch_size,), jnp.int32)
    r_zero, r_k = jax.random.split(rng)
    k = jax.random.randint(r_k, (batch_size,), 1, config.k_max + 1, dtype=jnp.int32)
    no_context = jax.random.bernoulli(r_zero, config.p_no_context, (batch_size,))
    return jnp.where(no_context, 0, k)


def temporal_mask(is_context: Array, is_current: Array, mode: ICAMode) -> Array:
    """(B, S) slot kinds -> (B, S, S) frame mask (True = query i may attend to key j)."""
    if mode not in ICA_MODES:
        raise ValueError(f"ICA mode {mode!r}; expected one of {ICA_MODES}")
    valid = is_context | is_current
    if mode == "full":
        mask = valid[:, :, None] & valid[:, None, :]
    else:
        mask = (is_context[:, :, None] & is_context[:, None, :]) | (is_current[:, :, None] & valid[:, None, :])
    eye = jnp.eye(is_context.shape[1], dtype=bool)[None]
    return mask | (eye & ~valid[:, :, None])  # unused slots: themselves only


def frame_layout(num_context: Array, k_max: int, num_frames: int, mode: ICAMode) -> FrameLayout:
    """The model-order layout of clips with ``num_context`` (B,) context frames out of ``k_max`` slots."""
    num_context = jnp.asarray(num_context, jnp.int32)
    if num_context.ndim != 1:
        raise ValueError(f"num_context must be (B,), got shape {num_context.shape}")
    s = k_max + num_frames
    slot = jnp.arange(s, dtype=jnp.int32)[None]  # (1, S)
    k = num_context[:, None]  # (B, 1)
    order = (slot + k_max - k) % s  # roll left by k_max - k
    is_context = slot < k
    is_current = (slot >= k) & (slot < k + num_frames)
    return FrameLayout(order, is_context, is_current, temporal_mask(is_context, is_current, mode))


def generation_layout(batch_size: int, k: int, num_frames: int, mode: ICAMode) -> FrameLayout:
    """Layout of a generated clip with exactly ``k`` context frames (S = k + F, nothing unused)."""
    return frame_layout(jnp.full((batch_size,), k, jnp.int32), k, num_frames, mode)


def to_model_order(x: Array, layout: FrameLayout) -> Array:
    """(B, S, ...) data order -> model order."""
    idx = layout.order.reshape(layout.order.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


def from_model_order(x: Array, layout: FrameLayout) -> Array:
    """(B, S, ...) model order -> data order (inverse of :func:`to_model_order`)."""
    inverse = jnp.argsort(layout.order, axis=1)
    idx = inverse.reshape(inverse.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


def context_latents(clean: Array, layout: FrameLayout, noise_std: float = 0.0,
                    rng: Array | None = None) -> Array:
    """Context channels: clean latents (+ N(0, std^2)) at context slots, zero elsewhere.

    clean: (B, S, h, w, C) in model order -> (B, S, h, w, C).
    """
    if noise_std > 0:
        if rng is None:
            raise ValueError("context_latents: noise_std > 0 needs an rng")
        clean = clean + noise_std * jax.random.normal(rng, clean.shape, clean.dtype)
    return jnp.where(layout.is_context[:, :, None, None, None], clean, 0)


def unet_input(noisy: Array, cond_latents: Array, ctx_latents: Array, layout: FrameLayout) -> Array:
    """The 13-channel U-Net input, frames folded: (B, S, h, w, 4) x 3 -> (B*S, h, w, 13).

    Noisy channels are zeroed outside current slots, condition renders outside valid slots,
    context latents outside context slots (see the module docstring).
    """
    if not (noisy.shape == cond_latents.shape == ctx_latents.shape):
        raise ValueError(
            f"unet_input: noisy {noisy.shape}, cond_latents {cond_latents.shape} and context latents "
            f"{ctx_latents.shape} must have the same (B, S, h, w, C) shape"
        )
    if noisy.shape[:2] != layout.is_context.shape:
        raise ValueError(f"unet_input: latents {noisy.shape} do not match the layout's (B, S)={layout.is_context.shape}")
    ctx = layout.is_context[:, :, None, None, None]
    cur = layout.is_current[:, :, None, None, None]
    dtype = noisy.dtype
    x = jnp.concatenate(
        [
            jnp.where(cur, noisy, 0),
            jnp.where(ctx | cur, cond_latents.astype(dtype), 0),
            jnp.where(ctx, ctx_latents.astype(dtype), 0),
            jnp.broadcast_to(ctx, noisy.shape[:-1] + (1,)).astype(dtype),
        ],
        axis=-1,
    )
    b, s = x.shape[:2]
    return x.reshape(b * s, *x.shape[2:])

