"""MIMAFace: CLIP appearance + MIA conditioning + the ICA video U-Net, its loss and CFG denoiser.

The image stage (F = 1, motion modules off, ``ica.k_max = 0``) and the video stage (F > 1,
motion modules and ICA on) are the same model with different configs.

Training batch (dict; S = ``ica.k_max + num_frames`` frames per clip, data order: the k_max
frames before the clip first, then the F frames of the clip; see ``ica.py``):

- ``"latents"``: (B, S, h, w, C) clean (scaled) VAE latents of the frames.
- ``"cond_latents"``: (B, S, h, w, C) latents of the motion condition renders.
- ``"motion"``: (B, S, D_motion) motion vectors in ``config.mia.motion_layout``.
- ``"source_pixels"``: (B, Hc, Wc, 3) CLIP-preprocessed source image (when ``config.clip``
  is set), or ``"source_clip_tokens"``: (B, N, clip_width) cached CLIP last hidden state
  (when ``config.clip is None``).
- ``"identity"``: (B, identity_dim) identity embedding (needed when identity modulation is on).
- optional overrides (tests, debugging): ``"noise"`` (B, S, h, w, C), ``"timesteps"`` (B,)
  int, ``"num_context"`` (B,) int in [0, k_max].

``loss(model, batch, rng)`` is the one pure function the train step differentiates:
DDPM noising at one timestep per clip, epsilon or v targets, min-SNR-gamma weights, condition
dropout (the MIA context of a sample is replaced by zeros with probability ``cond_dropout``),
random k context frames, the loss averaged over current frames only.
"""

from __future__ import annotations

import dataclasses
import jax
import jax.numpy as jnp
from flax import nnx

from mimaface_jax.diffusion import guidance
from mimaface_jax.diffusion.schedule import (
    NoiseSchedule,
    ScheduleConfig,
    add_noise,
    min_snr_weights,
    training_target,
)
from mimaface_jax.models import ica
from mimaface_jax.models.clip_vision import CLIPVisionConfig, CLIPVisionModel
from mimaface_jax.models.mia import MIA, MIAConfig
from mimaface_jax.models.unet import UNet3D
from mimaface_jax.models.unet_config import UNetConfig

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MIMAFaceConfig:
    """The whole model and its diffusion training settings.

    Attributes:
      unet: the video U-Net (in_channels = 3 * latent channels + 1).
      mia: the conditioning (its ``context_dim`` is the U-Net's cross-attention dim).
      clip: the CLIP vision tower, or ``None`` when batches carry cached CLIP tokens.
      ica: inter-clip context settings (``k_max = 0``: none).
      num_frames: F, current frames per clip (1 in the image stage).
      schedule: DDPM schedule incl. ``prediction_type`` ("epsilon" / "v_prediction").
      min_snr_gamma: min-SNR-gamma loss weighting (``None``: uniform weights).
      cond_dropout: per-sample probability of a zero MIA context in training (CFG).
      train_timesteps: ``(lo, hi)``: training timesteps are drawn uniformly from [lo, hi)
        (default: all of the schedule's).
      clip_trainable: gradients flow into CLIP (stage 1); otherwise its output is a constant.
    """

    unet: UNetConfig = UNetConfig()
    mia: MIAConfig = MIAConfig()
    clip: CLIPVisionConfig | None = CLIPVisionConfig()
    ica: ica.ICAConfig = ica.ICAConfig()
    num_frames: int = 16
    schedule: ScheduleConfig = ScheduleConfig()
    min_snr_gamma: float | None = 5.0
    cond_dropout: float = 0.1
    clip_trainable: bool = False
    train_timesteps: tuple[int, int] = (0, 1000)

    def __post_init__(self):
        u, m = self.unet, self.mia
        if m.context_dim != u.cross_attention_dim:
            raise ValueError(f"MIMAFaceConfig: mia.context_dim={m.context_dim} must equal "
                             f"unet.cross_attention_dim={u.cross_attention_dim}")
        if u.in_channels != 3 * u.out_channels + 1:
            raise ValueError(
                f"MIMAFaceConfig: unet.in_channels={u.in_channels} must be 3 * out_channels + 1 = "
                f"{3 * u.out_channels + 1} (noisy + condition render + ICA context latents + mask)"
            )
        if self.clip is not None:
            if self.clip.hidden_size != m.clip_width or self.clip.num_positions != m.num_clip_tokens:
                raise ValueError(
                    f"MIMAFaceConfig: CLIP gives {self.clip.num_positions} tokens of width "
                    f"{self.clip.hidden_size} but MIA expects {m.num_clip_tokens} x {m.clip_width}"
                )
        if self.num_frames < 1:
            raise ValueError(f"MIMAFaceConfig.num_frames must be >= 1, got {self.num_frames}")
        seq = self.ica.k_max + self.num_frames
        if seq > 1 and not u.use_motion_module:
            raise ValueError(
                f"MIMAFaceConfig: {seq} frames per clip (k_max + num_frames) need motion modules "
                "(unet.use_motion_module=True); the image stage uses num_frames=1, ica.k_max=0"
            )
        if u.use_motion_module and seq > u.motion_max_seq_length:
            raise ValueError(
                f"MIMAFaceConfig: k_max + num_frames = {seq} exceeds the motion modules' "
                f"positional encoding length {u.motion_max_seq_length}"
            )
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ValueError(f"MIMAFaceConfig.cond_dropout must be in [0, 1], got {self.cond_dropout}")
        lo, hi = self.train_timesteps
        if not 0 <= lo < hi <= self.schedule.num_train_timesteps:
            raise ValueError(f"MIMAFaceConfig.train_timesteps={self.train_timesteps} must be (lo, hi) with "
                             f"0 <= lo < hi <= {self.schedule.num_train_timesteps}")
        if self.min_snr_gamma is not None and self.min_snr_gamma <= 0:
            raise ValueError(f"MIMAFaceConfig.min_snr_gamma must be > 0 or None, got {self.min_snr_gamma}")

    @property
    def frames_per_clip(self) -> int:
        """S = k_max + F, the frame slots of a training clip."""
        return self.ica.k_max + self.num_frames

    @property
    def latent_channels(self) -> int:
        return self.unet.out_channels

    @property
    def prediction_type(self) -> str:
        """"epsilon" or "v_prediction" (held by ``schedule``)."""
        return self.schedule.prediction_type


