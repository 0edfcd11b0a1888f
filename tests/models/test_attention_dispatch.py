"""Which kernel the entry point runs: ``auto`` per backend / dtype, the plain path below
``min_seq_len``, errors for kernels the backend cannot run, the config keys' validation."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimaface_jax.config_files import load_config
from mimaface_jax.config_validation import ConfigError, validate
from mimaface_jax.models.attention import (AttentionConfig, attention_from_config, describe_choice,
                                           resolve_implementation)
from mimaface_jax.models.attention_chunked import chunked_attention

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _qkv(seed, lq, lk, b=1, h=2, d=16):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(s, dtype=np.float32)) for s in ((b, lq, h, d), (b, lk, h, d), (b, lk, h, d))]


def _uses_scan(fn, *args):
    return "scan" in str(jax.make_jaxpr(fn)(*args))


@pytest.mark.parametrize("backend, dtype, expected", [
    ("tpu", jnp.float32, "splash"), ("tpu", jnp.bfloat16, "splash"),
    ("gpu", jnp.bfloat16, "cudnn"), ("gpu", jnp.float16, "cudnn"), ("gpu", jnp.float32, "chunked"),
    ("cpu", jnp.bfloat16, "chunked"), ("cpu", jnp.float32, "chunked"),
])
def test_auto_resolves_per_backend_and_dtype(backend, dtype, expected):
    assert resolve_implementation("auto", backend, dtype) == expected
    assert resolve_implementation("xla", backend, dtype) == "xla"
    line = describe_choice(AttentionConfig("auto"), backend, dtype)
    assert line.startswith(f"attention: {expected} (from 'auto' on {backend}")


def test_auto_on_cpu_runs_chunked_and_short_sequences_take_the_plain_path():
    assert jax.default_backend() == "cpu"
    cfg = AttentionConfig("auto", min_seq_len=64, chunk_q=32, chunk_kv=32)
    q, k, v = _qkv(0, 100, 80)
    out = attention_from_config(q, k, v, cfg)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(chunked_attention(q, k, v, chunk_q=32, chunk_kv=32)))
    assert _uses_scan(lambda q, k, v: attention_from_config(q, k, v, cfg), q, k, v)
    # temporal-attention-like lengths (20 frames): below min_seq_len, no chunk loop
    q, k, v = _qkv(1, 20, 20)
    assert not _uses_scan(lambda q, k, v: attention_from_config(q, k, v, cfg), q, k, v)
    # cross-attention: the SHORTER length decides (100 queries over 20 keys: plain)
    q, k, v = _qkv(2, 100, 20)
    assert not _uses_scan(lambda q, k, v: attention_from_config(q, k, v, cfg), q, k, v)


def test_splash_without_tpu_is_an_error_unless_fallback_or_interpret():
    q, k, v = _qkv(3, 300, 300)
    with pytest.raises(RuntimeError, match="needs a TPU"):
        attention_from_config(q, k, v, AttentionConfig("splash"))
    fallback = attention_from_config(q, k, v, AttentionConfig("splash", allow_fallback=True))
    np.testing.assert_array_equal(np.asarray(fallback), np.asarray(attention_from_config(q, k, v, AttentionConfig())))


def _sd15(tmp_path):
    c = load_config(CONFIGS / "sd15_stage2_video.py")
    c.init.stage1_checkpoint = str(tmp_path)
    c.mesh.fsdp = 8
    c.data.global_batch_size = 8
    return c


def test_sd15_configs_use_auto_and_bad_attention_keys_are_config_errors(tmp_path):
    c = _sd15(tmp_path)
    assert c.model.unet.attention_implementation == "auto"
    validate(c, num_devices=8)
    c.model.unet.attention_implementation = "flash"
    c.model.unet.attention_chunk_kv = 0
    c.model.unet.attention_splash_block_kv = 1000
    with pytest.raises(ConfigError) as err:
        validate(c, num_devices=8)
    for key in ("attention_implementation='flash'", "attention_chunk_kv=0", "attention_splash_block_kv=1000"):
        assert key in str(err.value)
