"""Classifier-free guidance (Ho & Salimans 2022): one batched model call per step.

The unconditional and conditional halves go through the model together (batch 2B, the
unconditional half first, as in diffusers' pipelines) and are combined as
``uncond + scale * (cond - uncond)``; scale 1 is the conditional prediction, 0 the
unconditional one.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

# model_fn(x (2B, ...), t (2B,) or (), conditioning pytree with leading 2B) -> (2B, ...)
ModelFn = Callable[[jax.Array, jax.Array, Any], jax.Array]


def combine_guidance(out_uncond: jax.Array, out_cond: jax.Array, scale) -> jax.Array:
    """uncond + scale * (cond - uncond); all (B, ...), scale a scalar."""
    return out_uncond + scale * (out_cond - out_uncond)


def _stack_conditioning(cond: Any, uncond: Any, batch: int) -> Any:
    """Concatenates [uncond; cond] leaf by leaf along the batch axis."""
    cond_def, uncond_def = jax.tree.structure(cond), jax.tree.structure(uncond)
    if cond_def != uncond_def:
        raise ValueError(
            "cfg: cond and uncond conditioning must have the same pytree structure, got "
            f"{cond_def} and {uncond_def}."
        )

    def stack(path, c, u):
        c, u = jnp.asarray(c), jnp.asarray(u)
        if c.shape != u.shape or c.ndim == 0 or c.shape[0] != batch:
            raise ValueError(
                f"cfg: conditioning leaf {jax.tree_util.keystr(path) or '<root>'} must have the "
                f"same shape in cond and uncond with leading batch {batch}; got cond {c.shape}, "
                f"uncond {u.shape}."
            )
        return jnp.concatenate([u, c], axis=0)

    return jax.tree_util.tree_map_with_path(stack, cond, uncond)


def cfg_denoise(model_fn: ModelFn, x: jax.Array, t: jax.Array, cond: Any, uncond: Any,
                scale) -> jax.Array:
    """Guided model output for x: (B, ...), t: (B,) or scalar; cond/uncond: pytrees of
    arrays with leading batch B (e.g. context (B, L, D)). Calls ``model_fn`` once with 2B."""
    batch = x.shape[0]
    t = jnp.asarray(t)
    x2 = jnp.concatenate([x, x], axis=0)  # (2B, ...)
    t2 = jnp.concatenate([t, t], axis=0) if t.ndim == 1 else t
    out = model_fn(x2, t2, _stack_conditioning(cond, uncond, batch))  # (2B, ...)
    if out.shape[0] != 2 * batch:
        raise ValueError(
            f"cfg: model_fn returned leading size {out.shape[0]} for a doubled batch of {2 * batch}."
        )
    return combine_guidance(out[:batch], out[batch:], scale)


def guided_denoise_fn(model_fn: ModelFn, cond: Any, uncond: Any, scale) -> Callable:
    """A ``denoise_fn(x, t)`` for the samplers that applies CFG around ``model_fn``."""

    def denoise(x, t):
        return cfg_denoise(model_fn, x, t, cond, uncond, scale)

    return denoise
