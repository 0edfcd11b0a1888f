"""Stage 1 at SD-1.5 scale: images (F = 1), U-Net + MIA + CLIP trained (the method's stage 1).

512x512 frames, KL-VAE latents (64x64x4), CLIP ViT-L/14, a mixture of VoxCeleb2 / HDTF /
CelebV-HQ (TFDS ArrayRecord built by data_pipelines/), FSDP over all devices, bf16 compute,
per-block remat. Weights start from the "pretrained" checkpoint of
`python -m mimaface_jax.convert all` (set init.pretrained).
"""

from __future__ import annotations

import pathlib

from mimaface_jax.config_files import load_module


def _load_base():
    """configs/base.py, loaded by path (config files are loaded by path, not as a package)."""
    return load_module(pathlib.Path(__file__).with_name("base.py"))


base = _load_base()


def get_config():
    c = base.get_config()
    c.name = "sd15_stage1_image"
    c.stage = "image"
    c.model.unet.use_motion_module = False
    c.model.unet.remat_policy = "full"
    # one checkpoint per resnet / transformer / motion module, backward passes in order: the
    # stage-2 step's temporaries 36.1 -> 7.8 GiB per device (BENCHMARKS.md, "SD-1.5 train step")
    c.model.unet.remat_scope = "layer"
    c.model.unet.attention_implementation = "auto"  # splash on TPU, cuDNN on GPU (bf16), chunked elsewhere
    c.model.num_frames = 1
    c.model.ica.k_max = 0
    c.model.ica.generation_k = 0
    c.model.mia.motion_layout = "facemesh"
    # The method trains the CLIP tower in stage 1 (with the U-Net and MIA).
    c.model.clip.trainable = True
    c.autoencoder.kind = "vae"
    c.data.source = "tfds"
    c.data.tfds_data_dir = "~/tensorflow_datasets"
    c.data.resolution = 512
    c.data.global_batch_size = 64
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1
    c.precision.compute_dtype = "bfloat16"
    c.optimizer.learning_rate = 1e-5
    c.optimizer.warmup_steps = 1000
    c.train.num_steps = 60_000
    c.init.pretrained = "checkpoints/pretrained_sd15"
    # the method's inference settings for the periodic samples
    c.sample.sampler = "euler"
    c.sample.num_steps = 25
    c.sample.guidance_scale = 5.0
    return c
