"""The one attention entry point of the project.

Every attention layer (spatial self/cross attention, temporal attention, MIA, CLIP) calls
:func:`dot_product_attention` over ``(B, L, heads, head_dim)`` tensors. The kernel is chosen
by :class:`AttentionConfig`:

* ``"xla"``: plain einsum + softmax. Works everywhere; in fp32 it is numerically the same
  computation as ``torch.nn.functional.scaled_dot_product_attention``.
* ``"cudnn"``: ``jax.nn.dot_product_attention(implementation="cudnn")`` (flash attention)
  when running on a GPU *and* both sequence lengths are at least ``min_seq_len``. Shorter
  sequences (temporal attention over a few frames, the MIA tokens) always take the plain
  path, by design: the kernel launch costs more than it saves there.

  Asking for ``"cudnn"`` when the default backend is not a GPU is an error, unless
  ``allow_fallback=True`` is set explicitly, in which case the plain path runs. Nothing falls
  back silently. cuDNN runs only in half precision (bf16 / fp16): fp32 inputs to the kernel
  path are an error (use ``"xla"`` for fp32 runs).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

Implementation = Literal["xla", "cudnn"]
IMPLEMENTATIONS = ("xla", "cudnn")


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """How attention is computed.

    Attributes:
      implementation: ``"xla"`` (plain path, default) or ``"cudnn"`` (GPU flash kernel).
      min_seq_len: sequences (query or key) shorter than this always take the plain path.
      allow_fallback: with ``implementation="cudnn"`` on a non-GPU backend, run the plain
        path instead of raising. Off by default so that a misconfigured run is noticed.
    """

    implementation: Implementation = "xla"
    min_seq_len: int = 256
    allow_fallback: bool = False

    def __post_init__(self):
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"AttentionConfig.implementation={self.implementation!r}; "
                f"expected one of {IMPLEMENTATIONS}"
            )
        if self.min_seq_len < 0:
            raise ValueError(f"AttentionConfig.min_seq_len must be >= 0, got {self.min_seq_len}")


def plain_attention(q, k, v, *, mask=None, scale=None):
    """Softmax attention with einsums. q: (B, Lq, H, D), k/v: (B, Lk, H, D) -> (B, Lq, H, D).

    ``mask`` is boolean, broadcastable to (B, H, Lq, Lk); True means "may attend". The logits
    and the softmax are computed in at least fp32 (bf16 inputs are upcast for the softmax).
    """
    head_dim = q.shape[-1]
    scale = head_dim**-0.5 if scale is None else scale
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32)) * scale
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


def dot_product_attention(
    q,
    k,
    v,
    *,
    mask=None,
    implementation: Implementation = "xla",
    min_seq_len_for_kernel: int = 256,
    allow_fallback: bool = False,
    scale: float | None = None,
):
    """Attention over (B, L, heads, head_dim) tensors; see the module docstring for kernels.

    Args:
      q: (B, Lq, H, D) queries.
      k, v: (B, Lk, H, D) keys and values.
      mask: optional boolean mask broadcastable to (B, H, Lq, Lk); True = may attend.
      implementation: ``"xla"`` or ``"cudnn"``.
      min_seq_len_for_kernel: below this query/key length the plain path is used.
      allow_fallback: see :class:`AttentionConfig`.
      scale: logit scale, default ``head_dim ** -0.5``.
    Returns:
      (B, Lq, H, D).
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation {implementation!r}; expected one of {IMPLEMENTATIONS}")
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"attention expects (B, L, heads, head_dim) tensors, got q{q.shape} k{k.shape} v{v.shape}"
        )
    if implementation == "xla":
        return plain_attention(q, k, v, mask=mask, scale=scale)

    # implementation == "cudnn"
    backend = jax.default_backend()
    if backend != "gpu":
        if not allow_fallback:
            raise RuntimeError(
                f"attention implementation 'cudnn' needs a GPU backend, but jax's default backend "
                f"is {backend!r}. Use implementation='xla', or set allow_fallback=True to run the "
                f"plain path on this backend."
            )
        return plain_attention(q, k, v, mask=mask, scale=scale)
    if min(q.shape[1], k.shape[1]) < min_seq_len_for_kernel:
        return plain_attention(q, k, v, mask=mask, scale=scale)
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        raise TypeError(
            f"the cuDNN attention kernel runs in bf16/fp16, got {q.dtype} inputs (shape {q.shape}). "
            f"Use compute dtype bfloat16, or implementation='xla' for fp32."
        )
    if mask is not None:
        mask = jnp.asarray(mask, dtype=bool)
    return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=scale, implementation="cudnn")


def attention_from_config(q, k, v, config: AttentionConfig, *, mask=None, scale=None):
    """:func:`dot_product_attention` with the settings of ``config``."""
    return dot_product_attention(
        q,
        k,
        v,
        mask=mask,
        implementation=config.implementation,
        min_seq_len_for_kernel=config.min_seq_len,
        allow_fallback=config.allow_fallback,
        scale=scale,
    )
