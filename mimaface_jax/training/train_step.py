"""The train state, the train step, and its ahead-of-time compilation.

Train state (a dict; every leaf a global ``jax.Array``):
  step       () int32          optimizer steps taken
  rng        (2,) uint32       base key; step n uses ``fold_in(rng, n)`` (resume-exact)
  trainable  {name: array}     parameters the optimizer updates (fp32)
  frozen     {name: array}     the rest of the model
  opt_state  optax state of ``trainable``
  ema        {name: array}     EMA of ``trainable`` (empty dict when ema.enabled is False)

The step is ``jax.jit(...).lower(abstract...).compile()``-d once against abstract inputs with
explicit shardings, and the state is donated. NaN guard: the step reports ``finite`` (loss
and gradient norm finite); when it is False the returned state is the INPUT state unchanged
(selected inside the step, so donation cannot lose it) and the loop stops.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mimaface_jax.models import mimaface
from mimaface_jax.models.clip_preprocess import CLIP_MEAN, CLIP_STD
from mimaface_jax.models.vae import sample_latent
from mimaface_jax.parallel import batch_sharding, use_rules
from mimaface_jax.training.ema import ema_decay, ema_update
from mimaface_jax.training.mesh_and_model import Model
from mimaface_jax.training.model_config import latent_channels, latent_downsample, motion_layout


def batch_shapes(config, global_batch: int | None = None) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of a GLOBAL training batch (fields: ``data_source`` module docstring): pixels, or
    with ``data.use_cache`` the cached VAE moments and CLIP tokens."""
    b = config.data.global_batch_size if global_batch is None else global_batch
    s = config.model.num_frames + config.model.ica.k_max
    r = config.data.resolution
    out = {
        "motion": jax.ShapeDtypeStruct((b, s, motion_layout(config).size), jnp.float32),
        "identity": jax.ShapeDtypeStruct((b, config.model.mia.identity_dim), jnp.float32),
    }
    if config.data.use_cache:
        h = r // latent_downsample(config)
        moments = jax.ShapeDtypeStruct((b, s, h, h, 2 * latent_channels(config)), jnp.float32)
        cl = config.model.clip
        out.update(latent_moments=moments, cond_moments=moments,
                   source_clip_tokens=jax.ShapeDtypeStruct((b, cl.num_tokens, cl.hidden_size), jnp.float32))
    else:
        out.update(frames=jax.ShapeDtypeStruct((b, s, r, r, 3), jnp.uint8),
                   condition=jax.ShapeDtypeStruct((b, s, r, r, 3), jnp.uint8),
                   source=jax.ShapeDtypeStruct((b, r, r, 3), jnp.uint8))
    return out


def to_pixels(x: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x.astype(jnp.float32) / 127.5 - 1.0


def clip_input(source: jax.Array, image_size: int) -> jax.Array:
    """(B, H, W, 3) uint8 -> CLIP-normalised (B, S, S, 3) of the whole (square) image: area
    average when S divides H (cheap to compile), else bilinear resize."""
    x = source.astype(jnp.float32) / 255.0
    b, h, w, _ = x.shape
    if h % image_size == 0 and w % image_size == 0:
        x = x.reshape(b, image_size, h // image_size, image_size, w // image_size, 3).mean(axis=(2, 4))
    else:
        x = jax.image.resize(x, (b, image_size, image_size, 3), "linear")
    return (x - jnp.asarray(CLIP_MEAN)) / jnp.asarray(CLIP_STD)


def encode_frames(ae, frames: jax.Array, rng: jax.Array | None) -> jax.Array:
    """(B, S, H, W, 3) uint8 -> scaled latents (B, S, h, w, C) through the frozen autoencoder."""
    b, s = frames.shape[:2]
    mean, logvar = ae.encode(to_pixels(frames.reshape(b * s, *frames.shape[2:])))
    z = mean if rng is None else sample_latent(mean, logvar, rng)
    z = jax.lax.stop_gradient(z * ae.scaling_factor)
    return z.reshape(b, s, *z.shape[1:])


def cached_latents(moments: jax.Array, scaling_factor: float, rng: jax.Array | None) -> jax.Array:
    """Cached VAE moments (B, S, h, w, 2C) -> scaled latents (B, S, h, w, C): a posterior
    sample, or its mean when ``rng`` is None."""
    mean, logvar = jnp.split(moments.astype(jnp.float32), 2, axis=-1)
    return (mean if rng is None else sample_latent(mean, logvar, rng)) * scaling_factor


def model_batch(config, model: Model, ae_params: dict, batch: dict, rng: jax.Array) -> dict:
    """Train-step batch -> the batch of ``mimaface.loss`` (latents, condition latents, CLIP
    input or cached CLIP tokens)."""
    r1, r2 = jax.random.split(rng)
    # autoencoder.latents: a posterior draw per step ("sample") or the mean; space-to-depth is exact
    stochastic = config.autoencoder.kind == "vae" and config.autoencoder.latents == "sample"
    if not stochastic:
        r1 = r2 = None
    if config.data.use_cache:
        scale = config.autoencoder.scaling_factor
        return {"latents": cached_latents(batch["latent_moments"], scale, r1),
                "cond_latents": cached_latents(batch["cond_moments"], scale, r2),
                "source_clip_tokens": batch["source_clip_tokens"],
                "motion": batch["motion"], "identity": batch["identity"]}
    ae = model.ae_spec.merge(ae_params)
    out = {
        "latents": encode_frames(ae, batch["frames"], r1),
        "cond_latents": encode_frames(ae, batch["condition"], r2),
        "motion": batch["motion"],
        "identity": batch["identity"],
    }
    if model.config.clip is not None:
        out["source_pixels"] = clip_input(batch["source"], model.config.clip.image_size)
    return out


def make_train_step(config, model: Model, tx: optax.GradientTransformation):
    """``step(state, ae_params, batch) -> (state, metrics)`` (pure; see module docstring)."""
    use_ema = bool(config.ema.enabled)
    decay = float(config.ema.decay)
    warmup = bool(config.ema.warmup)

    def step(state: dict, ae_params: dict, batch: dict):
        rng = jax.random.fold_in(state["rng"], state["step"])
        r_batch, r_loss = jax.random.split(rng)
        mbatch = model_batch(config, model, ae_params, batch, r_batch)

        def loss_fn(trainable):
            net = model.spec.merge({**state["frozen"], **trainable})
            return mimaface.loss(net, mbatch, r_loss)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["trainable"])
        grad_norm = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, state["opt_state"], state["trainable"])
        trainable = optax.apply_updates(state["trainable"], updates)
        new = dict(state, step=state["step"] + 1, trainable=trainable, opt_state=opt_state,
                   ema=ema_update(state["ema"], trainable, ema_decay(decay, state["step"], warmup))
                   if use_ema else state["ema"])
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm, finite=finite)
        return new, metrics

    return step


