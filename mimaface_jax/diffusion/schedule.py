"""DDPM noise schedule for training: betas, alphas_cumprod, forward noising, targets, SNR.

Conventions (the same as diffusers' ``DDPMScheduler``):
- ``alphas_cumprod[t] = prod_{s<=t} (1 - beta_s)`` for integer ``t in [0, T)``;
  ``x_t = sqrt(a_t) * x_0 + sqrt(1 - a_t) * noise``.
- "epsilon" prediction: the model predicts ``noise``.
- "v_prediction" (Salimans & Ho 2022): the model predicts
  ``v = sqrt(a_t) * noise - sqrt(1 - a_t) * x_0``.
- "sample": the model predicts ``x_0`` itself (diffusers' name). A one-step sampler's output
  is then the model's output: no part of the initial noise leaks through, as it does with
  epsilon / v at the last training step, whose SNR is not zero.
- ``SNR(t) = a_t / (1 - a_t)``.

Numerics: the tables are built on the host in numpy so that they round exactly like diffusers'
float32 tables: betas are float32 (correctly rounded from a float64 linspace), ``1 - beta`` is
taken in float32, and the cumulative product is accumulated in float64 and stored as float32
(torch's CPU ``cumprod`` accumulates float32 in double). Derived tables (square roots, SNR) are
computed from those float32 values.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

BETA_SCHEDULES = ("scaled_linear", "linear")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Hashable description of a DDPM schedule (usable as a static jit argument).

    Defaults are Stable Diffusion 1.5's: 1000 steps, scaled-linear betas 0.00085..0.012.
    """

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    prediction_type: str = "epsilon"

    def __post_init__(self):
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"ScheduleConfig.beta_schedule={self.beta_schedule!r} is not supported; "
                f"use one of {BETA_SCHEDULES}."
            )
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"ScheduleConfig.prediction_type={self.prediction_type!r} is not supported; "
                f"use one of {PREDICTION_TYPES}."
            )
        if self.num_train_timesteps < 2:
            raise ValueError(
                f"ScheduleConfig.num_train_timesteps={self.num_train_timesteps} must be >= 2."
            )
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError(
                f"ScheduleConfig needs 0 < beta_start < beta_end < 1, got "
                f"beta_start={self.beta_start}, beta_end={self.beta_end}."
            )


def betas_np(config: ScheduleConfig) -> np.ndarray:
    """Host-side betas, float32 (T,)."""
    n = config.num_train_timesteps
    if config.beta_schedule == "linear":
        return np.linspace(config.beta_start, config.beta_end, n, dtype=np.float64).astype(np.float32)
    # "scaled_linear": linear in sqrt(beta), then squared (latent diffusion / SD).
    root = np.linspace(config.beta_start**0.5, config.beta_end**0.5, n, dtype=np.float64)
    return np.square(root.astype(np.float32))


def alphas_cumprod_np(config: ScheduleConfig) -> np.ndarray:
    """Host-side cumulative products of (1 - beta), float32 (T,)."""
    alphas = np.float32(1.0) - betas_np(config)  # float32, as diffusers
    return np.cumprod(alphas.astype(np.float64)).astype(np.float32)


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod", "snr"],
    meta_fields=["prediction_type"],
)
@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
    """Per-timestep tables of a DDPM schedule; a pytree (arrays are leaves), so it can be
    passed through ``jax.jit``. Build with ``NoiseSchedule.create(config)``."""

    alphas_cumprod: jax.Array  # (T,) float32
    sqrt_alphas_cumprod: jax.Array  # (T,)
    sqrt_one_minus_alphas_cumprod: jax.Array  # (T,)
    snr: jax.Array  # (T,) a_t / (1 - a_t)
    prediction_type: str

    @classmethod
    def create(cls, config: ScheduleConfig = ScheduleConfig()) -> "NoiseSchedule":
        a = alphas_cumprod_np(config)
        one_minus_a = np.float32(1.0) - a
        snr = (a.astype(np.float64) / one_minus_a.astype(np.float64)).astype(np.float32)
        return cls(
            alphas_cumprod=jnp.asarray(a),
            sqrt_alphas_cumprod=jnp.asarray(np.sqrt(a)),
            sqrt_one_minus_alphas_cumprod=jnp.asarray(np.sqrt(one_minus_a)),
            snr=jnp.asarray(snr),
            prediction_type=config.prediction_type,
        )

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.shape[0]


