"""The fixed-shape frame layout of one generated clip: K context slots + F current slots.

Every clip of a video, the first (no context, or the source as context), the middle ones (the
last K generated frames as context) and a shorter last one (F' < F frames), is run with the
SAME array shapes, so the generation function compiles once. What differs is data: how many of
the K context slots are used (``num_context`` k <= K) and how many of the F current slots are
real (``num_current`` n <= F). Slots that are not used are placed after the used ones and
masked out of the temporal attention and its GroupNorm statistics (``models/ica.py``), so the
used slots see exactly the computation of a plain (k + n)-frame clip: the context frames at
temporal positions 0..k-1 and the current frames at k..k+n-1.

Data order (what the host fills): ``[context slot 0 .. K-1 | current slot 0 .. F-1]`` with the
used context frames in the LAST k context slots (the most recent frames last) and the real
current frames in the FIRST n current slots.
"""

from __future__ import annotations

import jax.numpy as jnp

from mimaface_jax.models import ica


def clip_layout(num_context, num_current, slots_context: int, slots_current: int,
                mode: ica.ICAMode) -> ica.FrameLayout:
    """num_context, num_current: (B,) int32 -> the model-order ``FrameLayout`` of K + F slots.

    Model order: the k used context frames, then the n real current frames, then every unused
    slot (their data order kept)."""
    k = jnp.asarray(num_context, jnp.int32)[:, None]   # (B, 1)
    n = jnp.asarray(num_current, jnp.int32)[:, None]
    big_k, s = slots_context, slots_context + slots_current
    data_index = jnp.arange(s, dtype=jnp.int32)[None]  # (1, S)
    used_context = (data_index < big_k) & (data_index >= big_k - k)
    used_current = (data_index >= big_k) & (data_index < big_k + n)
    group = jnp.where(used_context, 0, jnp.where(used_current, 1, 2))
    order = jnp.argsort(group * s + data_index, axis=1).astype(jnp.int32)  # model slot -> data slot
    slot = data_index
    is_context = slot < k
    is_current = (slot >= k) & (slot < k + n)
    return ica.FrameLayout(order, is_context, is_current, ica.temporal_mask(is_context, is_current, mode))
