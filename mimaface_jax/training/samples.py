"""Sample videos of a training run and their held-out reenactment score.

The tasks (``sample_tasks.py``): on SynthFaces, CROSS-identity reenactment with exact ground
truth (person A's first frame driven by person B's motion); on real FaceMesh data, SELF
reenactment (a held-out clip's first frame driven by the clip itself). Generation runs clip by
clip with the DDIM sampler, CFG and, in the video stage, ICA (each clip after the first sees
the last ``generation_k`` generated frames of the previous one; with ``sample.source_as_context``
the first clip sees the source). Weights: the EMA parameters when EMA is on.

Score: PSNR inside the motion mask (pixels where the ground truth differs from the source) of
the generated frames, next to the copy-the-source baseline (the source frame repeated).

Writes ``<workdir>/samples/step_<N>/``: ``video_<i>.mp4`` (source | driving | condition |
generated | ground truth per frame), ``grid_<i>.png`` (the same, frames as rows), and
``<workdir>/samples/metrics_step_<N>.json`` (also ``<workdir>/eval_metrics.json``, latest).
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mimaface_jax.data.synth_faces import motion_mask
from mimaface_jax.diffusion.samplers import ddim_sample, euler_sample
from mimaface_jax.diffusion.schedule import NoiseSchedule
from mimaface_jax.face.media_io import write_image, write_video
from mimaface_jax.models import mimaface
from mimaface_jax.parallel import use_rules
from mimaface_jax.training import sample_tasks
from mimaface_jax.training.model_config import latent_downsample
from mimaface_jax.training.train_step import clip_input, encode_frames


def masked_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 255) over the pixels where ``mask`` (..., H, W) is True."""
    if not mask.any():
        return float("nan")
    diff = (pred.astype(np.float64) - target.astype(np.float64))[mask]
    mse = max(float(np.mean(diff ** 2)), 1e-10)
    return 10.0 * np.log10(255.0 ** 2 / mse)


