"""NoiseSchedule vs diffusers' DDPMScheduler (SD-1.5 betas) and an independent numpy min-SNR."""

import jax
import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from mimaface_jax.diffusion.schedule import (
    NoiseSchedule,
    ScheduleConfig,
    add_noise,
    get_velocity,
    min_snr_weights,
    snr,
    training_target,
)

T = 1000


def _ddpm(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012):
    return DDPMScheduler(beta_schedule=beta_schedule, beta_start=beta_start, beta_end=beta_end,
                         num_train_timesteps=T)


def _inputs(shape=(T, 4, 4, 3), seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(shape).astype(np.float32)
    noise = rng.standard_normal(shape).astype(np.float32)
    return x0, noise


@pytest.mark.parametrize("beta_schedule,beta_start,beta_end",
                         [("scaled_linear", 0.00085, 0.012), ("linear", 0.0001, 0.02)])
def test_alphas_cumprod_match_diffusers(beta_schedule, beta_start, beta_end):
    ours = NoiseSchedule.create(ScheduleConfig(beta_start=beta_start, beta_end=beta_end,
                                               beta_schedule=beta_schedule))
    ref = _ddpm(beta_schedule, beta_start, beta_end).alphas_cumprod.numpy()
    # torch's float32 linspace rounds a few betas differently: a few float32 ulps at most.
    np.testing.assert_allclose(np.asarray(ours.alphas_cumprod), ref, rtol=5e-7, atol=1e-7)


def test_add_noise_and_velocity_match_ddpm_scheduler():
    sched = NoiseSchedule.create(ScheduleConfig())
    ddpm = _ddpm()
    x0, noise = _inputs()
    t = np.arange(T)  # every training timestep, one per sample
    tx0, tnoise, tt = torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t)

    ours_xt = np.asarray(add_noise(sched, x0, noise, t))
    ours_v = np.asarray(get_velocity(sched, x0, noise, t))
    ref_xt = ddpm.add_noise(tx0, tnoise, tt).numpy()
    ref_v = ddpm.get_velocity(tx0, tnoise, tt).numpy()
    assert np.abs(ours_xt - ref_xt).max() <= 1e-6
    assert np.abs(ours_v - ref_v).max() <= 1e-6

    # And against the formulas in float64 on diffusers' alphas_cumprod.
    a = ddpm.alphas_cumprod.numpy().astype(np.float64)[:, None, None, None]
    xt64 = np.sqrt(a) * x0 + np.sqrt(1 - a) * noise
    v64 = np.sqrt(a) * noise - np.sqrt(1 - a) * x0
    assert np.abs(ours_xt - xt64).max() <= 1e-6
    assert np.abs(ours_v - v64).max() <= 1e-6


def test_per_sample_coefficients_broadcast_to_video_batches_under_jit():
    """(B*F, H, W, C) latents with t of shape (B*F,), schedule passed through jit as a pytree."""
    sched = NoiseSchedule.create(ScheduleConfig(prediction_type="v_prediction"))
    x0, noise = _inputs((2 * 3, 5, 4, 2), seed=1)  # B=2, F=3 folded into the batch
    t = np.array([0, 999, 17, 500, 500, 3], np.int32)

    @jax.jit
    def noisy_and_target(s, x0, noise, t):
        return add_noise(s, x0, noise, t), training_target(s, x0, noise, t)

    xt, target = map(np.asarray, noisy_and_target(sched, x0, noise, t))
    a = np.asarray(sched.alphas_cumprod, np.float64)
    for i, ti in enumerate(t):  # one sample at a time, scalar coefficients
        np.testing.assert_allclose(xt[i], np.sqrt(a[ti]) * x0[i] + np.sqrt(1 - a[ti]) * noise[i],
                                   atol=1e-6, rtol=0)
        np.testing.assert_allclose(target[i], np.sqrt(a[ti]) * noise[i] - np.sqrt(1 - a[ti]) * x0[i],
                                   atol=1e-6, rtol=0)


def test_epsilon_target_is_the_noise_and_sample_target_is_x0():
    x0, noise = _inputs((3, 2, 2, 1))
    t = np.array([1, 2, 3])
    eps = NoiseSchedule.create(ScheduleConfig(prediction_type="epsilon"))
    assert np.array_equal(np.asarray(training_target(eps, x0, noise, t)), noise)
    sample = NoiseSchedule.create(ScheduleConfig(prediction_type="sample"))
    assert np.array_equal(np.asarray(training_target(sample, x0, noise, t)), x0)


def test_snr_matches_diffusers_alphas_cumprod():
    sched = NoiseSchedule.create(ScheduleConfig())
    a = _ddpm().alphas_cumprod.numpy().astype(np.float64)
    ref = a / (1 - a)  # spans ~4.7e-3 .. ~1.2e3
    ours = np.asarray(snr(sched, np.arange(T)), np.float64)
    # SNR reaches ~1175, where one float32 ulp is 1.2e-4: compare relatively there.
    assert np.abs(ours / ref - 1).max() <= 1e-6
    small = ref <= 1.0
    assert small.sum() > 100 and np.abs(ours - ref)[small].max() <= 1e-6


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("gamma", [5.0, 1.0])
def test_min_snr_weights_match_numpy(prediction_type, gamma):
    sched = NoiseSchedule.create(ScheduleConfig(prediction_type=prediction_type))
    a = _ddpm().alphas_cumprod.numpy().astype(np.float64)
    t = np.arange(T)
    s = a / (1 - a)
    # the paper's x0-space weight min(SNR, gamma), divided by the target's scale vs x0
    denom = {"epsilon": s, "v_prediction": s + 1, "sample": np.ones_like(s)}[prediction_type]
    ref = np.minimum(s, gamma) / denom
    ours = np.asarray(min_snr_weights(sched, t, gamma), np.float64)
    assert np.abs(ours - ref).max() <= 1e-6
    # Both regimes are exercised: clipped (SNR > gamma) and unclipped timesteps.
    assert (s > gamma).sum() > 10 and (s < gamma).sum() > 10


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="prediction_type"):
        ScheduleConfig(prediction_type="flow")
    with pytest.raises(ValueError, match="beta_schedule"):
        ScheduleConfig(beta_schedule="cosine")
    sched = NoiseSchedule.create()
    x0, noise = _inputs((4, 2, 2, 1))
    with pytest.raises(ValueError, match="one per sample"):
        add_noise(sched, x0, noise, np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="integers"):
        add_noise(sched, x0, noise, np.array([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match="gamma"):
        min_snr_weights(sched, np.array([1]), 0.0)
