"""Memory-efficient attention in pure JAX: query chunks x key/value chunks, online softmax.

Rabe & Staats ("Self-attention does not need O(n^2) memory", arXiv 2112.05682) with the
FlashAttention-2 backward pass, written with ``lax.scan`` so it runs on every backend:

* forward: for each query chunk, a scan over key/value chunks keeps a running row maximum
  ``m``, a running sum ``l`` and an unnormalised output ``acc`` (all fp32); only one
  ``(B, H, chunk_q, chunk_kv)`` score tile exists at a time. The forward saves the output and
  the per-row maximum ``m`` and sum ``l`` (B, H, Lq) -- not the scores. (Not their
  log-sum-exp ``m + log l``: for a fully masked row ``m`` is ``finfo.min`` and ``+ log l``
  would be lost to rounding.)
* backward (``jax.custom_vjp``): each score tile is recomputed from ``q``, ``k``, ``m``, ``l``
  (``P = exp(S - m) / l``) and the gradients are accumulated chunk by chunk with
  ``delta = rowsum(dO * O)``: ``dS = P * (dO v^T - delta)``. Per tile that is one extra
  ``q k^T`` matmul over the plain path's backward (5 matmuls instead of 4).

Memory therefore grows with ``chunk_q * chunk_kv`` (plus O(L * head_dim) carries), not with
``Lq * Lk``. Sequence lengths that are not chunk multiples are padded; padded keys get exactly
zero weight, padded query rows are dropped.

Numerics match :func:`mimaface_jax.models.attention.plain_attention` (same fp32 logits, same
``finfo.min`` for masked entries, so a fully masked row gives the same uniform weights), up to
float summation order.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _pad_seq(x, length: int):
    """Zero-pads axis 1 of (B, L, H, D) to ``length``."""
    pad = length - x.shape[1]
    return x if pad == 0 else jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0)))


def _prepare_mask(mask, b: int, h: int, lq: int, lk: int, lq_pad: int, lk_pad: int):
    """Boolean mask broadcastable to (B, H, Lq, Lk) -> 4-D, its Lq/Lk axes padded (False) where
    they are not broadcast (size 1). B and H axes keep size 1 when broadcast."""
    mask = jnp.asarray(mask, dtype=bool)
    if mask.ndim > 4:
        raise ValueError(f"attention mask must be broadcastable to (B, H, Lq, Lk)={(b, h, lq, lk)}, got {mask.shape}")
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
    for axis, (size, full) in enumerate(zip(mask.shape, (b, h, lq, lk))):
        if size not in (1, full):
            raise ValueError(
                f"attention mask {mask.shape} is not broadcastable to (B, H, Lq, Lk)={(b, h, lq, lk)} (axis {axis})"
            )
    pad_q = lq_pad - lq if mask.shape[2] == lq and lq > 1 else 0
    pad_k = lk_pad - lk if mask.shape[3] == lk and lk > 1 else 0
    if pad_q or pad_k:
        mask = jnp.pad(mask, ((0, 0), (0, 0), (0, pad_q), (0, pad_k)), constant_values=False)
    return mask


def _mask_tile(mask, iq, ik, cq: int, ck: int):
    """The (Bm, Hm, cq or 1, ck or 1) tile of a prepared mask at query chunk iq, key chunk ik."""
    bm, hm, mq, mk = mask.shape
    q0 = iq * cq if mq > 1 else 0
    k0 = ik * ck if mk > 1 else 0
    return lax.dynamic_slice(mask, (0, 0, q0, k0), (bm, hm, min(cq, mq), min(ck, mk)))


def _scores(q_c, k_c, scale, mask, iq, ik, cq, ck, lk, lk_pad):
    """fp32 scores (B, H, cq, ck) of one tile, masked like the plain path; padded keys -> -inf."""
    s = jnp.einsum("bqhd,bkhd->bhqk", q_c, k_c, preferred_element_type=jnp.float32) * scale
    if mask is not None:
        s = jnp.where(_mask_tile(mask, iq, ik, cq, ck), s, jnp.finfo(jnp.float32).min)
    if lk == lk_pad:
        return s
    key_pos = ik * ck + lax.broadcasted_iota(jnp.int32, (1, 1, 1, ck), 3)
    return jnp.where(key_pos < lk, s, -jnp.inf)


def _chunks(x, n: int, c: int):
    """(B, n*c, H, D) -> (n, B, c, H, D): the scan axis first."""
    b, _, h, d = x.shape
    return jnp.moveaxis(x.reshape(b, n, c, h, d), 1, 0)


def _unchunk(x):
    """(n, B, c, H, D) -> (B, n*c, H, D)."""
    n, b, c, h, d = x.shape
    return jnp.moveaxis(x, 0, 1).reshape(b, n * c, h, d)


def _forward(q, k, v, mask, *, scale, cq, ck, lk):
    """Padded inputs -> (out (B, Lq_pad, H, D) in v.dtype, (m, 1 / l) each (nq, B, H, cq) fp32)."""
    b, lq_pad, h, d = q.shape
    nq, nk = lq_pad // cq, k.shape[1] // ck
    k_chunks, v_chunks = _chunks(k, nk, ck), _chunks(v, nk, ck)

    def per_query_chunk(_, xs):
        iq, q_c = xs  # q_c: (B, cq, H, D)

        def per_key_chunk(carry, ys):
            m, l, acc = carry  # (B, H, cq), (B, H, cq), (B, H, cq, D) fp32
            ik, k_c, v_c = ys
            s = _scores(q_c, k_c, scale, mask, iq, ik, cq, ck, lk, k.shape[1])
            m_new = jnp.maximum(m, s.max(axis=-1))
            p = jnp.exp(s - m_new[..., None])
            correction = jnp.exp(m - m_new)
            l_new = l * correction + p.sum(axis=-1)
            pv = jnp.einsum("bhqk,bkhd->bhqd", p.astype(v_c.dtype), v_c, preferred_element_type=jnp.float32)
            return (m_new, l_new, acc * correction[..., None] + pv), None

        init = (
            jnp.full((b, h, cq), -jnp.inf, jnp.float32),
            jnp.zeros((b, h, cq), jnp.float32),
            jnp.zeros((b, h, cq, d), jnp.float32),
        )
        (m, l, acc), _ = lax.scan(per_key_chunk, init, (jnp.arange(nk), k_chunks, v_chunks))
        out = (acc / l[..., None]).astype(v.dtype)  # (B, H, cq, D)
        return None, (jnp.transpose(out, (0, 2, 1, 3)), (m, 1.0 / l))

    _, (out, stats) = lax.scan(per_query_chunk, None, (jnp.arange(nq), _chunks(q, nq, cq)))
    return _unchunk(out), stats


def _backward(q, k, v, mask, out, stats, d_out, *, scale, cq, ck, lk):
    """FlashAttention-2 style gradients of padded inputs; recomputes each score tile once."""
    b, lq_pad, h, d = q.shape
    nq, nk = lq_pad // cq, k.shape[1] // ck
    # delta_i = sum_d dO_i * O_i (fp32), the softmax-Jacobian term of every query row
    delta = jnp.einsum("bqhd,bqhd->bhq", d_out.astype(jnp.float32), out.astype(jnp.float32))
    delta = jnp.moveaxis(delta.reshape(b, h, nq, cq), 2, 0)  # (nq, B, H, cq)
    q_chunks, do_chunks = _chunks(q, nq, cq), _chunks(d_out, nq, cq)

    def per_key_chunk(dq, xs):
        ik, k_c, v_c = xs  # (B, ck, H, D)

        def per_query_chunk(carry, ys):
            dk_c, dv_c = carry  # (B, ck, H, D) fp32
            iq, q_c, do_c, m_c, inv_l_c, delta_c = ys
            s = _scores(q_c, k_c, scale, mask, iq, ik, cq, ck, lk, k.shape[1])
            p = jnp.exp(s - m_c[..., None]) * inv_l_c[..., None]  # (B, H, cq, ck); 0 on padded keys
            dv_c = dv_c + jnp.einsum("bhqk,bqhd->bkhd", p.astype(do_c.dtype), do_c, preferred_element_type=jnp.float32)
            dp = jnp.einsum("bqhd,bkhd->bhqk", do_c, v_c, preferred_element_type=jnp.float32)
            ds = p * (dp - delta_c[..., None])
            if mask is not None:  # masked logits are constants: no gradient reaches q or k
                ds = jnp.where(_mask_tile(mask, iq, ik, cq, ck), ds, 0.0)
            ds = (ds * scale).astype(q_c.dtype)
            dq_c = jnp.einsum("bhqk,bkhd->bqhd", ds, k_c, preferred_element_type=jnp.float32)
            dk_c = dk_c + jnp.einsum("bhqk,bqhd->bkhd", ds, q_c, preferred_element_type=jnp.float32)
            return (dk_c, dv_c), dq_c

        zeros = jnp.zeros((b, ck, h, d), jnp.float32)
        (dk_c, dv_c), dq_parts = lax.scan(
            per_query_chunk, (zeros, zeros), (jnp.arange(nq), q_chunks, do_chunks, *stats, delta)
        )
        return dq + dq_parts, (dk_c, dv_c)

    dq, (dk, dv) = lax.scan(
        per_key_chunk, jnp.zeros((nq, b, cq, h, d), jnp.float32), (jnp.arange(nk), _chunks(k, nk, ck), _chunks(v, nk, ck))
    )
    return _unchunk(dq).astype(q.dtype), _unchunk(dk).astype(k.dtype), _unchunk(dv).astype(v.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _chunked_core(q, k, v, mask, scale, cq, ck, lk):
    return _forward(q, k, v, mask, scale=scale, cq=cq, ck=ck, lk=lk)[0]


def _chunked_core_fwd(q, k, v, mask, scale, cq, ck, lk):
    out, stats = _forward(q, k, v, mask, scale=scale, cq=cq, ck=ck, lk=lk)
    return out, (q, k, v, mask, out, stats)


def _chunked_core_bwd(scale, cq, ck, lk, residuals, d_out):
    q, k, v, mask, out, stats = residuals
    dq, dk, dv = _backward(q, k, v, mask, out, stats, d_out, scale=scale, cq=cq, ck=ck, lk=lk)
    return dq, dk, dv, None


_chunked_core.defvjp(_chunked_core_fwd, _chunked_core_bwd)


def chunked_attention(q, k, v, *, mask=None, scale=None, chunk_q: int = 1024, chunk_kv: int = 1024):
    """Memory-efficient attention. q: (B, Lq, H, D), k/v: (B, Lk, H, D) -> (B, Lq, H, D).

    ``mask``: optional boolean, broadcastable to (B, H, Lq, Lk), True = may attend.
    ``chunk_q`` / ``chunk_kv``: tile sizes (clipped to the sequence lengths); the largest
    temporary is one fp32 (B, H, chunk_q, chunk_kv) score tile (a few of them in the backward).
    """
    if chunk_q < 1 or chunk_kv < 1:
        raise ValueError(f"chunked attention needs chunk sizes >= 1, got chunk_q={chunk_q}, chunk_kv={chunk_kv}")
    b, lq, h, d = q.shape
    lk = k.shape[1]
    if k.shape != (b, lk, h, d) or v.shape != k.shape:
        raise ValueError(f"chunked attention: q{q.shape} k{k.shape} v{v.shape} do not agree (B, heads, head_dim)")
    scale = d**-0.5 if scale is None else float(scale)
    cq, ck = min(chunk_q, lq), min(chunk_kv, lk)
    lq_pad, lk_pad = _round_up(lq, cq), _round_up(lk, ck)
    if mask is not None:
        mask = _prepare_mask(mask, b, h, lq, lk, lq_pad, lk_pad)
    out = _chunked_core(_pad_seq(q, lq_pad), _pad_seq(k, lk_pad), _pad_seq(v, lk_pad), mask, scale, cq, ck, lk)
    return out[:, :lq]
