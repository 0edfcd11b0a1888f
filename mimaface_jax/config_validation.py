"""Consistency checks of a training config, run before anything is built or compiled.

Unknown keys are caught earlier: ``configs/base.py`` returns a locked ConfigDict and
``--config.x.y=...`` overrides of keys it lacks are rejected by absl's config_flags. This
module checks the VALUES: every problem found is reported (all at once) with the key and why.
"""

from __future__ import annotations

import math
import os
from typing import Any

import ml_collections

from mimaface_jax.parallel.mesh import MeshConfig

STAGES = ("image", "video")
AUTOENCODERS = ("vae", "space_to_depth")
DATA_SOURCES = ("synth", "tfds")
DTYPES = ("float32", "bfloat16", "float16")
MOTION_LAYOUTS = ("facemesh", "synth-v1")
SAMPLERS = ("euler", "ddim")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def _attention_problems(u) -> list[str]:
    """``model.unet.attention_*``: the kernel name, chunk sizes and splash block sizes."""
    from mimaface_jax.models.attention import IMPLEMENTATIONS

    p = []
    if u.attention_implementation not in IMPLEMENTATIONS:
        p.append(f"model.unet.attention_implementation={u.attention_implementation!r}: expected one of "
                 f"{IMPLEMENTATIONS}")
    if u.attention_min_seq_len < 0:
        p.append(f"model.unet.attention_min_seq_len={u.attention_min_seq_len} must be >= 0")
    for key in ("attention_chunk_q", "attention_chunk_kv"):
        if u[key] < 1:
            p.append(f"model.unet.{key}={u[key]} must be >= 1")
    blocks = ("attention_splash_block_q", "attention_splash_block_kv", "attention_splash_block_kv_compute")
    for key in blocks:
        if u[key] < 128 or u[key] % 128:
            p.append(f"model.unet.{key}={u[key]} must be a positive multiple of 128 (TPU lanes)")
    if u.attention_splash_block_kv_compute > 0 and u.attention_splash_block_kv % u.attention_splash_block_kv_compute:
        p.append(f"model.unet.attention_splash_block_kv={u.attention_splash_block_kv} must be a multiple of "
                 f"attention_splash_block_kv_compute={u.attention_splash_block_kv_compute}")
    return p


class ConfigError(ValueError):
    """A config value is invalid or inconsistent; the message names the key(s)."""


def parse_mixture(text: str) -> dict[str, float]:
    """``"voxceleb2=0.6,hdtf=0.4"`` -> ``{"voxceleb2": 0.6, "hdtf": 0.4}`` (ValueError naming the key)."""
    out: dict[str, float] = {}
    for part in (t.strip() for t in str(text).split(",")):
        name, sep, weight = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(weight)
        except ValueError:
            raise ValueError(f"data.mixture={text!r}: expected 'name=weight,name=weight', bad part {part!r}") from None
    return out


def _resolved_mesh(config, num_devices: int, problems: list[str]) -> tuple[int, int, int] | None:
    try:
        return MeshConfig.from_mapping(dict(config.mesh)).resolve(num_devices)
    except ValueError as err:
        problems.append(f"mesh: {err}")
        return None


