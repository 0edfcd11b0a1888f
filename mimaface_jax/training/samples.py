"""Sample videos and the held-out cross-identity reenactment score of a SynthFaces run.

For held-out (validation) pairs (A, B): person A's first frame is the source, B's motion drives
it. The condition renders are A's shape under B's motion, and SynthFaces renders the exact
ground truth (A moving like B). Generation runs clip by clip with the DDIM sampler, CFG and,
in the video stage, ICA (each clip after the first sees the last ``generation_k`` generated
frames of the previous one). Weights: the EMA parameters when EMA is on.

Score: PSNR inside the motion mask (pixels where the ground truth differs from the source)
of the generated frames, next to the copy-the-source baseline (the source frame repeated).

Writes ``<workdir>/samples/step_<N>/``: ``video_<i>.mp4`` (source | driving | condition |
generated | ground truth per frame), ``grid_<i>.png`` (the same, frames as rows), and
``<workdir>/samples/metrics_step_<N>.json`` (also ``<workdir>/eval_metrics.json``, latest).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mimaface_jax.data import synth_render
from mimaface_jax.data.synth_faces import SynthFaces, SynthFacesConfig, cross_reenactment, motion_mask
from mimaface_jax.diffusion.samplers import ddim_sample
from mimaface_jax.diffusion.schedule import NoiseSchedule
from mimaface_jax.models import mimaface
from mimaface_jax.parallel import use_rules
from mimaface_jax.training import synth_source
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
        x = ddim_sample(denoise, noise, mc.schedule, config.sample.num_steps,
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


def _identity_id(name: str) -> int:
    return int(re.search(r"id(\d+)", name).group(1))


def _tfds_validation(config) -> tuple[list[dict], SynthFacesConfig, str]:
    """Validation clips of the SynthFaces dataset in ``data.mixture`` (TFDS ArrayRecord)."""
    import tensorflow_datasets as tfds

    from mimaface_jax.config_validation import parse_mixture
    from mimaface_jax.data import records
    from mimaface_jax.data.jpeg import decode_jpeg
    from mimaface_jax.training.data_source import resolve_dataset_dir

    for name in parse_mixture(config.data.mixture):
        path = resolve_dataset_dir(config.data.tfds_data_dir, name)
        metadata = json.loads((Path(path) / "metadata.json").read_text())
        if metadata.get(records.META_FORMAT) != records.STORED_MOTION_FORMAT or "generator" not in metadata:
            continue
        source = tfds.builder_from_directory(path).as_data_source("validation")
        videos = []
        for i in range(len(source)):
            rec = source[i]
            where = f"{path} validation record {i}"
            videos.append({"frames": np.stack([decode_jpeg(b, where) for b in rec["frames"]]),
                           "motion": np.asarray(rec["motion"], np.float32),
                           "identity_code": np.asarray(rec["identity_code"], np.float32),
                           "name": _text(rec["clip_id"]), "identity_id": _identity_id(_text(rec["speaker_id"]))})
        return videos, SynthFacesConfig(**metadata["generator"]), path
    raise ValueError(f"samples: data.mixture={config.data.mixture!r} has no SynthFaces dataset (the only data "
                     "with cross-identity ground truth); set sample.num_videos=0")


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def validation_videos(config, workdir: Path) -> tuple[list[dict], SynthFacesConfig, str]:
    """(held-out SynthFaces videos, the generator's config, where they came from)."""
    if config.data.source == "tfds":
        return _tfds_validation(config)
    data_dir = Path(config.data.synth_dir or workdir / "synth_faces")
    videos, _ = synth_source.load_split(data_dir, "validation", 1)
    for v in videos:
        v["identity_id"] = _identity_id(v["name"])
    return videos, synth_source.synth_faces_config(config), str(data_dir)


def write_samples(config, model, state, ae_params, workdir: Path, mesh, rules, log=print) -> dict | None:
    """Generates the held-out cross-reenactment samples and scores them (process 0 writes)."""
    step = int(np.asarray(state["step"]))
    use_ema = config.ema.enabled and config.sample.use_ema
    params = {**state["frozen"], **(state["ema"] if use_ema else state["trainable"])}
    videos, sf_config, data_dir = validation_videos(config, workdir)
    faces = SynthFaces(sf_config)
    mc = model.config
    t = min(v["motion"].shape[0] for v in videos)
    t = min(t, config.sample.num_clips * mc.num_frames) if mc.num_frames > 1 else min(t, 8)
    generate = make_clip_generator(config, model, mesh)
    write = jax.process_index() == 0  # every process generates (SPMD), process 0 writes
    out = workdir / "samples" / f"step_{step}"
    if write:
        out.mkdir(parents=True, exist_ok=True)
    rows = []
    with use_rules(mesh, rules):
        for i in range(min(config.sample.num_videos, len(videos))):
            a = videos[i]
            id_a = a["identity_id"]
            others = [v for v in videos[i + 1:] + videos[:i] if v["identity_id"] != id_a]
            if not others:
                raise ValueError(f"samples: the validation split of {data_dir} has one identity; "
                                 "cross-identity reenactment needs >= 2 (data.synth_validation_identities)")
            b = others[0]
            person_a = faces.identity(id_a)
            motion_b = b["motion"][:t]
            # A's first frame rendered exactly (a stored frame may be a JPEG: its artefacts
            # would put nearly every pixel into the motion mask)
            source = cross_reenactment(person_a, a["motion"][:1], config.data.resolution)[0]
            condition = np.stack([synth_render.render_condition(person_a, m, config.data.resolution) for m in motion_b])
            truth = cross_reenactment(person_a, motion_b, config.data.resolution)
            source_motion = a["motion"][0].astype(np.float32)
            generated = generate_video(config, model, generate, params, ae_params, source,
                                       a["identity_code"].astype(np.float32), motion_b.astype(np.float32),
                                       condition, jax.random.fold_in(jax.random.PRNGKey(config.seed), i),
                                       source_motion=source_motion,
                                       source_condition=synth_render.render_condition(
                                           person_a, source_motion, config.data.resolution))
            n = generated.shape[0]
            copy = np.broadcast_to(source, truth[:n].shape)
            mask = motion_mask(truth[:n], copy)
            rows.append({"pair": [a["name"], b["name"]], "frames": n,
                         "psnr_motion_mask": masked_psnr(generated, truth[:n], mask),
                         "psnr_motion_mask_copy_source": masked_psnr(copy, truth[:n], mask),
                         "mask_fraction": float(mask.mean())})
            if write:
                panel = np.concatenate([copy, b["frames"][:n], condition[:n], generated, truth[:n]], axis=2)
                imageio.mimwrite(out / f"video_{i}.mp4", list(np.repeat(np.repeat(panel, 2, 1), 2, 2)),
                                 fps=config.sample.fps, macro_block_size=1)
                imageio.imwrite(out / f"grid_{i}.png", np.concatenate(list(panel), axis=0))
    summary = {
        "step": step, "stage": config.stage, "pairs": rows,
        "mean_psnr_motion_mask": float(np.nanmean([r["psnr_motion_mask"] for r in rows])),
        "mean_psnr_motion_mask_copy_source": float(np.nanmean([r["psnr_motion_mask_copy_source"] for r in rows])),
        "params": "ema" if use_ema else "raw",
        "sampler": {"kind": "ddim", "steps": config.sample.num_steps, "guidance_scale": config.sample.guidance_scale,
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
        f"(copy-the-source baseline {summary['mean_psnr_motion_mask_copy_source']:.2f} dB)")
    return summary
