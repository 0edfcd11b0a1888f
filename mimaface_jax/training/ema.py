"""Exponential moving average of the trainable parameters (kept in fp32)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ema_update(ema: dict, params: dict, decay: float) -> dict:
    """``ema <- decay * ema + (1 - decay) * params`` leaf by leaf."""
    d = jnp.float32(decay)
    return jax.tree.map(lambda e, p: d * e + (1 - d) * p.astype(e.dtype), ema, params)
