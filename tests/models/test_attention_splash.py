"""``splash`` (TPU Pallas splash attention) equals the plain path, run in Pallas interpret mode on
the CPU: forward and gradients, SD-1.5's head dims 40 / 80 / 160, sequence lengths that are not
block multiples (padded keys masked by segment ids, padded queries dropped).

Interpret mode checks the wrapper and the kernel's math, not the TPU lowering or its speed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimaface_jax.models.attention import AttentionConfig, attention_from_config, plain_attention

TOL = dict(atol=1e-5, rtol=1e-5)
# 128-blocks: the smallest the kernel takes, so the interpreted grid stays small
SPLASH = AttentionConfig("splash", min_seq_len=0, splash_interpret=True,
                         splash_block_q=128, splash_block_kv=128, splash_block_kv_compute=128)


def _qkv(seed, b, lq, lk, h, d):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(s, dtype=np.float32)) for s in ((b, lq, h, d), (b, lk, h, d), (b, lk, h, d))]


@pytest.mark.parametrize("head_dim", [40, 80, 160])
def test_splash_interpret_matches_plain_forward_and_gradients(head_dim):
    # 200 queries over 300 keys: neither a multiple of the 128 blocks (padded to 256 / 384)
    q, k, v = _qkv(head_dim, 2, 200, 300, 2, head_dim)
    weight = jnp.asarray(np.random.default_rng(1).standard_normal(q.shape, dtype=np.float32))

    def grads(attn):
        return jax.jit(jax.grad(lambda q, k, v: jnp.sum(attn(q, k, v) * weight), argnums=(0, 1, 2)))(q, k, v)

    def splash(q, k, v):
        return attention_from_config(q, k, v, SPLASH)

    out = jax.jit(splash)(q, k, v)
    assert out.shape == q.shape and out.dtype == q.dtype
    np.testing.assert_allclose(np.asarray(out), np.asarray(plain_attention(q, k, v)), **TOL)
    for name, g, ref in zip("qkv", grads(splash), grads(plain_attention)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(ref), **TOL, err_msg=f"d{name} (head_dim {head_dim})")


def test_splash_under_a_mesh_runs_per_shard_and_matches_plain():
    """Under a mesh the kernel runs in shard_map over batch (fsdp) and heads (tensor)."""
    from mimaface_jax.parallel import MeshConfig, make_mesh, use_rules

    mesh = make_mesh(MeshConfig.from_mapping(dict(data=1, fsdp=4, tensor=2)))
    q, k, v = _qkv(3, 4, 200, 300, 2, 40)

    def loss(attn):
        return lambda q, k, v: jnp.sum(attn(q, k, v) ** 2)

    with use_rules(mesh):
        step = jax.jit(jax.value_and_grad(loss(lambda q, k, v: attention_from_config(q, k, v, SPLASH)), argnums=(0, 1, 2)))
        assert "sdy.manual_computation" in step.lower(q, k, v).as_text()  # shard_map
        value, grads = step(q, k, v)
    ref_value, ref_grads = jax.value_and_grad(loss(plain_attention), argnums=(0, 1, 2))(q, k, v)
    np.testing.assert_allclose(float(value), float(ref_value), rtol=1e-5)
    for name, g, ref in zip("qkv", grads, ref_grads):
        np.testing.assert_allclose(np.asarray(g), np.asarray(ref), **TOL, err_msg=f"d{name}")


def test_splash_rejects_masks_and_bad_block_sizes():
    q, k, v = _qkv(0, 1, 128, 128, 1, 40)
    with pytest.raises(NotImplementedError, match="takes no mask"):
        attention_from_config(q, k, v, SPLASH, mask=jnp.ones((128, 128), bool))
    with pytest.raises(ValueError, match="multiple of 128"):
        AttentionConfig("splash", splash_block_q=100)
    with pytest.raises(ValueError, match="multiple of splash_block_kv_compute"):
        AttentionConfig("splash", splash_block_kv=384, splash_block_kv_compute=256)
