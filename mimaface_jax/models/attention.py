"""The one attention entry point of the project.

Every attention layer (spatial self/cross attention, temporal attention, MIA, CLIP) calls
:func:`dot_product_attention` over ``(B, L, heads, head_dim)`` tensors. The kernel is chosen
by :class:`AttentionConfig`:

* ``"xla"``: plain einsum + softmax. Works everywhere; in fp32 it is numerically the same
  computation as ``torch.nn.functional.scaled_dot_product_attention``. Materialises the
  (B, H, Lq, Lk) scores: at SD-1.5's 64x64 latents that is 8 x 4096^2 per frame and layer.
* ``"chunked"``: memory-efficient attention in pure JAX (``attention_chunked.py``): query x
  key/value chunks with an online softmax, score tiles recomputed in the backward pass.
  Memory grows with ``chunk_q * chunk_kv``; runs on every backend; boolean masks supported.
* ``"splash"``: TPU Pallas splash attention (``attention_splash.py``), block sizes from the
  config, non-block-multiple lengths padded and the padding masked. TPU only (or Pallas
  interpret mode, ``splash_interpret=True``, for tests); no masks beyond the padding.
* ``"cudnn"``: ``jax.nn.dot_product_attention(implementation="cudnn")``; GPU, bf16 / fp16.
* ``"auto"``: splash on TPU, cuDNN on GPU in half precision, chunked everywhere else
  (:func:`resolve_implementation`; the training program logs the choice once at start).

Every kernel path applies only when both sequence lengths are at least ``min_seq_len``:
shorter sequences (temporal attention over ~20 frames, the MIA tokens) always take the plain
path, by design -- a kernel or a chunk loop costs more than it saves there.

Asking for ``"cudnn"`` / ``"splash"`` on a backend that cannot run them is an error, unless
``allow_fallback=True`` is set explicitly, in which case the plain path runs. Nothing falls
back silently. cuDNN runs only in half precision: fp32 inputs to it are an error.

Design notes (numbers in BENCHMARKS.md, "SD-1.5 train step"):

* ``chunked`` keeps the plain path's numerics (fp32 logits, ``finfo.min`` for masked logits)
  and costs one extra ``q k^T`` matmul per tile in the backward pass (5 attention matmuls
  instead of 4). Default chunks 1024 x 1024: one fp32 score tile per (frame, head) is 4 MiB.
* ``chunked`` under full remat: the plain path's attention costs 8 matmul passes per tile
  (forward 2, recomputed forward 2, backward 4), ``chunked`` 9 (its backward recomputes
  ``q k^T`` once more): +1.1 % of the SD-1.5 stage-2 step's matmul FLOPs (BENCHMARKS.md).
* Cross-attention (4096 / 1024 / 256 / 64 queries x 264 context tokens) and CLIP's 257-token
  self-attention: ``min_seq_len`` (default 256) compares against the SHORTER of the two
  lengths, so they take the kernel path too. Decided by measurement (XLA CPU buffer
  assignment of one layer's forward + backward, bf16, 20 frames x 8 heads): 4096 x 264 needs
  2853 MiB plain vs 758 MiB chunked, 1024 x 264 786 vs 551 MiB, 256 x 264 267 vs 178 MiB, for
  one extra matmul in the backward. Temporal attention (~20 frames) and the MIA tokens stay
  plain.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from mimaface_jax.models.attention_chunked import chunked_attention
from mimaface_jax.models.attention_splash import splash_attention

Implementation = Literal["xla", "chunked", "splash", "cudnn", "auto"]
IMPLEMENTATIONS = ("xla", "chunked", "splash", "cudnn", "auto")
HALF_DTYPES = (jnp.bfloat16, jnp.float16)


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """How attention is computed.

    Attributes:
      implementation: ``"xla"`` (plain path, default), ``"chunked"``, ``"splash"``,
        ``"cudnn"`` or ``"auto"`` (see the module docstring).
      min_seq_len: when the query or the key sequence is shorter than this, the plain path runs.
      allow_fallback: with ``"cudnn"`` / ``"splash"`` on a backend that cannot run them, run
        the plain path instead of raising. Off by default so that a misconfigured run is noticed.
      chunk_q, chunk_kv: tile sizes of ``"chunked"``.
      splash_block_q, splash_block_kv, splash_block_kv_compute: block sizes of ``"splash"``
        (multiples of 128; ``block_kv_compute`` divides ``block_kv``).
      splash_interpret: run splash in Pallas interpret mode on any backend (tests only; slow).
    """

    implementation: Implementation = "xla"
    min_seq_len: int = 256
    allow_fallback: bool = False
    chunk_q: int = 1024
    chunk_kv: int = 1024
    splash_block_q: int = 512
    splash_block_kv: int = 1024
    splash_block_kv_compute: int = 512
    splash_interpret: bool = False

    def __post_init__(self):
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"AttentionConfig.implementation={self.implementation!r}; "
                f"expected one of {IMPLEMENTATIONS}"
            )
        if self.min_seq_len < 0:
            raise ValueError(f"AttentionConfig.min_seq_len must be >= 0, got {self.min_seq_len}")
        for name in ("chunk_q", "chunk_kv"):
            if getattr(self, name) < 1:
                raise ValueError(f"AttentionConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("splash_block_q", "splash_block_kv", "splash_block_kv_compute"):
            value = getattr(self, name)
            if value < 128 or value % 128:
                raise ValueError(f"AttentionConfig.{name} must be a positive multiple of 128, got {value}")
        if self.splash_block_kv % self.splash_block_kv_compute:
            raise ValueError(
                f"AttentionConfig.splash_block_kv={self.splash_block_kv} must be a multiple of "
                f"splash_block_kv_compute={self.splash_block_kv_compute}"
            )


def resolve_implementation(implementation: str, backend: str, dtype) -> str:
    """The concrete kernel ``"auto"`` means on ``backend`` ("cpu" / "gpu" / "tpu") for inputs of
    ``dtype``; any other implementation is returned unchanged."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation {implementation!r}; expected one of {IMPLEMENTATIONS}")
    if implementation != "auto":
        return implementation
    if backend == "tpu":
        return "splash"
    if backend == "gpu" and jnp.dtype(dtype) in [jnp.dtype(t) for t in HALF_DTYPES]:
        return "cudnn"
    return "chunked"


