"""DDIM and Euler samplers; each whole sampling loop is one jitted function (``lax.scan``).

Both take ``denoise_fn(x, t) -> model output`` (epsilon, v or x0, per ``config.prediction_type``)
with x: (B, ...) and t: (B,) (int32 for DDIM, float32 for Euler), and ``noise`` of unit
variance, shape (B, ...). Conditioning (context, motion, CFG) is closed over by denoise_fn;
see ``guidance.guided_denoise_fn``. ``denoise_fn`` and the schedule settings are static jit
arguments: a new denoise_fn object retraces, so for repeated sampling wrap the call in your
own ``jax.jit`` that takes the parameters/conditioning as arguments, e.g.

    @jax.jit
    def generate(params, noise, context):
        fn = lambda x, t: unet_apply(params, x, t, context)
        return ddim_sample(fn, noise, config, num_steps=25)

The timestep grids, sigmas and per-step coefficients are computed on the host in numpy with the
same float32/float64 rounding as diffusers' ``DDIMScheduler`` / ``EulerDiscreteScheduler``, so
that trajectories agree step by step. Defaults follow Stable Diffusion 1.5's scheduler config
loaded into each class: DDIM "leading" spacing with steps_offset=1, set_alpha_to_one=False,
no sample clipping; Euler "linspace" spacing (EulerDiscreteScheduler's default), linear sigma
interpolation, final sigma 0, no churn.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mimaface_jax.diffusion.schedule import ScheduleConfig, alphas_cumprod_np

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def _check_steps(config: ScheduleConfig, num_steps: int, spacing: str):
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"timestep_spacing={spacing!r} is not supported; use one of {TIMESTEP_SPACINGS}.")
    if not 1 <= num_steps <= config.num_train_timesteps:
        raise ValueError(
            f"num_steps={num_steps} must be in [1, {config.num_train_timesteps}] "
            "(the number of training timesteps)."
        )


def _timestep_grid(config: ScheduleConfig, num_steps: int, spacing: str, steps_offset: int, dtype):
    """Descending inference timesteps (N,), diffusers' spacing rules (arXiv 2305.08891, table 2)."""
    n_train = config.num_train_timesteps
    if spacing == "leading":
        stride = n_train // num_steps
        grid = (np.arange(num_steps) * stride).round()[::-1].astype(dtype) + steps_offset
    elif spacing == "trailing":
        grid = np.round(np.arange(n_train, 0, -n_train / num_steps)).astype(dtype) - 1
    elif dtype == np.int64:  # linspace, rounded to integers (DDIM)
        grid = np.linspace(0, n_train - 1, num_steps).round()[::-1].astype(np.int64)
    else:  # linspace, fractional (Euler)
        grid = np.linspace(0, n_train - 1, num_steps, dtype=np.float32)[::-1].copy()
    if grid.max() >= n_train:
        raise ValueError(
            f"timestep {int(grid.max())} (spacing {spacing!r}, steps_offset={steps_offset}) is out of "
            f"range for {n_train} training timesteps; lower steps_offset."
        )
    return grid


# --------------------------------------------------------------------------------------- DDIM


def ddim_timesteps(config: ScheduleConfig, num_steps: int, timestep_spacing: str = "leading",
                   steps_offset: int = 1) -> np.ndarray:
    """Integer DDIM timesteps, descending, int64 (N,)."""
    _check_steps(config, num_steps, timestep_spacing)
    return _timestep_grid(config, num_steps, timestep_spacing, steps_offset, np.int64)


