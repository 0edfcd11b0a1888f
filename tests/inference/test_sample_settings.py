"""The sampler is a config choice: ``sample.sampler`` (and steps, guidance) reach the generator
the trainer's samples use; the SD-1.5 configs carry the method's inference settings."""

import pathlib

import numpy as np
import pytest

from mimaface_jax.config_files import load_config
from mimaface_jax.config_validation import ConfigError, validate
from mimaface_jax.inference.generator import GenerationSettings

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["sd15_stage1_image", "sd15_stage2_video"])
def test_sd15_configs_sample_with_euler_25_steps_cfg_5(name):
    s = GenerationSettings.from_config(load_config(CONFIGS / f"{name}.py"))
    assert (s.sampler, s.num_steps, s.guidance_scale) == ("euler", 25, 5.0)


def test_tiny_demo_samples_with_one_ddim_step_and_the_choice_is_validated():
    c = load_config(CONFIGS / "tiny.py", "video")
    s = GenerationSettings.from_config(c)
    assert (s.sampler, s.num_steps) == ("ddim", 1)
    c.sample.sampler = "heun"
    with pytest.raises(ConfigError, match="sample.sampler='heun'"):
        validate(c, num_devices=8)


def test_the_generator_samples_with_the_configured_sampler(tiny_video):
    """Euler and DDIM (same steps, seed and inputs) give different frames: the setting reaches
    the sampler the generator runs."""
    f = tiny_video.config.model.num_frames
    rng = np.random.default_rng(2)
    r, d = tiny_video.config.data.resolution, tiny_video.model.config.mia.motion_layout.size
    source = rng.integers(0, 256, (r, r, 3), dtype=np.uint8)
    identity = rng.standard_normal(tiny_video.config.model.mia.identity_dim).astype(np.float32)
    motion = rng.standard_normal((f, d)).astype(np.float32)
    condition = rng.integers(0, 256, (f, r, r, 3), dtype=np.uint8)
    videos = {}
    for sampler in ("euler", "ddim"):
        gen = tiny_video.generator(sampler=sampler, num_steps=1, clip_denoised=0.0, guidance_scale=1.0)
        assert gen.settings.sampler == sampler
        videos[sampler] = gen.video(source, identity, motion, lambda a, b: condition[a:b],
                                    source_motion=motion[0], source_condition=condition[0])
    assert np.abs(videos["euler"].astype(int) - videos["ddim"]).mean() > 1.0
