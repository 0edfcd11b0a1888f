"""The clip-by-clip video generator: the ONE generation path of ``animate`` and of the
trainer's sample videos.

A video of T frames is made in clips of F = ``model.num_frames`` frames. Each clip after the
first sees the last K = ``ica.generation_k`` generated frames as ICA context (their clean
latents, renders and motion); the first clip sees the source frame as context when
``source_as_context`` is set, else none. The last clip may be shorter (F' = T mod F frames):
it is generated, never dropped. Every clip runs through the same jitted function with the same
shapes (``clip_layout.py``: unused context / current slots are masked), so a video of any
length compiles it once (at most once more for another batch or resolution), and a second
video reuses it.

Batches: ``batch_clips`` generates B videos of the same length in lockstep (one call of the
clip function per clip start for all B; ``clips`` is the B = 1 case). When B is a multiple of
the mesh's batch split (the ``"batch"`` rule's axes, all devices with the default
``data`` x ``fsdp`` mesh) the inputs are placed split over the batch (data parallel; the
parameters stay as the caller placed them, e.g. FSDP-sharded), otherwise replicated.

Randomness: each video has its own seed; the clip starting at frame ``start`` draws the video's
initial noise from ``fold_in(PRNGKey(seed), start)`` inside the jitted function, row by row, so
a video's frames do not depend on the other videos of its batch (up to float rounding) and no
host-side JAX work compiles anything while generating.

``context=False`` (``evaluate --ablate ica=off``): every clip without ICA context (no previous
frames, no source anchor; the same initial noise and the same compiled function).

SPMD: every process may call it with the same host inputs; parameters stay sharded as given,
outputs are replicated (any process can read them).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mimaface_jax.diffusion.samplers import ddim_sample, euler_sample
from mimaface_jax.diffusion.schedule import NoiseSchedule
from mimaface_jax.inference.clip_layout import clip_layout
from mimaface_jax.inference.lockstep import ContextWindow, VideoJob, checked_motion
from mimaface_jax.models import ica, mimaface
from mimaface_jax.parallel import batch_sharding, use_rules
from mimaface_jax.training import mesh_and_model
from mimaface_jax.training.model_config import latent_downsample
from mimaface_jax.training.train_step import clip_input, encode_frames

SAMPLERS = ("ddim", "euler")


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """How clips are sampled (defaults: a config's ``sample`` section, see ``from_config``)."""

    sampler: str = "ddim"
    num_steps: int = 25
    guidance_scale: float = 5.0
    timestep_spacing: str = "leading"
    clip_denoised: float = 0.0       # > 0: the predicted x0 is clipped to [-v, v]
    source_as_context: bool = False  # the first clip's ICA context is the source frame
    seed: int = 0
    # inference ablations (``evaluate --ablate motion_tokens=off / identity=off``): False cuts
    # MIA's motion / identity path at call time, the trained parameters kept (``models/mia.py``)
    mia_motion: bool = True
    mia_identity: bool = True

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")

    @classmethod
    def from_config(cls, config, **overrides) -> "GenerationSettings":
        """A training config's ``sample`` section (+ ``seed``), with ``overrides`` (None = keep)."""
        s = config.sample
        values = dict(sampler=str(s.sampler), num_steps=int(s.num_steps),
                      guidance_scale=float(s.guidance_scale), timestep_spacing=str(s.timestep_spacing),
                      clip_denoised=float(s.clip_denoised), source_as_context=bool(s.source_as_context),
                      seed=int(config.seed))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def clip_x0(denoise, schedule_config, limit: float, sampler: str):
    """``denoise(x, t)`` whose implied clean sample x0 is clipped to [-limit, limit], rewritten
    in the model's parameterisation (for pixel-like latents such as space-to-depth: keeps an
    early, poorly-denoised step from pushing the trajectory off the data range)."""
    kind = schedule_config.prediction_type
    if kind == "sample":
        return lambda x, t: jnp.clip(denoise(x, t), -limit, limit)
    if sampler != "ddim":
        raise ValueError(f"clip_denoised > 0 with the {sampler!r} sampler needs prediction_type "
                         f"'sample' (the model predicts {kind!r}); use the ddim sampler or clip_denoised=0")
    schedule = NoiseSchedule.create(schedule_config)

    def clipped(x, t):  # x (B, S, h, w, C), t (B,) int
        out = denoise(x, t)
        shape = (-1,) + (1,) * (x.ndim - 1)
        sa = schedule.sqrt_alphas_cumprod[t].reshape(shape)
        sb = schedule.sqrt_one_minus_alphas_cumprod[t].reshape(shape)
        x0 = sa * x - sb * out if kind == "v_prediction" else (x - sb * out) / sa
        x0 = jnp.clip(x0, -limit, limit)
        eps = (x - sa * x0) / sb
        return sa * eps - sb * x0 if kind == "v_prediction" else eps

    return clipped


def to_uint8(pixels: jax.Array) -> jax.Array:
    """[-1, 1] float -> uint8 [0, 255] (rounded)."""
    return jnp.clip(jnp.round((pixels.astype(jnp.float32) + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


@dataclasses.dataclass
class Clip:
    """One generated clip: frames ``start .. start + len(frames) - 1`` of the video."""

    index: int
    start: int
    frames: np.ndarray     # (n, H, W, 3) uint8
    seconds: float         # wall time of this clip (incl. compilation when ``compiled``)
    compiled: bool         # the call compiled the generation function


@dataclasses.dataclass
class BatchClip:
    """One clip of B videos generated in lockstep: frames ``start .. start + n - 1`` of each."""

    index: int
    start: int
    frames: np.ndarray     # (B, n, H, W, 3) uint8
    seconds: float
    compiled: bool


# One jitted clip function per (model config, mesh, rules, settings) in the process: a new
# generator for the same model (the next job of ``animate``, the trainer's next sample step)
# reuses the compiled function instead of compiling it again.
_FUNCTIONS: dict = {}


def _function_key(config, mesh, rules, settings: GenerationSettings) -> tuple:
    from mimaface_jax.config_validation import to_json_dict

    c = to_json_dict(config)
    model = json.dumps({k: c[k] for k in ("model", "autoencoder", "precision", "seed")}, sort_keys=True)
    devices = tuple(int(d.id) for d in mesh.devices.flat)
    return (model, int(config.data.resolution), devices, tuple(mesh.axis_names), tuple(mesh.devices.shape),
            repr(rules), dataclasses.replace(settings, seed=0))  # the seed is an input


class ClipGenerator:
    """Clip-by-clip generation with one model (see the module docstring).

    Args:
      config: the training config (resolution, autoencoder, model); ``model``: the
        ``mesh_and_model.Model``; ``params`` / ``ae_params``: flat parameter dicts (placed as
        the caller wants them); ``settings``: ``GenerationSettings``.
    """

    def __init__(self, config, model, params: dict, ae_params: dict, mesh, rules,
                 settings: GenerationSettings):
        mc = model.config
        self.config, self.model, self.params, self.ae_params = config, model, params, ae_params
        self.mesh, self.rules, self.settings = mesh, rules, settings
        self.num_frames = mc.num_frames
        self.num_context = mc.ica.generation_k if mc.ica.k_max > 0 else 0
        self.resolution = int(config.data.resolution)
        self.latent_hw = self.resolution // latent_downsample(config)
        self.latent_channels = mc.latent_channels
        self.motion_size = mc.mia.motion_layout.size
        key = _function_key(config, mesh, rules, settings)
        if key not in _FUNCTIONS:
            # forward only: the model without gradient checkpointing (same parameters)
            self.model = mesh_and_model.without_remat(config, model, mesh, rules)
            _FUNCTIONS[key] = self._build()
        self._fn = _FUNCTIONS[key]

    # ------------------------------------------------------------------------- device function
    def _build(self):
        mc, model, s = self.model.config, self.model, self.settings
        big_k, f = self.num_context, self.num_frames
        lat_hw, lat_c = self.latent_hw, self.latent_channels
        replicated = NamedSharding(self.mesh, PartitionSpec())

        def generate(params, ae_params, inputs):
            """inputs (B = batch): condition (B, F, H, W, 3) u8, motion (B, F, D), source (B, H, W, 3)
            u8, identity (B, E), num_current (B,) i32, seed (B,) i32, start () i32 and, with K > 0,
            context_condition (B, K, H, W, 3) u8, context_motion (B, K, D), context_latents
            (B, K, h, w, C), num_context (B,) i32, context_is_source (B,) bool.
            Returns latents (B, F, h, w, C) f32 and pixels (B, F, H, W, 3) u8 (data order)."""
            b = inputs["motion"].shape[0]
            net = model.spec.merge(params)
            ae = model.ae_spec.merge(ae_params)
            num_context = inputs["num_context"] if big_k else jnp.zeros((b,), jnp.int32)
            layout = clip_layout(num_context, inputs["num_current"], big_k, f, mc.ica.mode)
            cond = encode_frames(ae, inputs["condition"], None)                    # (B, F, h, w, C)
            motion = inputs["motion"]
            clean = jnp.zeros_like(cond)
            if big_k:
                from_source = jnp.broadcast_to(encode_frames(ae, inputs["source"][:, None], None),
                                               (b, big_k, lat_hw, lat_hw, lat_c))
                ctx = jnp.where(inputs["context_is_source"][:, None, None, None, None], from_source,
                                inputs["context_latents"])                           # (B, K, h, w, C)
                cond = jnp.concatenate([encode_frames(ae, inputs["context_condition"], None), cond], 1)
                motion = jnp.concatenate([inputs["context_motion"], motion], 1)
                clean = jnp.concatenate([ctx, clean], 1)                             # (B, K+F, ...)
            batch = {"identity": inputs["identity"]}
            if mc.clip is not None:
                batch["source_pixels"] = clip_input(inputs["source"], mc.clip.image_size)
            else:
                raise ValueError("generation needs the model's CLIP tower (model.clip.enabled)")
            motion = ica.to_model_order(motion, layout)
            weights = layout.is_current.astype(motion.dtype)
            conditioning = {
                "context": net.condition(net.appearance(batch), motion, batch["identity"], frame_weights=weights,
                                         use_motion=s.mia_motion, use_identity=s.mia_identity),
                "cond_latents": ica.to_model_order(cond, layout),
                "context_latents": ica.context_latents(ica.to_model_order(clean, layout), layout),
                "layout": layout,
            }
            denoise = mimaface.denoise_fn(net, conditioning, s.guidance_scale)
            if s.clip_denoised > 0:
                denoise = clip_x0(denoise, mc.schedule, s.clip_denoised, s.sampler)
            def video_noise(seed):  # one video's noise, as a batch of one (B = 1 draws the same)
                key = jax.random.fold_in(jax.random.PRNGKey(seed), inputs["start"])
                return jax.random.normal(key, (1, big_k + f, lat_hw, lat_hw, lat_c), jnp.float32)[0]

            noise = jax.vmap(video_noise)(inputs["seed"])                           # (B, K+F, h, w, C)
            if s.sampler == "ddim":
                x = ddim_sample(denoise, noise, mc.schedule, s.num_steps, timestep_spacing=s.timestep_spacing)
            else:
                x = euler_sample(denoise, noise, mc.schedule, s.num_steps, timestep_spacing=s.timestep_spacing)
            x = ica.from_model_order(x, layout)[:, big_k:]                          # (B, F, h, w, C)
            pixels = ae.decode(x.reshape(b * f, *x.shape[2:]) / ae.scaling_factor)
            return x, to_uint8(pixels).reshape(b, f, *pixels.shape[1:])

        return jax.jit(generate, out_shardings=replicated)

    def compile_count(self) -> int:
        """How many times the clip function has been compiled (one per input shape; shared by
        the generators of the same model and settings in this process)."""
        return self._fn._cache_size()

    def batch_split(self) -> int:
        """How many ways the mesh splits a batch (the ``"batch"`` rule's mesh axes)."""
        axes = batch_sharding(self.mesh, self.rules).spec[0]
        axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        return int(np.prod([self.mesh.shape[a] for a in axes], dtype=np.int64))

    def place(self, inputs: dict) -> dict:
        """Host inputs -> global arrays: split over the batch axes when the batch divides over
        them, else replicated; ``start`` (a scalar) replicated. Every process passes the same
        host arrays (each takes its devices' rows)."""
        b = inputs["motion"].shape[0]
        split = batch_sharding(self.mesh, self.rules) if b % self.batch_split() == 0 else None
        replicated = NamedSharding(self.mesh, PartitionSpec())

        def put(name, value):
            value = np.asarray(value)
            sharding = split if split is not None and name != "start" else replicated
            return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

        return {name: put(name, value) for name, value in inputs.items()}

    def run_clip(self, inputs: dict) -> tuple[np.ndarray, np.ndarray]:
        """One call of the jitted clip function on host inputs (see ``_build`` and ``place``)."""
        with use_rules(self.mesh, self.rules):
            x, pixels = self._fn(self.params, self.ae_params, self.place(inputs))
        return np.asarray(x), np.asarray(pixels)

    # ------------------------------------------------------------------------------ host loop
    def clips(self, source: np.ndarray, identity: np.ndarray, motion: np.ndarray,
              render: Callable[[int, int], np.ndarray], *, source_motion: np.ndarray | None = None,
              source_condition: np.ndarray | None = None, seed: int | None = None,
              context: bool = True) -> Iterator[Clip]:
        """Generates a video of T = len(motion) frames, clip by clip, yielding each clip as soon
        as it is made (the caller writes it: memory does not grow with T).

        source (H, W, 3) uint8 (the model's crop), identity (E,), motion (T, D) float32,
        render(start, stop) -> condition renders (stop - start, H, W, 3) uint8 of those frames;
        with ``settings.source_as_context`` the source's own motion (D,) and render (H, W, 3).
        ``context=False``: no ICA context at all (see the module docstring).
        """
        job = VideoJob(source, identity, motion, render, source_motion, source_condition, seed)
        for clip in self.batch_clips([job], context=context):
            yield Clip(clip.index, clip.start, clip.frames[0], clip.seconds, clip.compiled)

    def batch_clips(self, jobs: Sequence[VideoJob], *, context: bool = True) -> Iterator[BatchClip]:
        """Generates B = len(jobs) videos of the same length T in lockstep, clip by clip (see
        the module docstring); video i's frames are those ``clips`` gives for job i alone, up to
        float rounding."""
        r, f, big_k, d = self.resolution, self.num_frames, self.num_context, self.motion_size
        if not jobs:
            raise ValueError("batch_clips needs at least one video")
        anchor = context and self.settings.source_as_context and big_k > 0
        motion = [checked_motion(job, r, d, anchor) for job in jobs]
        lengths = sorted({len(m) for m in motion})
        if len(lengths) > 1:
            raise ValueError(f"the videos of one batch must have the same length, got lengths {lengths}")
        motion = np.stack(motion)                                                    # (B, T, D)
        b, t = motion.shape[:2]
        seeds = np.asarray([self.settings.seed if job.seed is None else int(job.seed) for job in jobs], np.int32)
        source = np.stack([job.source for job in jobs])                              # (B, H, W, 3)
        identity = np.stack([np.asarray(job.identity, np.float32) for job in jobs])  # (B, E)
        window = ContextWindow(b, big_k, r, self.latent_hw, self.latent_channels, d)
        if anchor:
            window.anchor(np.stack([job.source_condition for job in jobs]),
                          np.stack([job.source_motion for job in jobs]))
        for index, start in enumerate(range(0, t, f)):
            n = min(f, t - start)
            cond = np.zeros((b, f, r, r, 3), np.uint8)
            for i, job in enumerate(jobs):
                cond[i, :n] = job.render(start, start + n)
            mot = np.zeros((b, f, d), np.float32)
            mot[:, :n] = motion[:, start:start + n]
            mot[:, n:] = motion[:, start + n - 1:start + n]  # unused slots: any finite value
            inputs = {"condition": cond, "motion": mot, "source": source, "identity": identity,
                      "num_current": np.full((b,), n, np.int32), "seed": seeds, "start": np.int32(start)}
            if big_k:
                inputs.update(window.inputs())
            before = self.compile_count()
            t0 = time.perf_counter()
            x, pixels = self.run_clip(inputs)
            seconds = time.perf_counter() - t0
            if context:  # the last K frames made so far become the next clip's context
                window.advance(x[:, :n], cond[:, :n], mot[:, :n])
            yield BatchClip(index, start, pixels[:, :n], seconds, self.compile_count() > before)

    def video(self, *args, **kwargs) -> np.ndarray:
        """All frames (T, H, W, 3) uint8 of :meth:`clips` (short videos, tests, samples)."""
        return np.concatenate([c.frames for c in self.clips(*args, **kwargs)], axis=0)

    def videos(self, jobs: Sequence[VideoJob], *, context: bool = True) -> np.ndarray:
        """All frames (B, T, H, W, 3) uint8 of :meth:`batch_clips`."""
        return np.concatenate([c.frames for c in self.batch_clips(jobs, context=context)], axis=1)