class MIMAFace(nnx.Module):
    """CLIP (optional) + MIA + U-Net. See the module docstring for the batch layout."""

    def __init__(self, config: MIMAFaceConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.config = config
        self.clip = CLIPVisionModel(config.clip, **kw) if config.clip is not None else None
        self.mia = MIA(config.mia, **kw)
        self.unet = UNet3D(config.unet, **kw)

    # ----------------------------------------------------------------------------- conditioning

    def appearance(self, batch: dict) -> Array:
        """CLIP tokens of the source: (B, N, clip_width)."""
        if self.clip is None:
            if "source_clip_tokens" not in batch:
                raise KeyError("batch needs 'source_clip_tokens' (B, N, clip_width): the model has no "
                               "CLIP tower (config.clip is None)")
            return batch["source_clip_tokens"]
        if "source_pixels" not in batch:
            raise KeyError("batch needs 'source_pixels' (B, H, W, 3), CLIP-preprocessed")
        tokens = self.clip(batch["source_pixels"])
        return tokens if self.config.clip_trainable else jax.lax.stop_gradient(tokens)

    def condition(self, appearance: Array, motion: Array, identity: Array | None,
                  frame_weights: Array | None = None, *, use_motion: bool = True,
                  use_identity: bool = True) -> Array:
        """MIA context per frame: (B, N, W), (B, S, D_motion) -> (B, S, L, context_dim).

        ``use_motion`` / ``use_identity`` (static, inference ablations): False cuts MIA's motion /
        identity path at call time, parameters kept (``mia.py``); L shrinks by those tokens."""
        b, s = motion.shape[:2]
        if identity is not None and self.mia.identity is not None and use_identity:
            norm = jnp.linalg.norm(identity, axis=-1, keepdims=True)
            identity = identity / jnp.maximum(norm, 1e-6)
        context = self.mia(appearance, motion, identity, frame_weights=frame_weights, use_motion=use_motion,
                           use_identity=use_identity)  # (B*S, L, D)
        return context.reshape(b, s, *context.shape[1:])

    # ---------------------------------------------------------------------------------- U-Net

    def predict(self, noisy: Array, timesteps: Array, cond_latents: Array, context_latents: Array,
                layout: ica.FrameLayout, context: Array) -> Array:
        """The U-Net's prediction for every slot (model order).

        noisy, cond_latents, context_latents: (B, S, h, w, C); timesteps: (B,);
        context: (B, S, L, D). Returns (B, S, h, w, C).
        """
        b, s = noisy.shape[:2]
        x = ica.unet_input(noisy, cond_latents, context_latents, layout)  # (B*S, h, w, 3C+1)
        # The layout's mask applies to every multi-frame clip: context or unused slots can be
        # present whatever S is (the last clip of a video has k + F' slots, F' < F). With
        # only current frames the mask is all True, which computes exactly the unmasked clip.
        mask = layout.temporal_mask if s > 1 else None
        out = self.unet(x, timesteps, context.reshape(b * s, *context.shape[2:]),
                        num_frames=s, temporal_mask=mask)
        return out.reshape(b, s, *out.shape[1:])


# ------------------------------------------------------------------------------------- training


def _check_batch(config: MIMAFaceConfig, batch: dict) -> tuple[int, int]:
    for key in ("latents", "cond_latents", "motion"):
        if key not in batch:
            raise KeyError(f"training batch has no {key!r}; keys: {sorted(batch)}")
    lat = batch["latents"]
    s = config.frames_per_clip
    if lat.ndim != 5 or lat.shape[1] != s or lat.shape[-1] != config.latent_channels:
        raise ValueError(
            f"batch['latents'] must be (B, k_max + F = {s}, h, w, {config.latent_channels}), got {lat.shape}"
        )
    if batch["cond_latents"].shape != lat.shape:
        raise ValueError(f"batch['cond_latents'] {batch['cond_latents'].shape} must match latents {lat.shape}")
    if batch["motion"].shape[:2] != lat.shape[:2]:
        raise ValueError(f"batch['motion'] {batch['motion'].shape} must be (B, {s}, D_motion)")
    if "noise" in batch and batch["noise"].shape != lat.shape:
        raise ValueError(f"batch['noise'] {batch['noise'].shape} must match latents {lat.shape}")
    return lat.shape[0], s


def drop_condition(context: Array, rng: Array, p: float) -> tuple[Array, Array]:
    """Condition dropout: each sample's context (B, ...) becomes exactly zero with probability p.

    Returns (context, keep) with keep (B,) 1.0 for kept samples, 0.0 for dropped ones.
    """
    keep = jnp.where(jax.random.bernoulli(rng, p, (context.shape[0],)), 0.0, 1.0).astype(context.dtype)
    return jnp.where(keep.reshape((-1,) + (1,) * (context.ndim - 1)) > 0, context, 0), keep


def loss(model: MIMAFace, batch: dict, rng: Array) -> tuple[Array, dict]:
    """The diffusion training loss of one batch. Returns (scalar loss, metrics dict)."""
    cfg = model.config
    b, s = _check_batch(cfg, batch)
    schedule = NoiseSchedule.create(cfg.schedule)
    r_k, r_t, r_noise, r_ctx, r_drop = jax.random.split(rng, 5)

    num_context = batch.get("num_context")
    if num_context is None:
        num_context = ica.sample_num_context(r_k, b, cfg.ica)
    layout = ica.frame_layout(num_context, cfg.ica.k_max, cfg.num_frames, cfg.ica.mode)
    x0 = ica.to_model_order(batch["latents"], layout)  # (B, S, h, w, C)
    cond_latents = ica.to_model_order(batch["cond_latents"], layout)
    motion = ica.to_model_order(batch["motion"], layout)
    noise = batch.get("noise")
    noise = jax.random.normal(r_noise, x0.shape, x0.dtype) if noise is None else ica.to_model_order(noise, layout)
    t = batch.get("timesteps")
    if t is None:
        t = jax.random.randint(r_t, (b,), *cfg.train_timesteps, dtype=jnp.int32)

    t_frames = jnp.repeat(t, s)  # one timestep per clip, per frame for the schedule
    flat = lambda a: a.reshape(b * s, *a.shape[2:])  # noqa: E731
    noisy = add_noise(schedule, flat(x0), flat(noise), t_frames).reshape(x0.shape)
    target = training_target(schedule, flat(x0), flat(noise), t_frames).reshape(x0.shape)
    ctx_latents = ica.context_latents(x0, layout, cfg.ica.context_noise_std, r_ctx)

    current = layout.is_current.astype(x0.dtype)  # (B, S)
    context = model.condition(model.appearance(batch), motion, batch.get("identity"), frame_weights=current)
    context, keep = drop_condition(context, r_drop, cfg.cond_dropout)

    pred = model.predict(noisy, t, cond_latents, ctx_latents, layout, context)
    err = jnp.mean(jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)), axis=(2, 3, 4))  # (B, S)
    weights = (min_snr_weights(schedule, t, cfg.min_snr_gamma) if cfg.min_snr_gamma is not None
               else jnp.ones((b,), jnp.float32))
    per_frame = err * weights[:, None] * current
    value = jnp.sum(per_frame) / jnp.sum(current)
    metrics = {
        "loss": value,
        "mse": jnp.sum(err * current) / jnp.sum(current),
        "num_context": jnp.mean(num_context.astype(jnp.float32)),
        "cond_kept": jnp.mean(keep),
    }
    return value, metrics