def describe_choice(config: AttentionConfig, backend: str, dtype) -> str:
    """One line saying which attention kernel a run uses (logged once at start)."""
    chosen = resolve_implementation(config.implementation, backend, dtype)
    how = {
        "xla": "plain einsum + softmax",
        "chunked": f"chunked online softmax, chunks {config.chunk_q} x {config.chunk_kv}",
        "splash": (f"Pallas splash, blocks q {config.splash_block_q} / kv {config.splash_block_kv} "
                   f"/ kv compute {config.splash_block_kv_compute}"),
        "cudnn": "cuDNN flash attention",
    }[chosen]
    via = f" (from 'auto' on {backend}, {jnp.dtype(dtype).name})" if config.implementation == "auto" else ""
    return (f"attention: {chosen}{via}: {how}; sequences shorter than {config.min_seq_len} "
            f"take the plain path")


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
    config: AttentionConfig | None = None,
):
    """Attention over (B, L, heads, head_dim) tensors; see the module docstring for kernels.

    Args:
      q: (B, Lq, H, D) queries.
      k, v: (B, Lk, H, D) keys and values.
      mask: optional boolean mask broadcastable to (B, H, Lq, Lk); True = may attend.
      implementation: one of ``IMPLEMENTATIONS``.
      min_seq_len_for_kernel: below this query/key length the plain path is used.
      allow_fallback: see :class:`AttentionConfig`.
      scale: logit scale, default ``head_dim ** -0.5``.
      config: chunk / block sizes (``implementation``, ``min_seq_len`` and ``allow_fallback``
        of this argument are ignored: the explicit arguments rule); default AttentionConfig().
    Returns:
      (B, Lq, H, D).
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation {implementation!r}; expected one of {IMPLEMENTATIONS}")
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"attention expects (B, L, heads, head_dim) tensors, got q{q.shape} k{k.shape} v{v.shape}"
        )
    config = AttentionConfig() if config is None else config
    backend = jax.default_backend()
    implementation = resolve_implementation(implementation, backend, q.dtype)
    if implementation == "xla":
        return plain_attention(q, k, v, mask=mask, scale=scale)
    needs = {"splash": "tpu", "cudnn": "gpu"}.get(implementation)
    runnable = needs is None or backend == needs or (implementation == "splash" and config.splash_interpret)
    if not runnable:
        if not allow_fallback:
            raise RuntimeError(
                f"attention implementation {implementation!r} needs a {needs.upper()} backend, but jax's "
                f"default backend is {backend!r}. Use implementation='chunked' or 'auto', or set "
                f"allow_fallback=True to run the plain path on this backend."
            )
        return plain_attention(q, k, v, mask=mask, scale=scale)
    if min(q.shape[1], k.shape[1]) < min_seq_len_for_kernel:
        return plain_attention(q, k, v, mask=mask, scale=scale)

    if implementation == "chunked":
        return chunked_attention(q, k, v, mask=mask, scale=scale, chunk_q=config.chunk_q, chunk_kv=config.chunk_kv)
    if implementation == "splash":
        if mask is not None:
            raise NotImplementedError(
                f"attention implementation 'splash' takes no mask (got mask {jnp.shape(mask)} for "
                f"q{q.shape} k{k.shape}); masked attention in this project is temporal and shorter than "
                f"min_seq_len. Use implementation='chunked' for long masked attention."
            )
        return splash_attention(
            q, k, v, scale=scale, block_q=config.splash_block_q, block_kv=config.splash_block_kv,
            block_kv_compute=config.splash_block_kv_compute, interpret=config.splash_interpret,
        )
    # implementation == "cudnn", on a GPU
    if q.dtype not in HALF_DTYPES:
        raise TypeError(
            f"the cuDNN attention kernel runs in bf16/fp16, got {q.dtype} inputs (shape {q.shape}). "
            f"Use compute dtype bfloat16, or implementation='chunked' / 'xla' for fp32."
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
        config=config,
    )
