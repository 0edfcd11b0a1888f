"""``chunked`` attention equals the plain path (forward and gradients, fp32, <= 1e-5) at the
SD-1.5 U-Net's per-level attention shapes, with and without masks, and its backward pass does
not materialise the (Lq, Lk) scores.

SD-1.5 at 512^2 (8 heads): spatial self-attention over 4096 / 1024 / 256 / 64 tokens with head
dims 40 / 80 / 160 / 160, cross-attention of those queries over ~257 context tokens. The tests
keep the sequence lengths and head dims and shrink batch x heads (1 x 2) so the suite can
afford them; the 64x64 level runs at its full 4096 tokens with the configs' 1024 x 1024 chunks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimaface_jax.models.attention import plain_attention
from mimaface_jax.models.attention_chunked import chunked_attention

TOL = dict(atol=1e-5, rtol=1e-5)


def _qkv(seed, b, lq, lk, h, d):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(s, dtype=np.float32)) for s in ((b, lq, h, d), (b, lk, h, d), (b, lk, h, d))]


def _value_and_grads(attn, q, k, v, mask, weight):
    """out, and d/d(q, k, v) of sum(out * weight) (a generic cotangent)."""

    def loss(q, k, v):
        return jnp.sum(attn(q, k, v, mask=mask) * weight)

    return jax.jit(attn, static_argnames=())(q, k, v, mask=mask), jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)


def _assert_matches_plain(q, k, v, mask=None, **chunks):
    weight = jnp.asarray(np.random.default_rng(99).standard_normal(q.shape, dtype=np.float32))
    out, grads = _value_and_grads(lambda q, k, v, mask: chunked_attention(q, k, v, mask=mask, **chunks), q, k, v, mask, weight)
    ref_out, ref_grads = _value_and_grads(lambda q, k, v, mask: plain_attention(q, k, v, mask=mask), q, k, v, mask, weight)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref_out), **TOL)
    for name, g, ref in zip("qkv", grads, ref_grads):
        np.testing.assert_allclose(np.asarray(g), np.asarray(ref), **TOL, err_msg=f"d{name}")


# (sequence, head_dim) of each U-Net level's spatial self-attention, chunk sizes that do not
# divide the sequence where possible (padding exercised), 2 heads
LEVELS = [(1024, 80, 384, 256), (256, 160, 96, 128), (64, 160, 64, 24)]


@pytest.mark.parametrize("seq, head_dim, chunk_q, chunk_kv", LEVELS)
def test_self_attention_levels_match_plain(seq, head_dim, chunk_q, chunk_kv):
    q, k, v = _qkv(seq, 1, seq, seq, 2, head_dim)
    _assert_matches_plain(q, k, v, chunk_q=chunk_q, chunk_kv=chunk_kv)


def test_full_4096_level_matches_plain_with_config_chunks():
    """The 64x64 level at its real length, head dim 40, the configs' 1024 x 1024 chunks."""
    q, k, v = _qkv(4096, 1, 4096, 4096, 1, 40)
    _assert_matches_plain(q, k, v, chunk_q=1024, chunk_kv=1024)


@pytest.mark.parametrize("seq, head_dim", [(1024, 80), (256, 160)])
def test_cross_attention_over_context_tokens_matches_plain(seq, head_dim):
    """Queries of a level over 257 context tokens (not a chunk multiple: padded keys)."""
    q, k, v = _qkv(seq + 1, 2, seq, 257, 2, head_dim)
    _assert_matches_plain(q, k, v, chunk_q=256, chunk_kv=128)


def test_masks_match_plain_full_key_padding_and_fully_masked_rows():
    rng = np.random.default_rng(5)
    q, k, v = _qkv(6, 2, 256, 200, 2, 40)
    # per example and head, every (query, key) pair; one query row fully masked (the plain
    # path then gives uniform weights; so must the chunked one)
    full = rng.random((2, 2, 256, 200)) < 0.7
    full[1, 0, 17, :] = False
    _assert_matches_plain(q, k, v, mask=jnp.asarray(full), chunk_q=96, chunk_kv=64)
    # key padding, broadcast over heads and queries: (B, 1, 1, Lk)
    keys = np.ones((2, 1, 1, 200), bool)
    keys[0, ..., 150:] = False
    _assert_matches_plain(q, k, v, mask=jnp.asarray(keys), chunk_q=128, chunk_kv=64)
    # a 2-D (Lq, Lk) mask broadcast over batch and heads
    _assert_matches_plain(q, k, v, mask=jnp.asarray(full[0, 0]), chunk_q=256, chunk_kv=200)


def test_bfloat16_inputs_stay_close_to_plain():
    """bf16 inputs: output in bf16, within bf16 rounding of the plain path."""
    q, k, v = (x.astype(jnp.bfloat16) for x in _qkv(7, 1, 300, 300, 2, 40))
    out = chunked_attention(q, k, v, chunk_q=128, chunk_kv=128)
    assert out.dtype == jnp.bfloat16
    ref = plain_attention(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32))
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref), atol=2e-2)


def test_backward_memory_grows_with_the_chunk_not_with_the_scores():
    """XLA's buffer assignment of the gradient at 4096 tokens: the plain path holds the fp32
    (4096, 4096) scores (64 MiB); the chunked path with 512 x 512 chunks needs far less."""
    q, k, v = (jax.ShapeDtypeStruct((1, 4096, 1, 40), jnp.float32) for _ in range(3))
    scores_bytes = 4096 * 4096 * 4

    def temp_bytes(attn):
        grad = jax.grad(lambda q, k, v: jnp.sum(attn(q, k, v)), argnums=(0, 1, 2))
        return jax.jit(grad).lower(q, k, v).compile().memory_analysis().temp_size_in_bytes

    plain = temp_bytes(plain_attention)
    chunked = temp_bytes(lambda q, k, v: chunked_attention(q, k, v, chunk_q=512, chunk_kv=512))
    assert plain >= scores_bytes, plain
    assert chunked < scores_bytes / 4, (chunked, plain)


def test_bad_inputs_are_rejected():
    q, k, v = _qkv(8, 1, 16, 16, 2, 8)
    with pytest.raises(ValueError, match="chunk sizes"):
        chunked_attention(q, k, v, chunk_q=0)
    with pytest.raises(ValueError, match="not broadcastable"):
        chunked_attention(q, k, v, mask=jnp.ones((3, 1, 16, 16), bool))
    with pytest.raises(ValueError, match="do not agree"):
        chunked_attention(q, k[..., :4], v)