def abstract_state(config, model: Model, trainable: list[str], frozen: list[str],
                   tx: optax.GradientTransformation, mesh: Mesh) -> dict:
    """ShapeDtypeStructs (with shardings) of the train state; allocates nothing."""
    ap = model.abstract_params
    tr = {n: ap[n] for n in trainable}
    opt = jax.eval_shape(tx.init, tr)
    # optimizer moments shard like their parameters; scalars (counts) are replicated
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(path, leaf):
        name = None
        for key in reversed(path):
            if isinstance(key, jax.tree_util.DictKey) and key.key in ap:
                name = key.key
                break
        sharding = ap[name].sharding if name is not None and ap[name].shape == leaf.shape else replicated
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    opt = jax.tree_util.tree_map_with_path(place, opt)
    return {
        "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated),
        "rng": jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated),
        "trainable": tr,
        "frozen": {n: ap[n] for n in frozen},
        "opt_state": opt,
        "ema": dict(tr) if config.ema.enabled else {},
    }


def shardings_of(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.sharding, tree)


def abstract_batch(config, mesh: Mesh, rules) -> dict:
    sharding = batch_sharding(mesh, rules)
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding) for k, v in batch_shapes(config).items()}


def compile_train_step(config, model: Model, tx, state_abstract: dict, mesh: Mesh, rules):
    """The AOT-compiled step (state donated). Returns (compiled, lowered)."""
    step = make_train_step(config, model, tx)
    batch_abs = abstract_batch(config, mesh, rules)
    replicated = NamedSharding(mesh, PartitionSpec())
    jitted = jax.jit(
        step,
        in_shardings=(shardings_of(state_abstract), shardings_of(model.ae_abstract), shardings_of(batch_abs)),
        out_shardings=(shardings_of(state_abstract), replicated),
        donate_argnums=(0,),
    )
    with use_rules(mesh, rules):
        lowered = jitted.lower(state_abstract, model.ae_abstract, batch_abs)
    return lowered


def initial_state(config, params: dict, trainable: list[str], frozen: list[str], tx, state_abstract) -> dict:
    """The step-0 train state from freshly initialised / imported ``params``."""
    def build(tr, fr):
        return {
            "step": jnp.zeros((), jnp.int32),
            "rng": jax.random.key_data(jax.random.PRNGKey(config.seed)).astype(jnp.uint32),
            "trainable": tr,
            "frozen": fr,
            "opt_state": tx.init(tr),
            "ema": jax.tree.map(jnp.copy, tr) if config.ema.enabled else {},
        }

    return jax.jit(build, out_shardings=shardings_of(state_abstract))(
        {n: params[n] for n in trainable}, {n: params[n] for n in frozen})


def host_scalars(metrics: dict) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}