def ddim_coefficients(config: ScheduleConfig, num_steps: int, *, eta: float = 0.0,
                      timestep_spacing: str = "leading", steps_offset: int = 1,
                      set_alpha_to_one: bool = False) -> dict[str, np.ndarray]:
    """Per-step float32 scalars of the DDIM update (each (N,)), computed on the host.

    The step from t goes to ``t - T // N`` (diffusers' rule; for "leading" and for "trailing"
    with N dividing T it is the next grid timestep). Below 0 the "previous" alpha is 1
    (set_alpha_to_one) or alphas_cumprod[0] (SD-1.5).
    """
    a = alphas_cumprod_np(config)
    t = ddim_timesteps(config, num_steps, timestep_spacing, steps_offset)
    t_prev = t - config.num_train_timesteps // num_steps
    final = np.float32(1.0) if set_alpha_to_one else a[0]
    a_t = a[t]
    a_prev = np.where(t_prev >= 0, a[np.maximum(t_prev, 0)], final).astype(np.float32)
    one = np.float32(1.0)
    b_t, b_prev = one - a_t, one - a_prev
    variance = (b_prev / b_t) * (one - a_t / a_prev)
    std = np.float32(eta) * np.sqrt(variance)
    return {
        "timesteps": t.astype(np.int32),
        "sqrt_a_t": np.sqrt(a_t),
        "sqrt_b_t": np.sqrt(b_t),
        "sqrt_a_prev": np.sqrt(a_prev),
        "direction": np.sqrt(one - a_prev - std * std),
        "std": std,
    }


def step_noise(key: jax.Array, step: jax.Array, shape, dtype) -> jax.Array:
    """The fresh Gaussian noise used by stochastic DDIM (eta > 0) at loop step ``step``."""
    return jax.random.normal(jax.random.fold_in(key, step), shape, dtype)


@partial(jax.jit, static_argnames=("denoise_fn", "config", "num_steps", "eta", "timestep_spacing",
                                   "steps_offset", "set_alpha_to_one", "return_trajectory"))
def ddim_sample(denoise_fn: DenoiseFn, noise: jax.Array, config: ScheduleConfig, num_steps: int,
                *, eta: float = 0.0, key: jax.Array | None = None, timestep_spacing: str = "leading",
                steps_offset: int = 1, set_alpha_to_one: bool = False,
                return_trajectory: bool = False):
    """DDIM sampling (Song et al. 2021, eq. 12). noise: (B, ...) unit variance.

    Returns x_0 (B, ...), or (x_0, trajectory (N, B, ...)) where trajectory[i] is the sample
    after step i. eta > 0 adds ``eta * sigma_t`` fresh noise per step and needs ``key``.
    """
    if eta < 0:
        raise ValueError(f"DDIM eta must be >= 0, got {eta}.")
    if eta > 0 and key is None:
        raise ValueError("DDIM with eta > 0 is stochastic: pass key=jax.random.key(...).")
    c = ddim_coefficients(config, num_steps, eta=eta, timestep_spacing=timestep_spacing,
                          steps_offset=steps_offset, set_alpha_to_one=set_alpha_to_one)
    batch = noise.shape[0]
    kind = config.prediction_type

    def body(x, step):  # x: (B, ...)
        i, t, sa, sb, sa_prev, direction, std = step
        out = denoise_fn(x, jnp.full((batch,), t, jnp.int32))
        if kind == "v_prediction":
            x0 = sa * x - sb * out
            eps = sa * out + sb * x
        elif kind == "sample":
            x0 = out
            eps = (x - sa * out) / sb
        else:
            x0 = (x - sb * out) / sa
            eps = out
        x = sa_prev * x0 + direction * eps
        if eta > 0:
            x = x + std * step_noise(key, i, x.shape, x.dtype)
        return x, (x if return_trajectory else None)

    xs = (jnp.arange(num_steps), c["timesteps"], c["sqrt_a_t"], c["sqrt_b_t"],
          c["sqrt_a_prev"], c["direction"], c["std"])
    x, trajectory = jax.lax.scan(body, noise, xs)
    return (x, trajectory) if return_trajectory else x


# -------------------------------------------------------------------------------------- Euler


