"""Sample videos of a training run and their held-out reenactment score.

The tasks (``sample_tasks.py``): on SynthFaces, CROSS-identity reenactment with exact ground
truth (person A's first frame driven by person B's motion); on real FaceMesh data, SELF
reenactment (a held-out clip's first frame driven by the clip itself). Generation is
``inference.generator.ClipGenerator``, the generator of ``python -m mimaface_jax.animate``:
clip by clip with ``sample.sampler`` (DDIM / Euler), CFG and, in the video stage, ICA (each
clip after the first sees the last ``generation_k`` generated frames; with
``sample.source_as_context`` the first clip sees the source), every frame of a task including
a shorter last clip. Task i uses seed ``config.seed + i``. Weights: the EMA parameters when EMA
is on.

Score: PSNR inside the motion mask (pixels where the ground truth differs from the source) of
the generated frames, next to the copy-the-source baseline (the source frame repeated).

Writes ``<workdir>/samples/step_<N>/``: ``video_<i>.mp4`` (source | driving | condition |
generated | ground truth per frame), ``grid_<i>.png`` (the same, frames as rows), and
``<workdir>/samples/metrics_step_<N>.json`` (also ``<workdir>/eval_metrics.json``, latest).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np

from mimaface_jax.data.synth_faces import motion_mask
from mimaface_jax.face.media_io import write_image, write_video
from mimaface_jax.inference.generator import ClipGenerator, GenerationSettings
from mimaface_jax.training import sample_tasks


def masked_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 255) over the pixels where ``mask`` (..., H, W) is True."""
    if not mask.any():
        return float("nan")
    diff = (pred.astype(np.float64) - target.astype(np.float64))[mask]
    mse = max(float(np.mean(diff ** 2)), 1e-10)
    return 10.0 * np.log10(255.0 ** 2 / mse)


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
    settings = GenerationSettings.from_config(config)
    generator = ClipGenerator(config, model, params, ae_params, mesh, rules, settings)
    write = jax.process_index() == 0
    out = workdir / "samples" / f"step_{step}"
    if write:
        out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, task in enumerate(tasks):
        condition = task["condition"]
        generated = generator.video(task["source"], task["identity"], task["motion"],
                                    lambda a, b, condition=condition: condition[a:b],
                                    source_motion=task["source_motion"], source_condition=task["source_condition"],
                                    seed=settings.seed + i)
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
        "sampler": {"kind": settings.sampler, "steps": settings.num_steps, "guidance_scale": settings.guidance_scale,
                    "clip_denoised": settings.clip_denoised, "timestep_spacing": settings.timestep_spacing,
                    "ica_generation_k": generator.num_context,
                    "source_as_context": settings.source_as_context},
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
