"""Classifier-free guidance: formula, limits, one doubled-batch model call per step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimaface_jax.diffusion.guidance import cfg_denoise, guided_denoise_fn
from mimaface_jax.diffusion.samplers import ddim_sample
from mimaface_jax.diffusion.schedule import ScheduleConfig

B, H, W, C, L, D = 2, 4, 4, 3, 5, 6
PROJ = np.random.default_rng(7).standard_normal((D, C)).astype(np.float32)


def toy_model(x, t, cond):
    """Depends on x, t and both conditioning leaves, per sample. x: (N, H, W, C), t: (N,)."""
    ctx = cond["context"].mean(axis=1) @ PROJ  # (N, L, D) -> (N, C)
    gate = cond["gate"][:, None, None, None]  # (N,) -> (N, 1, 1, 1)
    return jnp.tanh(x * gate + ctx[:, None, None, :] + t[:, None, None, None] / 1000)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((B, H, W, C)), jnp.float32)
    t = jnp.asarray([901, 37], jnp.int32)
    cond = {"context": jnp.asarray(rng.standard_normal((B, L, D)), jnp.float32),
            "gate": jnp.asarray([1.5, 0.5], jnp.float32)}
    uncond = {"context": jnp.zeros((B, L, D), jnp.float32), "gate": jnp.ones((B,), jnp.float32)}
    return x, t, cond, uncond


def test_cfg_equals_direct_computation():
    x, t, cond, uncond = _inputs()
    out_c = np.asarray(toy_model(x, t, cond), np.float64)
    out_u = np.asarray(toy_model(x, t, uncond), np.float64)
    assert np.abs(out_c - out_u).max() > 0.1  # the conditioning matters
    for scale in (7.5, 1.0, 0.0, 2.5):
        guided = np.asarray(cfg_denoise(toy_model, x, t, cond, uncond, scale))
        assert np.abs(guided - (out_u + scale * (out_c - out_u))).max() <= 1e-5
    # Scale 1 is the conditional prediction, scale 0 the unconditional one.
    assert np.abs(np.asarray(cfg_denoise(toy_model, x, t, cond, uncond, 1.0)) - out_c).max() <= 1e-6
    assert np.abs(np.asarray(cfg_denoise(toy_model, x, t, cond, uncond, 0.0)) - out_u).max() <= 1e-6


def test_model_called_once_per_step_with_doubled_batch():
    x, _, cond, uncond = _inputs(1)
    traced_batches = []  # python side effect: once per trace
    runtime_batches = []  # host callback: once per executed model call

    def model(x2, t2, c2):
        traced_batches.append((x2.shape[0], t2.shape[0], c2["context"].shape[0]))
        jax.debug.callback(lambda n: runtime_batches.append(int(n)), x2.shape[0])
        return toy_model(x2, t2, c2)

    steps = 25
    denoise = guided_denoise_fn(model, cond, uncond, 5.0)
    out = ddim_sample(denoise, x, ScheduleConfig(), steps)
    jax.block_until_ready(out)
    assert traced_batches == [(2 * B, 2 * B, 2 * B)]
    assert runtime_batches == [2 * B] * steps
    assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))


def test_mismatched_conditioning_raises():
    x, t, cond, uncond = _inputs()
    with pytest.raises(ValueError, match="same pytree structure"):
        cfg_denoise(toy_model, x, t, cond, {"context": uncond["context"]}, 5.0)
    with pytest.raises(ValueError, match=r"\['context'\]"):
        cfg_denoise(toy_model, x, t, cond, dict(uncond, context=uncond["context"][:1]), 5.0)