def trainable_mask(state: nnx.State, config: MIMAFaceConfig):
    """A pytree of bools like ``state``: False for the CLIP tower's variables unless
    ``config.clip_trainable`` (for ``optax.masked`` / freezing in the train step; the loss
    already stops CLIP's gradient then, this also keeps optimizer state off those params)."""

    def trainable(path, _):
        return config.clip_trainable or not (path and getattr(path[0], "key", None) == "clip")

    return jax.tree_util.tree_map_with_path(trainable, state)


def loss_from_state(graphdef: nnx.GraphDef, state: nnx.State, batch: dict, rng: Array) -> tuple[Array, dict]:
    """:func:`loss` as a pure function of an ``nnx.split`` state (for ``jax.jit`` / ``jax.grad``)."""
    return loss(nnx.merge(graphdef, state), batch, rng)


# ----------------------------------------------------------------------------------- sampling


def generation_condition(model: MIMAFace, batch: dict, *, context_frames: Array | None = None,
                         k: int | None = None) -> dict:
    """The conditioning of :func:`denoise` for one clip.

    batch: ``"cond_latents"`` (B, F, h, w, C) and ``"motion"`` (B, F, D) of the F frames to
    generate, the source (``"source_pixels"`` / ``"source_clip_tokens"``), ``"identity"``;
    context_frames: (B, k', h, w, C) clean latents of the previous clip's last frames and their
    ``"context_cond_latents"`` (B, k', h, w, C) / ``"context_motion"`` (B, k', D) in ``batch``;
    the last ``k`` (default ``config.ica.generation_k``, at most k') are used.
    Returns a pytree with leading batch B over the S = k + F slots (model order: the k
    context frames first): ``"context"`` (B, S, L, D), ``"cond_latents"``,
    ``"context_latents"`` (B, S, h, w, C) and the ``"layout"``. Sample x of shape
    (B, S, h, w, C) with :func:`denoise`; the generated clip is ``x_0[:, k:]`` (the context
    slots' outputs are not used). Clip by clip: the last frames of one clip's ``x_0[:, k:]``
    become the next clip's ``context_frames``, with their renders and motion as
    ``"context_cond_latents"`` / ``"context_motion"``.
    """
    cfg = model.config
    cond_latents, motion = batch["cond_latents"], batch["motion"]
    b, f = cond_latents.shape[:2]
    if context_frames is None or cfg.ica.k_max == 0:
        k = 0
    else:
        k = min(cfg.ica.generation_k if k is None else k, context_frames.shape[1])
    if k > 0:
        for key in ("context_cond_latents", "context_motion"):
            if key not in batch:
                raise KeyError(f"generation with context frames needs batch[{key!r}]")
        cond_latents = jnp.concatenate([batch["context_cond_latents"][:, -k:], cond_latents], axis=1)
        motion = jnp.concatenate([batch["context_motion"][:, -k:], motion], axis=1)
        clean = jnp.concatenate([context_frames[:, -k:], jnp.zeros_like(batch["cond_latents"])], axis=1)
    else:
        clean = jnp.zeros_like(cond_latents)
    layout = ica.generation_layout(b, k, f, cfg.ica.mode)
    context = model.condition(model.appearance(batch), motion, batch.get("identity"),
                              frame_weights=layout.is_current.astype(motion.dtype))
    cond = {
        "context": context,
        "cond_latents": cond_latents,
        "context_latents": ica.context_latents(clean, layout),
        "layout": layout,
    }
    return cond


