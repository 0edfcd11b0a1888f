"""Stage 2 at SD-1.5 scale: 16-frame videos with ICA (k_max = 4); motion modules + conv_in train.

Everything not set here is stage 1's (configs/sd15_stage1_image.py). Starts from a stage-1
workdir (init.stage1_checkpoint) for everything but the motion modules, which come from the
pretrained checkpoint (AnimateDiff-v3 motion modules, init.pretrained).
"""

from __future__ import annotations

import importlib.util
import pathlib


def _load_stage1():
    """configs/sd15_stage1_image.py, loaded by path (config files are not a package)."""
    path = pathlib.Path(__file__).with_name("sd15_stage1_image.py")
    spec = importlib.util.spec_from_file_location("mimaface_configs_sd15_stage1", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    return c
