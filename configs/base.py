"""Every key of a training config, with SD-1.5-scale defaults.

Other config files start from ``get_config()`` and change values; they never add keys (the
returned ConfigDict is locked: a new key is an error). ``mimaface_jax.config_validation``
checks the values for consistency before anything is built or compiled.

Sections:
  stage        "image" (stage 1, F = 1, no motion modules) or "video" (stage 2).
  model        the MIMAFace model (U-Net, MIA, CLIP, ICA, diffusion loss settings).
  autoencoder  "vae" (SD KL-VAE, frozen) or "space_to_depth" (the SynthFaces demo's
               fixed invertible transform).
  data         where batches come from ("synth": in-memory SynthFaces clips built in the
               workdir or data_dir; "tfds": the grain pipeline over TFDS ArrayRecord sets).
  mesh, sharding_rules, precision, optimizer, ema, train, checkpoint, init, sample, debug.
"""

from __future__ import annotations

import ml_collections

SD15_RESOLUTION = 512


def _unet() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        layers_per_block=2,
        num_attention_heads=8,
        cross_attention_dim=768,
        transformer_layers_per_block=1,
        use_linear_projection=False,
        norm_num_groups=32,
        use_motion_module=True,
        motion_num_attention_heads=8,
        motion_max_seq_length=32,
        motion_transformer_layers=1,
        motion_norm_num_groups=32,
        remat_policy="none",
        remat_scope="block",               # checkpoint every U-Net "block" or every "layer" in it
        # attention kernel: "xla" (plain), "chunked" (memory-efficient, any backend),
        # "splash" (TPU), "cudnn" (GPU, bf16/fp16) or "auto" (splash on TPU, cuDNN on GPU in
        # half precision, chunked elsewhere); see mimaface_jax/models/attention.py
        attention_implementation="xla",
        attention_min_seq_len=256,         # shorter query or key sequences take the plain path
        attention_chunk_q=1024,            # "chunked": query / key-value tile sizes
        attention_chunk_kv=1024,
        attention_splash_block_q=512,      # "splash": block sizes (multiples of 128)
        attention_splash_block_kv=1024,
        attention_splash_block_kv_compute=512,
    ))


def _mia() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        num_heads=8,
        motion_layout="facemesh",          # "facemesh" (real data) or "synth-v1" (SynthFaces)
        num_expression=64,                 # expression PCA size of the facemesh layout
        motion_hidden=256,
        identity_dim=512,
        identity_hidden=768,
        num_identity_tokens=4,
        mapper_layers=3,
        mapper_mlp_ratio=4,
        motion_modulation=True,
        identity_modulation=True,
        context="per_frame",
    ))


