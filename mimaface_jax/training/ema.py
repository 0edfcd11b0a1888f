"""Exponential moving average of the trainable parameters (kept in fp32).

With warm-up the decay of update n (0-based, counted from the start of the stage) is
``min(decay, (1 + n) / (10 + n))``: early averages follow the parameters instead of keeping
the initial values for ~1 / (1 - decay) steps (a short stage-2 run with decay 0.99 would
otherwise sample with an EMA that is still ~20% its zero-initialised motion modules).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ema_decay(decay: float, step, warmup: bool):
    """The decay of update ``step`` (a traced int is fine)."""
    d = jnp.float32(decay)
    if not warmup:
        return d
    n = jnp.asarray(step, jnp.float32)
    return jnp.minimum(d, (1.0 + n) / (10.0 + n))


def ema_update(ema: dict, params: dict, decay) -> dict:
    """``ema <- decay * ema + (1 - decay) * params`` leaf by leaf."""
    d = jnp.asarray(decay, jnp.float32)
    return jax.tree.map(lambda e, p: d * e + (1 - d) * p.astype(e.dtype), ema, params)
