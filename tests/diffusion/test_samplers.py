"""DDIM / Euler samplers vs diffusers' DDIMScheduler / EulerDiscreteScheduler loops, step by step.

The same toy denoiser runs on both sides (a fixed function of x and t written once in torch and
once in jax); every intermediate sample of a 25-step run is compared.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from mimaface_jax.diffusion.samplers import (
    ddim_sample,
    ddim_timesteps,
    euler_sample,
    euler_sigmas,
    step_noise,
)
from mimaface_jax.diffusion.schedule import ScheduleConfig

STEPS = 25
SD15 = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
            beta_schedule="scaled_linear")
# A fixed channel mix, so that the toy model is not elementwise.
MIX = np.array([[0.6, -0.2, 0.1, 0.0], [0.1, 0.5, -0.3, 0.2],
                [0.0, 0.2, 0.4, -0.1], [-0.2, 0.0, 0.1, 0.7]], np.float32)


def toy_denoiser_jax(x, t):  # x: (B, H, W, 4), t: (B,)
    tt = t.astype(jnp.float32)[:, None, None, None] / 1000
    return 0.9 * tt * x + 0.1 * jnp.tanh(x @ MIX + tt)


def toy_denoiser_torch(x, t):  # x: (B, H, W, 4), t: scalar tensor
    tt = t.float() / 1000
    return 0.9 * tt * x + 0.1 * torch.tanh(x @ torch.from_numpy(MIX) + tt)


def _noise(seed=0, shape=(2, 8, 8, 4)):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _diffusers_trajectory(scheduler, noise, step_kwargs=lambda i: {}):
    """The SD pipeline's loop: scale the initial noise, scale the model input, step."""
    scheduler.set_timesteps(STEPS)
    x = torch.from_numpy(noise) * scheduler.init_noise_sigma
    trajectory = []
    for i, t in enumerate(scheduler.timesteps):
        out = toy_denoiser_torch(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(out, t, x, **step_kwargs(i)).prev_sample
        trajectory.append(x.numpy())
    return np.stack(trajectory)  # (N, B, H, W, C)


DDIM_CASES = [
    # SD-1.5's scheduler config loaded into DDIMScheduler: leading spacing, steps_offset 1.
    ("epsilon", "leading", 1),
    ("v_prediction", "trailing", 0),
    ("epsilon", "linspace", 0),
    ("sample", "trailing", 0),
]


@pytest.mark.parametrize("prediction_type,spacing,offset", DDIM_CASES)
def test_ddim_trajectory_matches_diffusers(prediction_type, spacing, offset):
    ref_sched = DDIMScheduler(**SD15, prediction_type=prediction_type, timestep_spacing=spacing,
                              steps_offset=offset, set_alpha_to_one=False, clip_sample=False)
    noise = _noise()
    ref = _diffusers_trajectory(ref_sched, noise)
    np.testing.assert_array_equal(
        ddim_timesteps(ScheduleConfig(), STEPS, spacing, offset), ref_sched.timesteps.numpy())

    config = ScheduleConfig(prediction_type=prediction_type)
    final, trajectory = ddim_sample(toy_denoiser_jax, jnp.asarray(noise), config, STEPS,
                                    timestep_spacing=spacing, steps_offset=offset,
                                    return_trajectory=True)
    trajectory = np.asarray(trajectory)
    assert trajectory.shape == (STEPS,) + noise.shape
    assert np.abs(trajectory - ref).max() <= 1e-5
    assert np.array_equal(np.asarray(final), trajectory[-1])
    # The run is not trivial: the sample moved far from the initial noise.
    assert np.abs(ref[-1] - noise).max() > 1.0


def test_stochastic_ddim_matches_diffusers_given_the_same_noise():
    key = jax.random.key(3)
    noise = _noise(1)

    def variance_noise(i):
        return {"eta": 0.7,
                "variance_noise": torch.from_numpy(np.array(step_noise(key, i, noise.shape,
                                                                         jnp.float32)))}

    ref = _diffusers_trajectory(
        DDIMScheduler(**SD15, steps_offset=1, set_alpha_to_one=False, clip_sample=False),
        noise, variance_noise)
    _, trajectory = ddim_sample(toy_denoiser_jax, jnp.asarray(noise), ScheduleConfig(), STEPS,
                                eta=0.7, key=key, return_trajectory=True)
    assert np.abs(np.asarray(trajectory) - ref).max() <= 1e-5
    deterministic = ddim_sample(toy_denoiser_jax, jnp.asarray(noise), ScheduleConfig(), STEPS)
    assert np.abs(np.asarray(deterministic) - ref[-1]).max() > 1e-2  # the noise did something


EULER_CASES = [
    # EulerDiscreteScheduler's default spacing ("linspace"), which SD-1.5's config keeps.
    ("epsilon", "linspace", 0, False),
    ("epsilon", "linspace", 0, True),
    ("v_prediction", "leading", 1, False),
    ("v_prediction", "trailing", 0, True),
    ("sample", "linspace", 0, False),
]


@pytest.mark.parametrize("prediction_type,spacing,offset,karras", EULER_CASES)
def test_euler_trajectory_matches_diffusers(prediction_type, spacing, offset, karras):
    ref_sched = EulerDiscreteScheduler(**SD15, prediction_type=prediction_type,
                                       timestep_spacing=spacing, steps_offset=offset,
                                       use_karras_sigmas=karras)
    noise = _noise(2)
    ref = _diffusers_trajectory(ref_sched, noise)

    config = ScheduleConfig(prediction_type=prediction_type)
    timesteps, sigmas, init_sigma = euler_sigmas(config, STEPS, timestep_spacing=spacing,
                                                 steps_offset=offset, use_karras_sigmas=karras)
    ref_sigmas = ref_sched.sigmas.numpy()
    assert np.abs(sigmas / np.maximum(ref_sigmas, 1e-12) - 1)[:-1].max() <= 1e-6 and sigmas[-1] == 0
    assert abs(init_sigma / float(ref_sched.init_noise_sigma) - 1) <= 1e-6
    # Karras timesteps are fractional: one float32 ulp near t=999 is 6.1e-5.
    assert np.abs(timesteps - ref_sched.timesteps.numpy()).max() <= 1.5e-4

    final, trajectory = euler_sample(toy_denoiser_jax, jnp.asarray(noise), config, STEPS,
                                     timestep_spacing=spacing, steps_offset=offset,
                                     use_karras_sigmas=karras, return_trajectory=True)
    trajectory = np.asarray(trajectory)
    assert trajectory.shape == (STEPS,) + noise.shape
    assert np.array_equal(np.asarray(final), trajectory[-1])
    # Euler samples live at scale sqrt(sigma^2 + 1) (up to ~50 here, where a float32 ulp is
    # 3.8e-6): compare them in the unit-variance space the model sees, and relatively.
    scale = np.sqrt(ref_sigmas[1:].astype(np.float64) ** 2 + 1)[:, None, None, None, None]
    assert np.abs((trajectory - ref) / scale).max() <= 1e-5
    assert (np.abs(trajectory - ref) / np.maximum(1.0, np.abs(ref))).max() <= 1e-5
    assert np.abs(trajectory[-1] - ref[-1]).max() <= 1e-5  # the final sample, sigma 0
    assert np.abs(ref[-1] - noise).max() > 1.0


def test_sampler_loop_is_traced_once():
    """One jitted function: the denoiser is traced once for all 25 steps (a scan body)."""
    calls = []

    def counting(x, t):
        calls.append(x.shape)
        return toy_denoiser_jax(x, t)

    noise = jnp.asarray(_noise(shape=(3, 4, 4, 4)))
    ddim_sample(counting, noise, ScheduleConfig(), STEPS)
    euler_sample(counting, noise, ScheduleConfig(), STEPS)
    assert calls == [(3, 4, 4, 4), (3, 4, 4, 4)]


def test_bad_sampler_arguments_raise_clear_errors():
    noise = jnp.asarray(_noise(shape=(1, 2, 2, 4)))
    with pytest.raises(ValueError, match="key"):
        ddim_sample(toy_denoiser_jax, noise, ScheduleConfig(), STEPS, eta=1.0)
    with pytest.raises(ValueError, match="num_steps"):
        ddim_sample(toy_denoiser_jax, noise, ScheduleConfig(), 1001)
    with pytest.raises(ValueError, match="timestep_spacing"):
        euler_sample(toy_denoiser_jax, noise, ScheduleConfig(), STEPS, timestep_spacing="karras")
    with pytest.raises(ValueError, match="steps_offset"):
        ddim_timesteps(ScheduleConfig(), 1000, "leading", steps_offset=1)