def _clip() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        enabled=True,                      # False: batches carry cached CLIP tokens
        image_size=224,
        patch_size=14,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        num_tokens=257,                    # used when enabled=False (cached tokens)
        trainable=False,
    ))


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "base"
    c.stage = "video"
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.unet = _unet()
    c.model.mia = _mia()
    c.model.clip = _clip()
    c.model.ica = ml_collections.ConfigDict(dict(
        k_max=4, mode="isolated", p_no_context=0.5, context_noise_std=0.1, generation_k=3))
    c.model.num_frames = 16
    c.model.prediction_type = "epsilon"
    c.model.min_snr_gamma = 5.0
    c.model.cond_dropout = 0.1
    # training timesteps t ~ U[lo, hi) of the schedule's 1000 (default: all); a sampler that only
    # ever evaluates some timesteps may train on those (configs/tiny.py: its one-step sampler)
    c.model.train_timesteps = (0, 1000)

    c.autoencoder = ml_collections.ConfigDict(dict(
        kind="vae",                        # "vae" | "space_to_depth"
        space_to_depth_factor=4,
        latent_channels=4,                 # of the VAE
        vae_block_out_channels=(128, 256, 512, 512),
        vae_layers_per_block=2,
        vae_norm_num_groups=32,
        scaling_factor=0.18215,
        # training latents of a KL-VAE: "sample" (a draw from the posterior, as SD was trained)
        # or "mean" (its mean: deterministic). Generation always encodes with the mean.
        latents="sample",
    ))

    c.data = ml_collections.ConfigDict(dict(
        source="tfds",                     # "synth" | "tfds"
        resolution=SD15_RESOLUTION,
        global_batch_size=32,
        # synth (in-memory SynthFaces clips, rendered to .npz by the trainer on first use)
        synth_dir="",                      # "" = <workdir>/synth_faces
        synth_train_identities=24,
        synth_validation_identities=4,
        synth_videos_per_identity=2,
        synth_video_frames=24,
        # tfds (grain over ArrayRecord): "name=weight,..." (name: a dataset folder under
        # tfds_data_dir, or name/config/version)
        tfds_data_dir="",
        mixture="voxceleb2=0.6,hdtf=0.2,celebv_hq=0.2",
        split="train",
        use_cache=False,                   # cached VAE moments + CLIP tokens (model.clip.enabled=False)
        flip_prob=0.5,                     # horizontal flips (0 with use_cache)
        num_workers=8,
    ))

    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    # (logical name, mesh axes) pairs overriding parallel.DEFAULT_RULES; e.g. (("mlp", None),)
    c.sharding_rules = ()

    c.precision = ml_collections.ConfigDict(dict(compute_dtype="bfloat16", param_dtype="float32"))

    c.optimizer = ml_collections.ConfigDict(dict(
        learning_rate=1e-5,
        warmup_steps=500,
        decay_steps=0,                     # 0 = train.num_steps
        end_learning_rate_factor=0.1,
        b1=0.9, b2=0.999, eps=1e-8,
        weight_decay=1e-2,
        grad_clip_norm=1.0,
        # regexes over parameter names ("unet.conv_in.kernel"); "" = the stage's default
        # (image: everything but a frozen CLIP; video: motion modules + unet.conv_in)
        trainable="",
    ))
    # warmup: decay of update n is min(decay, (1 + n) / (10 + n)) (training/ema.py)
    c.ema = ml_collections.ConfigDict(dict(enabled=True, decay=0.9999, warmup=True))

    c.train = ml_collections.ConfigDict(dict(
        num_steps=100_000,
        log_every=50,
        sample_every=5_000,                # 0 = sample only at the end
        profile_start_step=0,              # > 0: jax.profiler trace of steps [start, start + num)
        profile_num_steps=5,
        tensorboard=True,                  # clu's TensorBoard writer too, when TensorFlow is installed
    ))
    c.checkpoint = ml_collections.ConfigDict(dict(
        every=1_000, max_to_keep=3, keep_period=0, async_save=True))
    c.init = ml_collections.ConfigDict(dict(
        pretrained="",                     # folder written by `python -m mimaface_jax.convert all`
        stage1_checkpoint="",              # stage 2: a stage-1 workdir (or its checkpoints dir)
        stage1_weights="ema",              # stage 2 starts from stage 1's "ema" weights (those its
                                           # samples showed; raw ones if it kept no EMA) or "raw"
    ))
    c.sample = ml_collections.ConfigDict(dict(
        sampler="euler",                   # "euler" (the method's: 25 steps, CFG 5) | "ddim"
        num_steps=25, guidance_scale=5.0, num_clips=2, num_videos=2, fps=25.0,
        split="validation",                # held-out split of the samples (training/sample_tasks.py)
        clip_denoised=0.0,                 # > 0: clip DDIM's predicted x0 to [-v, v] (pixel-like latents)
        use_ema=True,                      # sample with the EMA parameters (else the raw ones)
        timestep_spacing="leading",        # timesteps of both samplers: "leading" (SD) | "trailing" | "linspace"
        source_as_context=False,           # video: the first clip's ICA context is the source frame
    ))
    c.debug = ml_collections.ConfigDict(dict(
        nan_at_step=-1,                    # >= 0: the loss becomes NaN at that step (fault test)
        sleep_per_step=0.0,                # seconds; slows the loop (signal / kill tests)
        pause_after_step=-1,               # >= 1: after that step (and its checkpoint) wait for a
                                           # stop signal (kill / SIGTERM tests: a known step)
        raise_after_step=-1,               # >= 1: raise right after that step's save (crash test)
    ))
    c.lock()
    return c
