"""XLA FLOPs of SD-1.5-scale generation per frame (abstract: nothing is allocated), and the
frames/s they imply on an H100 at a stated MFU.

One clip of ``configs/sd15_stage2_video.py`` at 512^2: F = 16 current frames, k = 3 ICA
context frames (S = 19 slots), 25 Euler steps with CFG 5 (each step ONE U-Net call of batch
2 x 19 frames), bf16 compute. The clip's work is lowered in three parts, each with
``jax.jit(...).lower(abstract inputs).cost_analysis()`` (XLA's HLO cost analysis, before
compilation), because XLA counts a while-loop body once and the sampler is a ``lax.scan``:

  prepare  VAE-encode the 19 condition renders and the source, CLIP on the source, MIA;
  step     one guided denoiser call (the sampler's loop body);
  decode   VAE-decode the 16 generated latents;

per clip = prepare + 25 x step + decode; per frame = per clip / 16.

    JAX_PLATFORMS=cpu .venv/bin/python bench/animate_sd15_flops.py [--steps 25] [--mfu 0.3,0.4]
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp

from mimaface_jax.config_files import load_module
from mimaface_jax.models import ica, mimaface
from mimaface_jax.parallel import use_rules

H100_BF16_DENSE = 989e12  # FLOP/s, H100 SXM dense bf16 tensor-core peak (NVIDIA's datasheet)


def flops(fn, *abstract) -> float:
    return float(jax.jit(fn).lower(*abstract).cost_analysis()["flops"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--mfu", default="0.3,0.4")
    args = p.parse_args()
    from pathlib import Path

    from mimaface_jax.inference.clip_layout import clip_layout
    from mimaface_jax.training import mesh_and_model
    from mimaface_jax.training.model_config import latent_downsample
    from mimaface_jax.training.train_step import clip_input, encode_frames

    repo = Path(__file__).resolve().parents[1]
    config = load_module(repo / "configs" / "sd15_stage2_video.py").get_config()
    config.mesh.fsdp = 1
    mesh, rules = mesh_and_model.build_mesh(config)
    model = mesh_and_model.abstract_model(config, mesh, rules)
    mc = model.config
    f, k, r = mc.num_frames, mc.ica.generation_k, config.data.resolution
    s = k + f
    hw, c = r // latent_downsample(config), mc.latent_channels
    d = mc.mia.motion_layout.size
    sds = jax.ShapeDtypeStruct
    params = {n: sds(a.shape, a.dtype) for n, a in model.abstract_params.items()}
    ae_params = {n: sds(a.shape, a.dtype) for n, a in model.ae_abstract.items()}
    layout_args = (jnp.asarray([k], jnp.int32), jnp.asarray([f], jnp.int32))

    def prepare(params, ae_params, renders, source, motion, identity):
        net, ae = model.spec.merge(params), model.ae_spec.merge(ae_params)
        layout = clip_layout(*layout_args, k, f, mc.ica.mode)
        cond = encode_frames(ae, renders, None)
        src = encode_frames(ae, source[:, None], None)
        tokens = net.appearance({"source_pixels": clip_input(source, mc.clip.image_size)})
        context = net.condition(tokens, motion, identity, frame_weights=layout.is_current.astype(motion.dtype))
        return cond, src, context

    def step(params, x, t, cond_latents, ctx_latents, context):
        net = model.spec.merge(params)
        layout = clip_layout(*layout_args, k, f, mc.ica.mode)
        conditioning = {"context": context, "cond_latents": cond_latents, "context_latents": ctx_latents,
                        "layout": layout}
        return mimaface.denoise(net, x, t, conditioning, args.guidance)

    def decode(ae_params, x):
        ae = model.ae_spec.merge(ae_params)
        return ae.decode(x.reshape(f, hw, hw, c) / ae.scaling_factor)

    with use_rules(mesh, rules):
        n_prepare = flops(prepare, params, ae_params, sds((1, s, r, r, 3), jnp.uint8), sds((1, r, r, 3), jnp.uint8),
                          sds((1, s, d), jnp.float32), sds((1, mc.mia.identity_dim), jnp.float32))
        lat = sds((1, s, hw, hw, c), jnp.float32)
        ctx_shape = jax.eval_shape(prepare, params, ae_params, sds((1, s, r, r, 3), jnp.uint8),
                                   sds((1, r, r, 3), jnp.uint8), sds((1, s, d), jnp.float32),
                                   sds((1, mc.mia.identity_dim), jnp.float32))[2]
        n_step = flops(step, params, lat, sds((1,), jnp.float32), lat, lat, ctx_shape)
        n_decode = flops(decode, ae_params, sds((1, f, hw, hw, c), jnp.float32))
    per_clip = n_prepare + args.steps * n_step + n_decode
    per_frame = per_clip / f
    out = {"resolution": r, "F": f, "k": k, "steps": args.steps, "guidance": args.guidance,
           "compute_dtype": config.precision.compute_dtype, "attention": config.model.unet.attention_implementation,
           "prepare_tflop": n_prepare / 1e12, "step_tflop": n_step / 1e12, "decode_tflop": n_decode / 1e12,
           "clip_tflop": per_clip / 1e12, "frame_tflop": per_frame / 1e12,
           "h100_frames_per_s": {m: float(m) * H100_BF16_DENSE / per_frame for m in args.mfu.split(",")}}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
