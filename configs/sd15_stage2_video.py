"""Stage 2 at SD-1.5 scale: 16-frame videos with ICA (k_max = 4); motion modules + conv_in, MIA and the
last two CLIP layers train.

Everything not set here is stage 1's (configs/sd15_stage1_image.py). Starts from a stage-1
workdir (init.stage1_checkpoint) for everything but the motion modules, which come from the
pretrained checkpoint (AnimateDiff-v3 motion modules, init.pretrained).
"""

from __future__ import annotations

import pathlib

from mimaface_jax.config_files import load_module


def _load_stage1():
    """configs/sd15_stage1_image.py, loaded by path (config files are not a package)."""
    return load_module(pathlib.Path(__file__).with_name("sd15_stage1_image.py"))


stage1 = _load_stage1()


def get_config():
    c = stage1.get_config()
    c.name = "sd15_stage2_video"
    c.stage = "video"
    c.model.unet.use_motion_module = True
    c.model.num_frames = 16
    c.model.ica.k_max = 4
    c.model.ica.generation_k = 3
    c.data.global_batch_size = 8
    c.optimizer.warmup_steps = 500
    c.train.num_steps = 30_000
    c.init.stage1_checkpoint = "workdirs/sd15_stage1_image"
    # The method's stage 2 trains the motion modules (here with unet.conv_in, whose extra input
    # channels carry ICA's context latents), MIA and the last CLIP layers; the rest of the
    # U-Net and CLIP stay as stage 1 left them (model.clip.trainable=True, inherited, lets the
    # gradient reach the last CLIP layers).
    c.optimizer.trainable = r"^unet\.(.*\.)?motion_modules\.|^unet\.conv_in\.|^mia\.|^clip\.layers\.(22|23)\."
    return c
