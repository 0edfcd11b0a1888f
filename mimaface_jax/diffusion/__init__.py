"""diffusion: DDPM schedule (training), DDIM / Euler samplers, classifier-free guidance."""

from mimaface_jax.diffusion.guidance import cfg_denoise, combine_guidance, guided_denoise_fn
from mimaface_jax.diffusion.samplers import ddim_sample, euler_sample
from mimaface_jax.diffusion.schedule import (
    NoiseSchedule,
    ScheduleConfig,
    add_noise,
    get_velocity,
    min_snr_weights,
    snr,
    training_target,
)

__all__ = [
    "NoiseSchedule", "ScheduleConfig", "add_noise", "get_velocity", "training_target", "snr",
    "min_snr_weights", "ddim_sample", "euler_sample", "cfg_denoise", "combine_guidance",
    "guided_denoise_fn",
]
