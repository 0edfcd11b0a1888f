"""Stage 2 at SD-1.5 scale: 16-frame videos with ICA (k_max = 4); motion modules + conv_in train.

Starts from a stage-1 workdir (init.stage1_checkpoint) for everything but the motion modules,
which come from the pretrained checkpoint (AnimateDiff-v3 motion modules, init.pretrained).
"""

from __future__ import annotations

import importlib.util
import pathlib


def _load_base():
    """configs/base.py, loaded by path (config files are loaded by path, not as a package)."""
    spec = importlib.util.spec_from_file_location("mimaface_configs_base", pathlib.Path(__file__).with_name("base.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


base = _load_base()


def get_config():
    c = base.get_config()
    c.name = "sd15_stage2_video"
    c.stage = "video"
    c.model.unet.use_motion_module = True
    c.model.unet.remat_policy = "full"
    c.model.num_frames = 16
    c.model.ica.k_max = 4
    c.model.ica.generation_k = 3
    c.model.mia.motion_layout = "facemesh"
    c.autoencoder.kind = "vae"
    c.data.source = "tfds"
    c.data.tfds_data_dir = "~/tensorflow_datasets"
    c.data.resolution = 512
    c.data.global_batch_size = 8
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1
    c.precision.compute_dtype = "bfloat16"
    c.optimizer.learning_rate = 1e-5
    c.optimizer.warmup_steps = 500
    c.train.num_steps = 30_000
    c.init.pretrained = "checkpoints/pretrained_sd15"
    c.init.stage1_checkpoint = "workdirs/sd15_stage1_image"
    return c