def per_sample(table: jax.Array, t: jax.Array, ndim: int) -> jax.Array:
    """Gathers ``table[t]`` and reshapes it to broadcast against a rank-``ndim`` batch.

    table: (T,); t: (N,) integer timesteps (one per sample, e.g. N = B or B*F) or a scalar.
    Returns (N, 1, ..., 1) with ``ndim`` dimensions in all (or a scalar for scalar t).
    """
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise TypeError(f"timesteps must be integers to index the schedule, got dtype {t.dtype}.")
    if t.ndim == 0:
        return table[t]
    if t.ndim != 1:
        raise ValueError(f"timesteps must have shape (N,) or (), got shape {t.shape}.")
    return table[t].reshape(t.shape + (1,) * (ndim - 1))


def _check_batch(x: jax.Array, t: jax.Array, what: str):
    t = jnp.asarray(t)
    if t.ndim == 1 and (x.ndim == 0 or x.shape[0] != t.shape[0]):
        raise ValueError(
            f"{what}: timesteps of shape {t.shape} need one per sample, but the batch has shape "
            f"{x.shape}; give t the leading size of x (frames folded into the batch: B*F)."
        )


def add_noise(schedule: NoiseSchedule, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """Forward process q(x_t | x_0). x0, noise: (N, ...); t: (N,) int. Returns (N, ...)."""
    _check_batch(x0, t, "add_noise")
    sa = per_sample(schedule.sqrt_alphas_cumprod, t, x0.ndim).astype(x0.dtype)
    s1 = per_sample(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim).astype(x0.dtype)
    return sa * x0 + s1 * noise


def get_velocity(schedule: NoiseSchedule, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """v target: sqrt(a_t) * noise - sqrt(1 - a_t) * x0. Shapes as ``add_noise``."""
    _check_batch(x0, t, "get_velocity")
    sa = per_sample(schedule.sqrt_alphas_cumprod, t, x0.ndim).astype(x0.dtype)
    s1 = per_sample(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim).astype(x0.dtype)
    return sa * noise - s1 * x0


def training_target(schedule: NoiseSchedule, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """What the model should predict for its ``prediction_type``: noise, v or x0."""
    if schedule.prediction_type == "epsilon":
        return noise
    if schedule.prediction_type == "sample":
        return x0
    return get_velocity(schedule, x0, noise, t)


def snr(schedule: NoiseSchedule, t: jax.Array) -> jax.Array:
    """Signal-to-noise ratio a_t / (1 - a_t) of each timestep. t: (N,) -> (N,)."""
    return per_sample(schedule.snr, t, 1)


def min_snr_weights(schedule: NoiseSchedule, t: jax.Array, gamma: float = 5.0) -> jax.Array:
    """Min-SNR-gamma loss weights (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
    Weighting Strategy"), per sample. t: (N,) -> (N,).

    The paper's weight on the x0-space loss is min(SNR, gamma). Expressed on the loss of the
    model's own target, with ||x0 - x0_hat||^2 = ||eps - eps_hat||^2 / SNR and
    ||x0 - x0_hat||^2 = ||v - v_hat||^2 / (SNR + 1):
    - epsilon prediction: min(SNR, gamma) / SNR
    - v prediction:       min(SNR, gamma) / (SNR + 1)
    - x0 ("sample"):      min(SNR, gamma)
    (the same convention as diffusers' ``train_text_to_image.py --snr_gamma``).
    """
    if gamma <= 0:
        raise ValueError(f"min-SNR gamma must be > 0, got {gamma}.")
    s = snr(schedule, t)
    clipped = jnp.minimum(s, gamma)
    if schedule.prediction_type == "epsilon":
        return clipped / s
    if schedule.prediction_type == "sample":
        return clipped
    return clipped / (s + 1.0)