def unconditional(cond: dict) -> dict:
    """The unconditional twin of ``cond``: the MIA context replaced by zeros (as condition
    dropout does in training); renders and ICA context frames are kept."""
    return dict(cond, context=jnp.zeros_like(cond["context"]))


def denoise(model: MIMAFace, x_t: Array, t: Array, cond: dict, guidance_scale) -> Array:
    """Guided prediction ``uncond + scale * (cond - uncond)`` for x_t (B, S, h, w, C), t (B,).

    ``cond`` comes from :func:`generation_condition`; the unconditional input is
    :func:`unconditional` of it. Both halves run through the U-Net in ONE call of batch 2B
    (``diffusion.guidance.cfg_denoise``). Scale 1: the conditional prediction; 0: the
    unconditional one.
    """
    uncond = unconditional(cond)

    def model_fn(x, timesteps, c):
        timesteps = jnp.broadcast_to(timesteps, (x.shape[0],))
        return model.predict(x, timesteps, c["cond_latents"], c["context_latents"], c["layout"], c["context"])

    return guidance.cfg_denoise(model_fn, x_t, t, cond, uncond, guidance_scale)


def denoise_from_state(graphdef: nnx.GraphDef, state: nnx.State, x_t: Array, t: Array, cond: dict,
                       guidance_scale) -> Array:
    """:func:`denoise` as a pure function of an ``nnx.split`` state (``params`` of a sampler)."""
    return denoise(nnx.merge(graphdef, state), x_t, t, cond, guidance_scale)


def denoise_fn(model: MIMAFace, cond: dict, guidance_scale):
    """A sampler ``denoise_fn(x, t)`` (``diffusion.samplers``) with CFG around :func:`denoise`."""
    return lambda x, t: denoise(model, x, t, cond, guidance_scale)

