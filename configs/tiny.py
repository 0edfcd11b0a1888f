"""The CPU demo on SynthFaces: 64x64 frames, space-to-depth latents, a tiny U-Net / CLIP / MIA.

Two stages from one file: ``--config configs/tiny.py:image`` (stage 1, F = 1) and
``--config configs/tiny.py:video`` (stage 2: motion modules + ICA, F = 4, k_max = 2, started
from a stage-1 checkpoint given by ``--config.init.stage1_checkpoint=WORKDIR``).

``:image_min`` / ``:video_min``: the same stages with the smallest model that still has every
part (one U-Net level, one CLIP / mapper layer) at 32x32: the training-mechanics tests
(resume, faults, multi-host), where compile time matters and quality does not.

Training-time ablations (``scripts/ablate.sh``, docs/RESULTS.md), same budget and data:
``:video_no_ica`` (stage 2 without inter-clip context: ``ica.k_max = 0``, every clip generated
on its own, no source anchor) and ``:image_no_mia`` / ``:video_no_mia`` (both stages without
MIA's motion and identity modulation: the context is the mapped CLIP tokens of the source
alone; motion reaches the U-Net only through the condition renders).
"""

from __future__ import annotations

import pathlib

from mimaface_jax.config_files import load_module


def _load_base():
    """configs/base.py, loaded by path (config files are loaded by path, not as a package)."""
    return load_module(pathlib.Path(__file__).with_name("base.py"))


base = _load_base()


VARIANTS = ("image", "video", "image_min", "video_min", "video_no_ica", "image_no_mia", "video_no_mia")