def validate(config: ml_collections.ConfigDict, num_devices: int, num_processes: int = 1) -> None:
    """Raises :class:`ConfigError` listing every inconsistent key of ``config``."""
    p: list[str] = []
    c = config
    u, ica = c.model.unet, c.model.ica
    if c.stage not in STAGES:
        p.append(f"stage={c.stage!r}: expected one of {STAGES}")
    frames, k_max = c.model.num_frames, ica.k_max
    if c.stage == "image":
        if frames != 1 or k_max != 0:
            p.append(f"model.num_frames={frames}, model.ica.k_max={k_max}: the image stage trains "
                     "single frames (num_frames=1, k_max=0)")
        if u.use_motion_module:
            p.append("model.unet.use_motion_module=True: the image stage has no motion modules")
    elif c.stage == "video":
        if not u.use_motion_module:
            p.append("model.unet.use_motion_module=False: the video stage trains motion modules")
        if frames < 2:
            p.append(f"model.num_frames={frames}: the video stage needs clips of >= 2 frames")
        if not c.init.stage1_checkpoint:
            p.append("init.stage1_checkpoint is empty: stage 2 (video) starts from a stage-1 "
                     "checkpoint; set it to the stage-1 workdir")
        elif not os.path.isdir(os.path.expanduser(c.init.stage1_checkpoint)):
            p.append(f"init.stage1_checkpoint={c.init.stage1_checkpoint!r} is not a directory")
    steps = c.model.train_timesteps
    if len(steps) != 2 or not 0 <= steps[0] < steps[1] <= 1000:
        p.append(f"model.train_timesteps={tuple(steps)}: expected (lo, hi) with 0 <= lo < hi <= 1000 "
                 "(training timesteps are drawn from [lo, hi))")
    if u.use_motion_module and frames + k_max > u.motion_max_seq_length:
        p.append(f"model.num_frames + model.ica.k_max = {frames + k_max} exceeds the motion modules' "
                 f"positional encoding length model.unet.motion_max_seq_length={u.motion_max_seq_length}")
    if k_max > 0 and not 0 <= ica.generation_k <= k_max:
        p.append(f"model.ica.generation_k={ica.generation_k} must be in [0, k_max={k_max}]")
    if c.model.mia.motion_layout not in MOTION_LAYOUTS:
        p.append(f"model.mia.motion_layout={c.model.mia.motion_layout!r}: expected one of {MOTION_LAYOUTS}")
    if c.data.source == "synth" and c.model.mia.motion_layout != "synth-v1":
        p.append("model.mia.motion_layout must be 'synth-v1' with data.source='synth'")

    ae = c.autoencoder
    if ae.kind not in AUTOENCODERS:
        p.append(f"autoencoder.kind={ae.kind!r}: expected one of {AUTOENCODERS}")
        down = 8
    elif ae.kind == "space_to_depth":
        down = ae.space_to_depth_factor
    else:
        down = 2 ** (len(ae.vae_block_out_channels) - 1)
    levels = len(u.block_out_channels)
    multiple = down * 2 ** (levels - 1)
    if c.data.resolution % multiple:
        p.append(f"data.resolution={c.data.resolution} must be divisible by {multiple} "
                 f"(autoencoder downsampling {down} x U-Net downsampling {2 ** (levels - 1)})")
    for w in u.block_out_channels:
        if w % u.norm_num_groups:
            p.append(f"model.unet.block_out_channels has {w}, not divisible by "
                     f"model.unet.norm_num_groups={u.norm_num_groups}")
    p.extend(_attention_problems(u))

    d = c.data
    if d.source not in DATA_SOURCES:
        p.append(f"data.source={d.source!r}: expected one of {DATA_SOURCES}")
    if d.source == "tfds":
        try:
            weights = parse_mixture(d.mixture)
            if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                p.append(f"data.mixture={d.mixture!r}: weights must be >= 0 with a positive sum")
        except ValueError as err:
            p.append(str(err))
        if not d.tfds_data_dir:
            p.append("data.tfds_data_dir is empty: data.source='tfds' reads the datasets of data.mixture from it")
    if d.use_cache:
        if d.source != "tfds":
            p.append("data.use_cache=True needs data.source='tfds' (the cache is made by data_pipelines.cache_pass)")
        if c.model.clip.enabled:
            p.append("data.use_cache=True: batches carry cached CLIP tokens, set model.clip.enabled=False")
        if ae.kind != "vae":
            p.append("data.use_cache=True: the cache holds KL-VAE moments, set autoencoder.kind='vae'")
    elif not c.model.clip.enabled:
        p.append("model.clip.enabled=False needs cached CLIP tokens: set data.use_cache=True (data.source='tfds')")
    if d.global_batch_size < 1:
        p.append(f"data.global_batch_size={d.global_batch_size} must be >= 1")
    sizes = _resolved_mesh(c, num_devices, p)
    if sizes is not None:
        split = sizes[0] * sizes[1]
        if d.global_batch_size % split:
            p.append(f"data.global_batch_size={d.global_batch_size} is not divisible by "
                     f"mesh data*fsdp = {sizes[0]}*{sizes[1]} = {split} ({num_devices} devices)")
    if d.global_batch_size % num_processes:
        p.append(f"data.global_batch_size={d.global_batch_size} is not divisible by the "
                 f"{num_processes} processes (each feeds an equal share)")

    for key in ("compute_dtype", "param_dtype"):
        if c.precision[key] not in DTYPES:
            p.append(f"precision.{key}={c.precision[key]!r}: expected one of {DTYPES}")
    if c.precision.param_dtype != "float32":
        p.append("precision.param_dtype must be float32 (fp32 master weights and optimizer state)")

    o = c.optimizer
    if not o.learning_rate > 0:
        p.append(f"optimizer.learning_rate={o.learning_rate} must be > 0")
    if o.warmup_steps < 0 or o.warmup_steps > c.train.num_steps:
        p.append(f"optimizer.warmup_steps={o.warmup_steps} must be in [0, train.num_steps={c.train.num_steps}]")
    if o.decay_steps and o.decay_steps < o.warmup_steps:
        p.append(f"optimizer.decay_steps={o.decay_steps} must be 0 or >= warmup_steps={o.warmup_steps}")
    if not o.grad_clip_norm > 0:
        p.append(f"optimizer.grad_clip_norm={o.grad_clip_norm} must be > 0")
    if not 0.0 <= c.ema.decay < 1.0:
        p.append(f"ema.decay={c.ema.decay} must be in [0, 1)")
    if c.train.num_steps < 1:
        p.append(f"train.num_steps={c.train.num_steps} must be >= 1")
    if c.train.log_every < 1:
        p.append(f"train.log_every={c.train.log_every} must be >= 1")
    if c.train.sample_every < 0:
        p.append(f"train.sample_every={c.train.sample_every} must be >= 0 (0: only at the end)")
    if c.train.profile_start_step < 0 or c.train.profile_num_steps < 1:
        p.append(f"train.profile_start_step={c.train.profile_start_step} must be >= 0 (0: off) and "
                 f"train.profile_num_steps={c.train.profile_num_steps} >= 1")
    if c.checkpoint.every < 1 or c.checkpoint.max_to_keep < 1:
        p.append(f"checkpoint.every={c.checkpoint.every} and checkpoint.max_to_keep="
                 f"{c.checkpoint.max_to_keep} must be >= 1")
    if c.sample.guidance_scale < 0 or c.sample.num_steps < 1:
        p.append("sample.guidance_scale must be >= 0 and sample.num_steps >= 1")
    if c.sample.sampler not in SAMPLERS:
        p.append(f"sample.sampler={c.sample.sampler!r}: expected one of {SAMPLERS}")
    if c.sample.timestep_spacing not in TIMESTEP_SPACINGS:
        p.append(f"sample.timestep_spacing={c.sample.timestep_spacing!r}: expected one of {TIMESTEP_SPACINGS}")
    if c.sample.clip_denoised > 0 and c.sample.sampler != "ddim" and c.model.prediction_type != "sample":
        p.append(f"sample.clip_denoised={c.sample.clip_denoised} with sample.sampler={c.sample.sampler!r} needs "
                 f"model.prediction_type='sample' (it is {c.model.prediction_type!r}); use the ddim sampler")
    if c.init.stage1_weights not in ("ema", "raw"):
        p.append(f"init.stage1_weights={c.init.stage1_weights!r}: expected 'ema' or 'raw'")
    if ae.latents not in ("sample", "mean"):
        p.append(f"autoencoder.latents={ae.latents!r}: expected 'sample' (posterior draw) or 'mean'")
    if d.use_cache and c.sample.num_videos > 0:
        p.append("data.use_cache=True with sample.num_videos > 0: the encoder cache holds no source pixels "
                 "for the held-out sample videos; set sample.num_videos=0 for cached runs and sample a "
                 "checkpoint of the run in a run without the cache")
    if p:
        raise ConfigError("invalid config " + repr(c.name) + ":\n  - " + "\n  - ".join(p))


def to_json_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as JSON-able nested dicts (tuples become lists)."""
    def convert(x):
        if isinstance(x, dict):
            return {k: convert(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [convert(v) for v in x]
        if isinstance(x, float) and not math.isfinite(x):
            return str(x)
        return x
    return convert(config.to_dict())
