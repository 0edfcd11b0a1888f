"""TPU Pallas splash attention behind the project's (B, L, heads, head_dim) interface.

``jax.experimental.pallas.ops.tpu.splash_attention`` works on one example's
``(heads, seq, head_dim)`` tensors; here it is vmapped over the batch. What the wrapper adds:

* Block sizes come from the caller (config). A block larger than the sequence is shrunk to the
  sequence rounded up to 128 (the TPU lane width); the sequence is then zero-padded to a block
  multiple. Padded keys get their own segment id (1, real keys and every query 0), so no query
  attends to them; padded query rows are dropped from the output.
* ``block_kv_compute`` must divide ``block_kv``; when a shrunken ``block_kv`` breaks that, the
  compute block becomes ``block_kv``.
* Head dims: the kernel itself handles head dims that are not multiples of 128 (it tiles its
  fp32 accumulators over 128 lanes and slices); SD-1.5's 40 / 80 / 160 are passed unpadded.
* The logit scale is folded into ``q`` (the kernel applies none).
* ``interpret=True`` runs the kernel in Pallas interpret mode (any backend, slow): tests only.
* Under a mesh (``jax.set_mesh`` / ``parallel.use_rules``) the kernel runs inside
  ``jax.shard_map`` over the activation rules' batch (and heads) axes: XLA cannot partition a
  Pallas custom call itself and would otherwise gather the whole batch onto every device.
* Masks other than the padding are not supported: the project's masked attention (temporal,
  ~20 frames) is always below ``min_seq_len`` and takes the plain path.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

LANES = 128


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _block(requested: int, length: int) -> int:
    return min(requested, _round_up(length, LANES))


def splash_attention(
    q, k, v, *, scale=None, block_q: int = 512, block_kv: int = 1024, block_kv_compute: int = 512,
    interpret: bool = False,
):
    """q: (B, Lq, H, D), k/v: (B, Lk, H, D) -> (B, Lq, H, D) in q.dtype."""
    local = functools.partial(_splash_local, scale=scale, block_q=block_q, block_kv=block_kv,
                              block_kv_compute=block_kv_compute, interpret=interpret)
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return local(q, k, v)
    # the activation rules of parallel.use_rules (the defaults when none are set), as constrain()
    from mimaface_jax.parallel import DEFAULT_RULES, logical_to_mesh
    from mimaface_jax.parallel.sharding import _ACTIVE_RULES

    rules = _ACTIVE_RULES.get() or DEFAULT_RULES
    names = ("batch", None, "act_heads", None)
    q_spec, k_spec = (logical_to_mesh(names, x.shape, dict(mesh.shape), rules) for x in (q, k))
    return jax.shard_map(local, in_specs=(q_spec, k_spec, k_spec), out_specs=q_spec, check_vma=False)(q, k, v)


def _splash_local(q, k, v, *, scale, block_q, block_kv, block_kv_compute, interpret):
    """splash_attention on one device's shard (no mesh axes)."""
    from jax.experimental.pallas.ops.tpu import splash_attention as splash

    for name, size in (("block_q", block_q), ("block_kv", block_kv), ("block_kv_compute", block_kv_compute)):
        if size < LANES or size % LANES:
            raise ValueError(f"splash attention: {name}={size} must be a positive multiple of {LANES}")
    if block_kv % block_kv_compute:
        raise ValueError(f"splash attention: block_kv={block_kv} must be a multiple of block_kv_compute={block_kv_compute}")
    b, lq, h, d = q.shape
    lk = k.shape[1]
    if k.shape != (b, lk, h, d) or v.shape != k.shape:
        raise ValueError(f"splash attention: q{q.shape} k{k.shape} v{v.shape} do not agree (B, heads, head_dim)")
    bq, bkv = _block(block_q, lq), _block(block_kv, lk)
    bkv_compute = block_kv_compute if bkv % block_kv_compute == 0 else bkv
    lq_pad, lk_pad = _round_up(lq, bq), _round_up(lk, bkv)

    scale = d**-0.5 if scale is None else scale
    # (B, L, H, D) -> (B, H, L_pad, D); scale folded into q
    qh = jnp.pad(jnp.swapaxes(q * jnp.asarray(scale, q.dtype), 1, 2), ((0, 0), (0, 0), (0, lq_pad - lq), (0, 0)))
    kh = jnp.pad(jnp.swapaxes(k, 1, 2), ((0, 0), (0, 0), (0, lk_pad - lk), (0, 0)))
    vh = jnp.pad(jnp.swapaxes(v, 1, 2), ((0, 0), (0, 0), (0, lk_pad - lk), (0, 0)))

    sizes = splash.BlockSizes(
        block_q=bq, block_kv=bkv, block_kv_compute=bkv_compute,
        block_q_dkv=bq, block_kv_dkv=bkv, block_kv_dkv_compute=bkv_compute,
        block_q_dq=bq, block_kv_dq=bkv,
    )
    mask = splash.MultiHeadMask([splash.FullMask((lq_pad, lk_pad)) for _ in range(h)])
    kernel = splash.make_splash_mha(mask, head_shards=1, q_seq_shards=1, block_sizes=sizes, interpret=interpret)
    if lk_pad != lk:
        segments = splash.SegmentIds(
            q=jnp.zeros((lq_pad,), jnp.int32), kv=(jnp.arange(lk_pad) >= lk).astype(jnp.int32)
        )
        per_example = functools.partial(kernel, segment_ids=segments)
    else:
        per_example = kernel
    out = jax.vmap(per_example)(qh, kh, vh)  # (B, H, Lq_pad, D)
    return jnp.swapaxes(out[:, :, :lq], 1, 2).astype(q.dtype)