def _sigma_to_timestep(sigmas: np.ndarray, log_train_sigmas: np.ndarray) -> np.ndarray:
    """Continuous timesteps whose (log-linearly interpolated) training sigma is ``sigmas``."""
    log_sigma = np.log(np.maximum(sigmas, 1e-10))
    n = log_train_sigmas.shape[0]
    # Last training index with log sigma <= the query (log sigmas increase with t).
    low = np.clip(np.searchsorted(log_train_sigmas, log_sigma, side="right") - 1, 0, n - 2)
    high = low + 1
    lo, hi = log_train_sigmas[low], log_train_sigmas[high]
    w = np.clip((lo - log_sigma) / (lo - hi), 0, 1)
    return (1 - w) * low + w * high


def _karras_sigmas(sigma_min: float, sigma_max: float, num_steps: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al. 2022 (EDM) sigmas, eq. 5, descending (N,) float64."""
    ramp = np.linspace(0, 1, num_steps)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def euler_sigmas(config: ScheduleConfig, num_steps: int, *, timestep_spacing: str = "linspace",
                 steps_offset: int = 0, use_karras_sigmas: bool = False):
    """Host-side Euler grid: timesteps float32 (N,), sigmas float32 (N+1,) ending in 0, and
    the initial noise scale (float32) by which unit noise is multiplied."""
    _check_steps(config, num_steps, timestep_spacing)
    a = alphas_cumprod_np(config)
    train_sigmas = np.sqrt((np.float32(1.0) - a) / a)  # (T,) float32, increasing in t
    timesteps = _timestep_grid(config, num_steps, timestep_spacing, steps_offset, np.float32)
    sigmas = np.interp(timesteps, np.arange(config.num_train_timesteps), train_sigmas)
    if use_karras_sigmas:
        sigmas = _karras_sigmas(float(sigmas[-1]), float(sigmas[0]), num_steps)
        timesteps = _sigma_to_timestep(sigmas, np.log(train_sigmas))
    sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
    sigma_max = sigmas.max()
    if timestep_spacing == "leading":
        init_sigma = np.sqrt(sigma_max * sigma_max + np.float32(1.0))
    else:
        init_sigma = sigma_max
    return timesteps.astype(np.float32), sigmas, np.float32(init_sigma)


@partial(jax.jit, static_argnames=("denoise_fn", "config", "num_steps", "timestep_spacing",
                                   "steps_offset", "use_karras_sigmas", "return_trajectory"))
def euler_sample(denoise_fn: DenoiseFn, noise: jax.Array, config: ScheduleConfig, num_steps: int,
                 *, timestep_spacing: str = "linspace", steps_offset: int = 0,
                 use_karras_sigmas: bool = False, return_trajectory: bool = False):
    """Euler (Karras et al. 2022, algorithm 2 without churn) on the probability-flow ODE in
    sigma = sqrt((1 - a) / a). noise: (B, ...) unit variance; it is scaled by the initial sigma.

    The model sees x / sqrt(sigma^2 + 1) (the variance-preserving input it was trained on) and
    the continuous timestep of sigma. Returns x_0 (B, ...) or (x_0, trajectory (N, B, ...)).
    """
    timesteps, sigmas, init_sigma = euler_sigmas(
        config, num_steps, timestep_spacing=timestep_spacing, steps_offset=steps_offset,
        use_karras_sigmas=use_karras_sigmas)
    one = np.float32(1.0)
    sigma, sigma_next = sigmas[:-1], sigmas[1:]
    input_scale = np.sqrt(sigma * sigma + one)  # divide the sample by this
    batch = noise.shape[0]
    kind = config.prediction_type

    def body(x, step):  # x: (B, ...)
        t, s, scale, dt = step
        out = denoise_fn(x / scale, jnp.full((batch,), t, jnp.float32))
        if kind == "v_prediction":
            x0 = out * (-s / scale) + x / (s * s + one)
        elif kind == "sample":
            x0 = out
        else:
            x0 = x - s * out
        derivative = (x - x0) / s
        x = x + derivative * dt
        return x, (x if return_trajectory else None)

    xs = (timesteps, sigma, input_scale, sigma_next - sigma)
    x, trajectory = jax.lax.scan(body, noise * init_sigma, xs)
    return (x, trajectory) if return_trajectory else x