def _to_uint8(x) -> np.ndarray:
    return np.clip(np.round((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def clip_denoised(denoise, schedule_config, limit: float):
    """``denoise(x, t)`` whose implied clean sample x0 is clipped to [-limit, limit] (the
    prediction is rewritten in the model's parameterisation so that DDIM sees the clipped
    x0 and the matching epsilon). For pixel-like latents (space-to-depth), where it keeps an
    early, poorly-denoised step from pushing the trajectory off the data range."""
    schedule = NoiseSchedule.create(schedule_config)
    kind = schedule_config.prediction_type

    def clipped(x, t):  # x (B, S, h, w, C), t (B,)
        out = denoise(x, t)
        if kind == "sample":
            return jnp.clip(out, -limit, limit)
        shape = (-1,) + (1,) * (x.ndim - 1)
        sa = schedule.sqrt_alphas_cumprod[t].reshape(shape)
        sb = schedule.sqrt_one_minus_alphas_cumprod[t].reshape(shape)
        x0 = sa * x - sb * out if kind == "v_prediction" else (x - sb * out) / sa
        x0 = jnp.clip(x0, -limit, limit)
        eps = (x - sa * x0) / sb
        return sa * eps - sb * x0 if kind == "v_prediction" else eps

    return clipped


def make_clip_generator(config, model, mesh):
    """jitted ``(params, ae_params, inputs, key, k) -> (latents, pixels)`` for k context frames.

    SPMD over ``mesh``: every process runs it with the same host inputs (numpy) and its shards
    of the parameters; the noise is drawn inside from ``key`` and the outputs are replicated, so
    any process can read them (process 0 writes them)."""
    mc = model.config
    scale = float(config.sample.guidance_scale)
    limit = float(config.sample.clip_denoised)
    lat_hw = config.data.resolution // latent_downsample(config)
    replicated = NamedSharding(mesh, PartitionSpec())

    @functools.partial(jax.jit, static_argnames=("k",), out_shardings=replicated)
    def generate(params, ae_params, inputs, key, k: int):
        b, f = inputs["motion"].shape[:2]
        noise = jax.random.normal(key, (b, k + f, lat_hw, lat_hw, mc.latent_channels), jnp.float32)
        net = model.spec.merge(params)
        ae = model.ae_spec.merge(ae_params)
        batch = {"cond_latents": encode_frames(ae, inputs["condition"], None),
                 "motion": inputs["motion"], "identity": inputs["identity"]}
        if mc.clip is not None:
            batch["source_pixels"] = clip_input(inputs["source"], mc.clip.image_size)
        context = None
        if k > 0:
            batch["context_cond_latents"] = encode_frames(ae, inputs["context_condition"], None)
            batch["context_motion"] = inputs["context_motion"]
            context = (inputs["context_latents"] if "context_latents" in inputs
                       else encode_frames(ae, inputs["context_frames"], None))
        cond = mimaface.generation_condition(net, batch, context_frames=context, k=k)
        denoise = mimaface.denoise_fn(net, cond, scale)
        if limit > 0:
            denoise = clip_denoised(denoise, mc.schedule, limit)
        sampler = ddim_sample if config.sample.sampler == "ddim" else euler_sample
        x = sampler(denoise, noise, mc.schedule, config.sample.num_steps,
                    timestep_spacing=config.sample.timestep_spacing)
        x = x[:, k:]  # the current frames (B, F, h, w, C)
        b, f = x.shape[:2]
        pixels = ae.decode(x.reshape(b * f, *x.shape[2:]) / ae.scaling_factor)
        return x, pixels.reshape(b, f, *pixels.shape[1:])

    return generate


def generate_video(config, model, generate, params, ae_params, source, identity, motion, condition, rng,
                   source_motion=None, source_condition=None):
    """Frames (T, H, W, 3) uint8 for T = len(motion), clip by clip (ICA context between clips).

    With ``sample.source_as_context`` (video stage) the FIRST clip gets the source frame as its
    ICA context (repeated ``generation_k`` times, with its own motion ``source_motion`` (D,)
    and condition render ``source_condition`` (H, W, 3)), so that the temporal attention can
    take the appearance from it as it does from a previous clip's frames."""
    mc = model.config
    f, t = mc.num_frames, motion.shape[0]
    k_gen = mc.ica.generation_k if mc.ica.k_max > 0 else 0
    frames, latents = [], []
    anchor = bool(config.sample.source_as_context) and k_gen > 0
    if anchor and (source_motion is None or source_condition is None):
        raise ValueError("sample.source_as_context needs the source frame's motion and condition render")
    for start in range(0, t - t % f, f):
        k = k_gen if (latents or anchor) else 0
        inputs = {"condition": condition[None, start:start + f], "motion": motion[None, start:start + f],
                  "source": source[None], "identity": identity[None]}
        if k and not latents:  # first clip, anchored on the source
            inputs.update(context_condition=np.repeat(source_condition[None, None], k, axis=1),
                          context_motion=np.repeat(source_motion[None, None], k, axis=1),
                          context_frames=np.repeat(source[None, None], k, axis=1))
        elif k:
            inputs.update(context_condition=condition[None, start - k:start],
                          context_motion=motion[None, start - k:start],
                          context_latents=np.concatenate(latents, axis=1)[:, -k:])
        key = np.asarray(jax.random.fold_in(rng, start))  # host value: the same on every process
        x, pixels = generate(params, ae_params, inputs, key, k=k)
        latents.append(np.asarray(x))
        frames.append(_to_uint8(pixels[0]))
    return np.concatenate(frames, axis=0)


def write_samples(config, model, state, ae_params, workdir: Path, mesh, rules, log=print) -> dict:
    """Generates the held-out reenactment samples and scores them (every process generates,
    process 0 writes)."""
    start = time.perf_counter()
    step = int(np.asarray(state["step"]))
    use_ema = config.ema.enabled and config.sample.use_ema
    params = {**state["frozen"], **(state["ema"] if use_ema else state["trainable"])}
    mc = model.config
    frames = config.sample.num_clips * mc.num_frames if mc.num_frames > 1 else 8
    tasks, where = sample_tasks.held_out_tasks(config, workdir, config.sample.num_videos, frames)
    generate = make_clip_generator(config, model, mesh)
    write = jax.process_index() == 0
    out = workdir / "samples" / f"step_{step}"
    if write:
        out.mkdir(parents=True, exist_ok=True)
    rows = []
    with use_rules(mesh, rules):
        for i, task in enumerate(tasks):
            generated = generate_video(config, model, generate, params, ae_params, task["source"], task["identity"],
                                       task["motion"], task["condition"],
                                       jax.random.fold_in(jax.random.PRNGKey(config.seed), i),
                                       source_motion=task["source_motion"], source_condition=task["source_condition"])
            n = generated.shape[0]
            truth = task["truth"][:n]
            copy = np.broadcast_to(task["source"], truth.shape)
            mask = motion_mask(truth, copy, threshold=task["mask_threshold"])
            rows.append({"task": task["name"], "kind": task["kind"], "frames": n,
                         "psnr_motion_mask": masked_psnr(generated, truth, mask),
                         "psnr_motion_mask_copy_source": masked_psnr(copy, truth, mask),
                         "mask_fraction": float(mask.mean())})
            if write:
                panel = np.concatenate([copy, task["driving"][:n], task["condition"][:n], generated, truth], axis=2)
                write_video(out / f"video_{i}.mp4", np.repeat(np.repeat(panel, 2, 1), 2, 2), config.sample.fps)
                write_image(out / f"grid_{i}.png", np.concatenate(list(panel), axis=0))
    summary = {
        "step": step, "stage": config.stage, "data": where, "split": config.sample.split, "tasks": rows,
        "mean_psnr_motion_mask": float(np.nanmean([r["psnr_motion_mask"] for r in rows])),
        "mean_psnr_motion_mask_copy_source": float(np.nanmean([r["psnr_motion_mask_copy_source"] for r in rows])),
        "params": "ema" if use_ema else "raw",
        "sampler": {"kind": config.sample.sampler, "steps": config.sample.num_steps, "guidance_scale": config.sample.guidance_scale,
                    "clip_denoised": config.sample.clip_denoised, "timestep_spacing": config.sample.timestep_spacing,
                    "ica_generation_k": mc.ica.generation_k if mc.ica.k_max else 0,
                    "source_as_context": bool(config.sample.source_as_context)},
    }
    if not write:
        return summary
    text = json.dumps(summary, indent=1)
    (workdir / "samples" / f"metrics_step_{step}.json").write_text(text)
    (workdir / "eval_metrics.json").write_text(text)
    log(f"samples: {out}; PSNR in motion mask {summary['mean_psnr_motion_mask']:.2f} dB "
        f"(copy-the-source baseline {summary['mean_psnr_motion_mask_copy_source']:.2f} dB; "
        f"{len(rows)} {rows[0]['kind']}-reenactment videos in {time.perf_counter() - start:.0f}s)")
    return summary