def get_config(variant: str = "image"):
    if variant not in VARIANTS:
        raise ValueError(f"configs/tiny.py: the argument must be one of {VARIANTS}, got {variant!r} "
                         "(e.g. --config configs/tiny.py:image or configs/tiny.py:video)")
    stage, _, ablation = variant.partition("_")
    minimal = ablation == "min"
    c = base.get_config()
    c.name = f"tiny_{variant}"
    c.stage = stage

    u = c.model.unet
    # The first width must exceed the 48 latent channels (space-to-depth 4 of RGB): with 32 the
    # U-Net cannot pass the noisy input through and the loss floors at ~0.5 (measured).
    u.block_out_channels = (64, 64)
    u.down_block_types = ("CrossAttnDownBlock2D", "DownBlock2D")
    u.up_block_types = ("UpBlock2D", "CrossAttnUpBlock2D")
    u.layers_per_block = 1
    u.num_attention_heads = 2
    u.cross_attention_dim = 64
    u.norm_num_groups = 8
    u.motion_num_attention_heads = 2
    u.motion_norm_num_groups = 8
    u.motion_max_seq_length = 16
    u.use_motion_module = stage == "video"

    m = c.model.mia
    m.num_heads = 2
    m.motion_layout = "synth-v1"
    m.motion_hidden = 32
    m.identity_dim = 60              # SynthFaces identity_code
    m.identity_hidden = 64
    m.num_identity_tokens = 2
    m.mapper_layers = 1
    m.mapper_mlp_ratio = 2

    cl = c.model.clip
    cl.image_size = 32
    cl.patch_size = 8
    cl.hidden_size = 64
    cl.num_hidden_layers = 2
    cl.num_attention_heads = 2
    cl.intermediate_size = 128
    cl.num_tokens = 17
    cl.trainable = True

    if stage == "image":
        c.model.num_frames = 1
        c.model.ica.k_max = 0
        c.model.ica.generation_k = 0
    else:
        c.model.num_frames = 4
        c.model.ica.k_max = 2
        c.model.ica.generation_k = 2
        # Generation always has context frames (the source, then the previous clip): train
        # mostly with them (measured: 0.5 -> 0.2 with lr 1e-3 -> 2e-3, +0.3 dB at 150 steps).
        c.model.ica.p_no_context = 0.2

    # x0 ("sample") prediction with uniform weights. A minutes-long run is sampled with ONE
    # DDIM step from t = 999 (below), i.e. by the model's x0 estimate at the highest noise:
    # min-SNR-5 would weight that end by SNR ~ 0.005, epsilon-prediction divides its errors by
    # sqrt(alpha_bar) ~ 0.07 there, and v-prediction leaks 0.07 x the initial noise into x0
    # unless the network reproduces it exactly. Measured on the demo's data (600 + 180 steps,
    # 6 held-out pairs, PSNR in the motion mask, copying the source: 15.40 dB): v-prediction
    # 15.14 / 16.63 dB after stage 1 / 2, x0-prediction 15.86 / 17.55 dB. Earlier, at 400
    # image steps: epsilon + min-SNR with 20 leading DDIM steps gave pure noise (6.6 dB).
    c.model.prediction_type = "sample"
    c.model.min_snr_gamma = 0.0
    # ... and trained only where that sampler evaluates it: t in [990, 1000). Measured (1000
    # image steps, 4 held-out pairs, PSNR in the motion mask): all timesteps 17.34 dB, t >= 900
    # 19.57 dB, t >= 990 19.64 dB (docs/design_notes.md). The network is then a one-step
    # regressor of the frame from its conditions: honest for this sampler, not for many steps.
    c.model.train_timesteps = (990, 1000)
    # The demo samples without CFG (guidance 1): dropped conditions would only cost it steps.
    c.model.cond_dropout = 0.0

    c.autoencoder.kind = "space_to_depth"
    c.autoencoder.space_to_depth_factor = 4
    c.autoencoder.scaling_factor = 1.0

    c.data.source = "synth"
    c.data.resolution = 64
    # Many people with one short video each: what the model must learn is to render a person it
    # has not seen (held-out pairs), so identities matter more than frames (measured: 24 people
    # x 2 videos x 24 frames lose to copying the source by 3.6 dB; 480 x 1 x 12 beat it).
    c.data.synth_train_identities = 480
    c.data.synth_validation_identities = 8
    c.data.synth_videos_per_identity = 1
    c.data.synth_video_frames = 12
    c.data.global_batch_size = 8 if stage == "image" else 4
    c.data.num_workers = 0

    c.mesh.fsdp = -1
    c.precision.compute_dtype = "float32"

    # stage 2 at 2e-3 lost 0.5 dB against its stage-1 start (t >= 900), at 5e-4 0.25 dB (t >= 990)
    c.optimizer.learning_rate = 2e-3 if stage == "image" else 5e-4
    c.optimizer.warmup_steps = 20
    c.optimizer.weight_decay = 0.0
    c.ema.decay = 0.99

    # scripts/demo.sh: the data build and both stages in ~12 minutes on 2 CPU cores
    # (BENCHMARKS.md). Most of it goes to stage 1: at this scale stage 2 adds no PSNR (its
    # motion modules start as the identity; docs/design_notes.md), so it gets 100 steps.
    c.train.num_steps = 1600 if stage == "image" else 100
    c.train.log_every = 50 if stage == "image" else 20
    c.train.sample_every = 0           # 0 = only at the end
    c.checkpoint.every = 800 if stage == "image" else 50
    c.checkpoint.max_to_keep = 2
    # A minutes-long run is far from a converged sampler: one DDIM step from t = 999 (trailing
    # spacing), i.e. the model's x0 estimate, with x0 clipped to the pixel range, no CFG.
    c.sample.sampler = "ddim"
    c.sample.num_steps = 1
    c.sample.timestep_spacing = "trailing"
    c.sample.clip_denoised = 1.0
    c.sample.guidance_scale = 1.0
    c.sample.source_as_context = stage == "video"
    c.sample.num_clips = 2
    c.sample.num_videos = 4
    if minimal:
        _minimal(c)
    if ablation == "no_ica":
        c.model.ica.k_max = 0
        c.model.ica.generation_k = 0
        c.sample.source_as_context = False
    if ablation == "no_mia":
        c.model.mia.motion_modulation = False
        c.model.mia.identity_modulation = False
    return c


def _minimal(c) -> None:
    """The smallest model with every part: fast to compile (the mechanics tests)."""
    u = c.model.unet
    u.block_out_channels = (16,)
    u.down_block_types = ("CrossAttnDownBlock2D",)
    u.up_block_types = ("CrossAttnUpBlock2D",)
    u.num_attention_heads = 1
    u.cross_attention_dim = 16
    u.norm_num_groups = 4
    u.motion_num_attention_heads = 1
    u.motion_norm_num_groups = 4
    m = c.model.mia
    m.num_heads = 1
    m.motion_hidden = 8
    m.identity_hidden = 8
    m.num_identity_tokens = 1
    m.mapper_mlp_ratio = 1
    cl = c.model.clip
    cl.image_size = 16
    cl.hidden_size = 16
    cl.num_hidden_layers = 1
    cl.num_attention_heads = 1
    cl.intermediate_size = 16
    cl.num_tokens = 5
    c.data.resolution = 32
    c.data.global_batch_size = 4
    c.data.synth_train_identities = 4
    c.data.synth_validation_identities = 2
    c.data.synth_videos_per_identity = 1
    c.data.synth_video_frames = 8
    c.optimizer.warmup_steps = 2
    c.train.num_steps = 12
    c.train.log_every = 1
    c.checkpoint.every = 4
    c.sample.num_videos = 0
