"""The attention entry point against torch's scaled_dot_product_attention."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mimaface_jax.models.attention import AttentionConfig, attention_from_config, dot_product_attention


def _qkv(seed, b=2, lq=7, lk=5, h=3, d=8):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in ((b, lq, h, d), (b, lk, h, d), (b, lk, h, d))]


def _torch_sdpa(q, k, v, mask=None):
    t = [torch.from_numpy(x).transpose(1, 2) for x in (q, k, v)]  # (B, H, L, D)
    m = None if mask is None else torch.from_numpy(mask)
    return F.scaled_dot_product_attention(*t, attn_mask=m).transpose(1, 2).numpy()


def test_plain_path_matches_torch_sdpa():
    q, k, v = _qkv(0)
    out = dot_product_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v))
    np.testing.assert_allclose(np.asarray(out), _torch_sdpa(q, k, v), atol=1e-5, rtol=1e-5)


def test_boolean_mask_matches_torch_sdpa():
    q, k, v = _qkv(1, lq=6, lk=6)
    rng = np.random.default_rng(2)
    mask = rng.random((1, 1, 6, 6)) < 0.6
    mask[..., 0] = True  # every query may attend to something
    out = dot_product_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), mask=jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(out), _torch_sdpa(q, k, v, mask), atol=1e-5, rtol=1e-5)


def test_masked_keys_have_no_influence():
    q, k, v = _qkv(3, lq=4, lk=4)
    mask = np.ones((1, 1, 4, 4), bool)
    mask[..., 3] = False
    k2, v2 = k.copy(), v.copy()
    k2[:, 3] += 5.0
    v2[:, 3] -= 5.0
    a = dot_product_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), mask=jnp.asarray(mask))
    b = dot_product_attention(jnp.asarray(q), jnp.asarray(k2), jnp.asarray(v2), mask=jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_cudnn_without_gpu_is_an_error_unless_fallback_is_explicit():
    assert jax.default_backend() == "cpu"  # tests run on CPU (tests/conftest.py)
    q, k, v = (jnp.asarray(x) for x in _qkv(4, lq=300, lk=300))
    with pytest.raises(RuntimeError, match="needs a GPU"):
        dot_product_attention(q, k, v, implementation="cudnn")
    fallback = attention_from_config(q, k, v, AttentionConfig("cudnn", min_seq_len=0, allow_fallback=True))
    np.testing.assert_array_equal(np.asarray(fallback), np.asarray(dot_product_attention(q, k, v)))


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="implementation"):
        AttentionConfig(implementation="flash")
    q, k, v = _qkv(5)
    with pytest.raises(ValueError, match="heads, head_dim"):
        dot_product_attention(jnp.asarray(q[0]), jnp.asarray(k[0]), jnp.asarray(v[0]))
