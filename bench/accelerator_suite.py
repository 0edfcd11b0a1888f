"""The accelerator numbers that matter, from one command on one GPU or TPU chip (designed for
under 8 minutes; not yet timed on one).

    .venv/bin/python bench/accelerator_suite.py --out workdirs/accelerator_suite [--trace DIR]   # GPU / TPU
    .venv/bin/python bench/accelerator_suite.py --tiny --out /tmp/suite   # CPU, toy model, ~1-3 min

Measures, with random weights (no checkpoint or data needed):

1. the SD-1.5 stage-2 train step (``configs/sd15_stage2_video.py``: 512^2, 4 + 16 frames, bf16,
   the config's remat, one clip per device, fsdp over all devices), built by the trainer's own
   code (``mimaface_jax.training``), once per attention implementation of
   ``mimaface_jax.models.attention.IMPLEMENTATIONS`` that the backend can run (splash: TPU only;
   cuDNN: GPU in half precision; ``auto`` is the program of the kernel it resolves to and is
   not compiled twice) -> step time, XLA's FLOP count, TFLOP/s, MFU against the chip's bf16
   peak (table below), XLA's planned memory and the measured peak. An implementation that
   runs out of device memory (XLA's RESOURCE_EXHAUSTED at compile or run time, or XLA's plan
   above the device's limit) is reported as "does not fit", and the suite goes on; with
   ``--trace DIR`` one more step of each is traced (``jax.profiler``) into ``DIR/<kernel>``;
2. generation of one clip with CFG (F = 16 frames, k = 3 ICA context frames, the config's
   guidance scale, 25 Euler steps by default, no remat) -> seconds per generated frame.

Each measurement runs in its own child process (so that each gets the whole device -- 95 % of
it for XLA's allocator unless XLA_PYTHON_CLIENT_MEM_FRACTION says otherwise --, its own
peak-memory counter, and an out-of-memory cannot poison the next); a first child only probes
the device. Order: the kernel ``auto`` picks, the generation, the other kernels, the plain
path last; no new measurement starts after ``--budget-s`` (420 s). Writes
``DIR/accelerator_suite.json`` and ``DIR/accelerator_suite.md``.

FLOPs: ``flops_per_step`` is XLA's count for the compiled program of that implementation
(it includes remat recompute; custom-call kernels -- cuDNN, Pallas splash -- are invisible to
it, so it undercounts them). ``reference_flops_per_step`` is XLA's count of the plain-attention
("xla") program before optimisation (lowered, never compiled; per device): the same work for
every implementation, used for TFLOP/s and MFU so that they compare across kernels.
Peak memory: ``device.memory_stats()["peak_bytes_in_use"]`` where the backend has it (GPU,
TPU); on CPU the child's maximum resident set size (host memory, includes the runtime).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_common

bench_common.use_repo()

REPO = Path(bench_common.REPO)
JSON_NAME, MD_NAME = "accelerator_suite.json", "accelerator_suite.md"
GIB = 1024 ** 3

# Dense bf16 peaks per chip, TFLOP/s (vendor datasheets / Cloud TPU docs; sparsity excluded).
# (pattern over jax's device_kind, chip, peak). First match wins, so the more specific first.
PEAK_BF16_TFLOPS = (
    (r"H200", "H200", 989.0),
    (r"H100.*(PCIe|NVL)", None, None),        # other clocks / power: give --peak-tflops
    (r"H100", "H100 SXM", 989.0),
    (r"A100", "A100", 312.0),
    (r"\bL4\b", "L4", 121.0),
    (r"TPU v4", "TPU v4", 275.0),
    (r"TPU v5 ?(lite|e)", "TPU v5e", 197.0),
    (r"TPU v5p?", "TPU v5p", 459.0),
    (r"TPU v6 ?(lite|e)", "TPU v6e", 918.0),
)

# The toy model of --tiny: every part of the SD-1.5 stage-2 model (KL-VAE, CLIP, MIA, the
# video U-Net with cross-attention and motion modules, F = 16 + k_max = 4), tiny widths, one
# U-Net level (compile time is most of a CPU run), 32^2 frames (16^2 latents). min_seq_len / chunk sizes are lowered so that the 256-token
# self-attention takes the kernel path, in tiles, as 4096 tokens do at full size.
TINY = {
    "model.unet.block_out_channels": (16,),
    "model.unet.down_block_types": ("CrossAttnDownBlock2D",),
    "model.unet.up_block_types": ("CrossAttnUpBlock2D",),
    "model.unet.layers_per_block": 1,
    "model.unet.num_attention_heads": 2,
    "model.unet.cross_attention_dim": 32,
    "model.unet.norm_num_groups": 8,
    "model.unet.motion_num_attention_heads": 2,
    "model.unet.motion_norm_num_groups": 8,
    "model.unet.attention_min_seq_len": 64,
    "model.unet.attention_chunk_q": 64,
    "model.unet.attention_chunk_kv": 128,
    "model.mia.num_heads": 2,
    "model.mia.motion_hidden": 16,
    "model.mia.identity_dim": 16,
    "model.mia.identity_hidden": 16,
    "model.mia.num_identity_tokens": 1,
    "model.mia.mapper_layers": 1,
    "model.mia.mapper_mlp_ratio": 1,
    "model.mia.num_expression": 8,
    "model.clip.image_size": 16,
    "model.clip.patch_size": 8,
    "model.clip.hidden_size": 16,
    "model.clip.num_hidden_layers": 1,
    "model.clip.num_attention_heads": 1,
    "model.clip.intermediate_size": 16,
    "model.clip.num_tokens": 5,
    "autoencoder.vae_block_out_channels": (8, 8),
    "autoencoder.vae_layers_per_block": 1,
    "autoencoder.vae_norm_num_groups": 4,
    "data.resolution": 32,
}


def log(message: str) -> None:
    print(f"[accelerator_suite] {message}", flush=True)


# ------------------------------------------------------------------------------------ config


def suite_config(tiny: bool, dtype: str, implementation: str, num_devices: int):
    """configs/sd15_stage2_video.py for this suite: one clip per device, fsdp over all of them."""
    from mimaface_jax.config_files import load_config

    c = load_config(REPO / "configs" / "sd15_stage2_video.py")
    if tiny:
        for dotted, value in TINY.items():
            *path, key = dotted.split(".")
            node = c
            for p in path:
                node = node[p]
            node[key] = value
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.data.global_batch_size = num_devices
    c.precision.compute_dtype = dtype
    c.model.unet.attention_implementation = implementation
    c.init.stage1_checkpoint = tempfile.mkdtemp()   # validated to exist; nothing is read
    return c


def model_and_state(config):
    """The trainer's mesh, abstract model, optimizer and abstract train state (allocates nothing)."""
    import jax

    from mimaface_jax.config_validation import validate
    from mimaface_jax.training.abstract_run import abstract_run

    validate(config, jax.device_count())
    return tuple(abstract_run(config))


def random_params(abstract: dict, seed: int) -> dict:
    """Random weights for ``{name: ShapeDtypeStruct with sharding}``, put on their shards:
    kernels N(0, 1 / fan_in), norm scales 1, biases 0, embeddings N(0, 0.02^2).

    Drawn on the host from one pool of 4 M normal values (each tensor a window of it, repeated
    where longer), not by the model's initialiser nor a jitted RNG: compiling either for
    SD-1.5's ~1500 tensors costs each child process tens of seconds, and the speed being
    measured does not depend on the values."""
    import jax
    import numpy as np

    rng = np.random.default_rng(seed)
    pool = rng.standard_normal(1 << 22).astype(np.float32)
    out = {}
    for name, x in sorted(abstract.items()):
        kind = name.rsplit(".", 1)[-1]
        if kind == "scale":
            host = np.ones(x.shape, x.dtype)
        elif kind == "bias":
            host = np.zeros(x.shape, x.dtype)
        else:
            std = float(np.prod(x.shape[:-1])) ** -0.5 if kind == "kernel" else 0.02
            window = np.resize(pool[int(rng.integers(0, pool.size)):], int(np.prod(x.shape)))
            host = (std * window).reshape(x.shape).astype(x.dtype)
        out[name] = jax.device_put(host, x.sharding)
    return out


def random_batch(shapes: dict, sharding, seed: int) -> dict:
    """Device arrays of the given ShapeDtypeStructs: uint8 pixels, unit-normal floats."""
    import jax
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for name, s in shapes.items():
        if s.dtype == np.uint8:
            x = rng.integers(0, 256, s.shape, dtype=np.uint8)
        else:
            x = rng.standard_normal(s.shape).astype(s.dtype)
        out[name] = jax.device_put(x, sharding)
    return out


# ------------------------------------------------------------------------------ measurements


def is_out_of_memory(error: BaseException) -> bool:
    import jax

    return isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(error)


def peak_memory() -> tuple[int, str]:
    """(bytes, source): the device allocator's peak, else this process's max RSS (CPU)."""
    import jax

    stats = jax.local_devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device memory_stats peak_bytes_in_use"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process max RSS (host; no device stats)"


def flops_of(analysis) -> float:
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis["flops"])


def probe(args) -> dict:
    """The device, and XLA's FLOP count of the plain-attention train step (lowered only; the
    lowered program is the global one, before SPMD partitioning: divided by the device count
    it is one device's share, comparable with a compiled program's per-device count)."""
    import jax
    import jaxlib

    from mimaface_jax.training import train_step

    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    config = suite_config(args.tiny, args.dtype, "xla", jax.device_count())
    t0 = time.perf_counter()
    mesh, rules, model, _, _, tx, state = model_and_state(config)
    lowered = train_step.compile_train_step(config, model, tx, state, mesh, rules)
    return {
        "backend": jax.default_backend(), "device_kind": device.device_kind,
        "device_count": jax.device_count(), "memory_limit_bytes": stats.get("bytes_limit"),
        "jax": jax.__version__, "jaxlib": jaxlib.__version__, "platform": platform.platform(),
        "reference_flops_per_step": flops_of(lowered.cost_analysis()) / jax.device_count(),
        "reference_lower_s": time.perf_counter() - t0,
        "params": int(sum(x.size for x in model.abstract_params.values())),
        "global_batch": config.data.global_batch_size,
        "frames_per_clip": config.model.num_frames + config.model.ica.k_max,
        "resolution": config.data.resolution, "remat": config.model.unet.remat_policy,
    }


def measure_train(args) -> dict:
    """One implementation's train step: compile, run ``--steps`` timed steps (+1 warm-up)."""
    import jax
    import numpy as np

    from mimaface_jax.parallel import batch_sharding
    from mimaface_jax.training import train_step

    impl = args.implementation
    config = suite_config(args.tiny, args.dtype, impl, jax.device_count())
    out = {"implementation": impl}
    t0 = time.perf_counter()
    mesh, rules, model, trainable, frozen, tx, abstract = model_and_state(config)
    lowered = train_step.compile_train_step(config, model, tx, abstract, mesh, rules)
    out["lower_s"] = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        compiled = lowered.compile()
        out["compile_s"] = time.perf_counter() - t0
        mem = compiled.memory_analysis()
        out.update(xla_argument_bytes=mem.argument_size_in_bytes, xla_output_bytes=mem.output_size_in_bytes,
                   xla_alias_bytes=mem.alias_size_in_bytes, xla_temp_bytes=mem.temp_size_in_bytes,
                   flops_per_step=flops_of(compiled.cost_analysis()))
        planned = mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes + mem.temp_size_in_bytes
        limit = (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit")
        if limit and planned > limit:
            return dict(out, status="does not fit",
                        reason=f"XLA plans {planned / GIB:.1f} GiB per device, the device has {limit / GIB:.1f} GiB")
        t0 = time.perf_counter()
        params = random_params(model.abstract_params, config.seed)
        ae_params = random_params(model.ae_abstract, config.seed + 1)
        state = train_step.initial_state(config, params, trainable, frozen, tx, abstract)
        del params
        batch = random_batch(train_step.batch_shapes(config), batch_sharding(mesh, rules), config.seed)
        jax.block_until_ready((state, batch))
        out["init_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        state, metrics = compiled(state, ae_params, batch)
        jax.block_until_ready(metrics)
        out["first_step_s"] = time.perf_counter() - t0
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            state, metrics = compiled(state, ae_params, batch)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t0)
        if args.trace:
            trace_dir = Path(args.trace) / impl
            with jax.profiler.trace(str(trace_dir)):
                state, metrics = compiled(state, ae_params, batch)
                jax.block_until_ready(metrics)
            out["trace_dir"] = str(trace_dir)
    except jax.errors.JaxRuntimeError as error:  # only out-of-memory is a result; the rest re-raise
        if not is_out_of_memory(error):
            raise
        return dict(out, status="does not fit", reason=str(error).splitlines()[0][:300])
    host = {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}
    peak, source = peak_memory()
    out.update(status="measured", steps=args.steps, step_s_median=statistics.median(times), step_s_min=min(times),
               loss=host["loss"], finite=bool(host["finite"]), peak_memory_bytes=peak, peak_memory_source=source)
    return out


def make_generate(config, model, sampler: str, num_steps: int, guidance: float, k: int):
    """jitted ``(params, ae_params, inputs, key) -> frames (B, F, H, W, 3) in [-1, 1]``: one clip
    with ``k`` ICA context frames and CFG, from the model functions the trainer's samples use
    (``generation_condition``, ``denoise_fn``, the samplers); VAE encode of the condition
    renders and decode of the result included."""
    import jax
    import jax.numpy as jnp

    from mimaface_jax.diffusion.samplers import ddim_sample, euler_sample
    from mimaface_jax.models import mimaface
    from mimaface_jax.training.model_config import latent_downsample
    from mimaface_jax.training.train_step import clip_input, encode_frames

    mc = model.config
    lat = config.data.resolution // latent_downsample(config)
    sample = {"euler": euler_sample, "ddim": ddim_sample}[sampler]

    @jax.jit
    def generate(params, ae_params, inputs, key):
        b, f = inputs["motion"].shape[:2]
        net = model.spec.merge(params)
        ae = model.ae_spec.merge(ae_params)
        batch = {"cond_latents": encode_frames(ae, inputs["condition"], None),   # (B, F, h, w, C)
                 "motion": inputs["motion"], "identity": inputs["identity"],
                 "source_pixels": clip_input(inputs["source"], mc.clip.image_size),
                 "context_cond_latents": encode_frames(ae, inputs["context_condition"], None),
                 "context_motion": inputs["context_motion"]}
        cond = mimaface.generation_condition(net, batch, context_frames=inputs["context_latents"], k=k)
        noise = jax.random.normal(key, (b, k + f, lat, lat, mc.latent_channels), jnp.float32)
        x = sample(mimaface.denoise_fn(net, cond, guidance), noise, mc.schedule, num_steps)[:, k:]
        pixels = ae.decode(x.reshape(b * f, *x.shape[2:]) / ae.scaling_factor)   # (B*F, H, W, 3)
        return pixels.reshape(b, f, *pixels.shape[1:])

    return generate


def measure_generation(args) -> dict:
    """Seconds per generated frame: one clip of F frames per device, ``--gen-repeats`` timed calls."""
    import jax
    import numpy as np

    from mimaface_jax.parallel import batch_sharding, use_rules
    from mimaface_jax.training.model_config import latent_channels, latent_downsample, motion_layout

    impl = args.implementation
    config = suite_config(args.tiny, args.dtype, impl, jax.device_count())
    # Inference keeps no activations for a backward pass: no remat (and nnx.remat inside the
    # sampler's scan over a model merged outside it is a flax TraceContextError).
    config.model.unet.remat_policy = "none"
    mc_k = config.model.ica.generation_k
    f, r, b = config.model.num_frames, config.data.resolution, jax.device_count()
    steps = args.gen_steps or config.sample.num_steps
    guidance = float(config.sample.guidance_scale)
    out = {"implementation": impl, "sampler": args.sampler, "sampler_steps": steps, "guidance_scale": guidance,
           "frames": f, "context_frames": mc_k, "clips": b}
    mesh, rules, model, *_ = model_and_state(config)
    lat = r // latent_downsample(config)
    rng = np.random.default_rng(0)
    d_motion = motion_layout(config).size
    host = {
        "condition": rng.integers(0, 256, (b, f, r, r, 3), dtype=np.uint8),
        "motion": rng.standard_normal((b, f, d_motion)).astype(np.float32),
        "identity": rng.standard_normal((b, config.model.mia.identity_dim)).astype(np.float32),
        "source": rng.integers(0, 256, (b, r, r, 3), dtype=np.uint8),
        "context_condition": rng.integers(0, 256, (b, mc_k, r, r, 3), dtype=np.uint8),
        "context_motion": rng.standard_normal((b, mc_k, d_motion)).astype(np.float32),
        "context_latents": rng.standard_normal((b, mc_k, lat, lat, latent_channels(config))).astype(np.float32),
    }
    try:
        with use_rules(mesh, rules):
            params = random_params(model.abstract_params, config.seed)
            ae_params = random_params(model.ae_abstract, config.seed + 1)
            inputs = {k: jax.device_put(v, batch_sharding(mesh, rules)) for k, v in host.items()}
            generate = make_generate(config, model, args.sampler, steps, guidance, mc_k)
            key = jax.random.PRNGKey(0)
            t0 = time.perf_counter()
            frames = jax.block_until_ready(generate(params, ae_params, inputs, key))
            out["first_call_s"] = time.perf_counter() - t0   # compile + one clip
            times = []
            for i in range(args.gen_repeats):
                t0 = time.perf_counter()
                frames = jax.block_until_ready(generate(params, ae_params, inputs, jax.random.fold_in(key, i)))
                times.append(time.perf_counter() - t0)
    except jax.errors.JaxRuntimeError as error:  # only out-of-memory is a result; the rest re-raise
        if not is_out_of_memory(error):
            raise
        return dict(out, status="does not fit", reason=str(error).splitlines()[0][:300])
    if frames.shape != (b, f, r, r, 3):
        raise AssertionError(f"generated frames {frames.shape}, expected {(b, f, r, r, 3)}")
    peak, source = peak_memory()
    clip_s = statistics.median(times)
    out.update(status="measured", repeats=args.gen_repeats, clip_s_median=clip_s, clip_s_min=min(times),
               seconds_per_frame=clip_s / f, frames_per_second_all_devices=b * f / clip_s,
               output_abs_mean=float(np.abs(np.asarray(frames, np.float32)).mean()),
               peak_memory_bytes=peak, peak_memory_source=source)
    return out


# ------------------------------------------------------------------------------------ parent


def chip_peak(device_kind: str, override: float | None) -> tuple[float | None, str]:
    if override is not None:
        return override, f"--peak-tflops {override:g}"
    for pattern, chip, peak in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_kind):
            if peak is None:
                break
            return peak, f"{chip} dense bf16 peak (table in bench/accelerator_suite.py)"
    return None, f"no peak known for {device_kind!r}: pass --peak-tflops to get MFU"


def runnable(implementation: str, backend: str, dtype: str) -> str | None:
    """Why ``implementation`` cannot run on ``backend`` at ``dtype`` (None: it can)."""
    if implementation == "splash" and backend != "tpu":
        return f"splash is a TPU kernel; the backend is {backend}"
    if implementation == "cudnn" and backend != "gpu":
        return f"cuDNN attention needs a GPU; the backend is {backend}"
    if implementation == "cudnn" and dtype not in ("bfloat16", "float16"):
        return f"cuDNN attention runs in bf16/fp16; this run is {dtype}"
    return None


def run_child(kind: str, args, implementation: str = "") -> dict:
    """Runs one measurement in a fresh process; its JSON result, or a 'failed' record."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--child-out", str(result),
               "--implementation", implementation or "xla", *args.forward]
        # the child gets (nearly) the whole device, as launch/single_gpu.sh gives the trainer
        env = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.95", **os.environ}
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(cmd, timeout=args.child_timeout, env=env).returncode
        except subprocess.TimeoutExpired:
            return {"implementation": implementation, "status": "failed",
                    "reason": f"timed out after {args.child_timeout} s"}
        wall = time.perf_counter() - t0
        if rc != 0 or not result.exists():
            return {"implementation": implementation, "status": "failed",
                    "reason": f"child exited with code {rc} (its output is above)", "wall_s": wall}
        return dict(json.loads(result.read_text()), wall_s=wall)


def add_rates(row: dict, reference_flops: float, peak: float | None) -> dict:
    if row.get("status") != "measured":
        return row
    t = row["step_s_median"]
    row["reference_flops_per_step"] = reference_flops
    row["tflops_per_s"] = reference_flops / t / 1e12
    row["xla_tflops_per_s"] = row["flops_per_step"] / t / 1e12
    row["mfu"] = row["tflops_per_s"] / peak if peak else None
    return row


def fmt_bytes(n) -> str:
    return "-" if n is None else f"{n / GIB:.2f} GiB"


def markdown(report: dict) -> str:
    d, p = report["device"], report["device"]
    lines = [
        f"Device: {d['device_kind']} x {d['device_count']} ({d['backend']}; jax {d['jax']}), "
        f"{'--tiny (toy model, ' + report['dtype'] + ')' if report['tiny'] else 'SD-1.5 stage 2, ' + report['dtype']}; "
        f"{p['global_batch']} clip(s) of {p['frames_per_clip']} frames at {p['resolution']}^2, remat "
        f"{p['remat']}, {p['params'] / 1e9:.3f} B params. Peak: {report['peak_source']}.",
        "",
        f"Command: `{report['command']}`",
        "",
        "| attention | status | step (median / min) | XLA FLOP/step (this program) | TFLOP/s (reference FLOPs) | MFU "
        "| XLA args / temps | peak memory | compile |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["train"]:
        if r.get("status") == "measured":
            mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %"
            lines.append(
                f"| {r['implementation']} | measured | {r['step_s_median']:.3f} / {r['step_s_min']:.3f} s "
                f"| {r['flops_per_step'] / 1e12:.2f} T | {r['tflops_per_s']:.1f} | {mfu} "
                f"| {fmt_bytes(r['xla_argument_bytes'])} / {fmt_bytes(r['xla_temp_bytes'])} "
                f"| {fmt_bytes(r['peak_memory_bytes'])} | {r['compile_s']:.0f} s |")
        else:
            lines.append(f"| {r['implementation']} | {r['status']} | {r.get('reason', '')} |  |  |  |  |  |  |")
    lines.append("")
    lines.append(f"Reference FLOPs per device and step (the plain-attention program as lowered, before "
                 f"optimisation; TFLOP/s and MFU use it for every kernel): "
                 f"{d['reference_flops_per_step'] / 1e12:.2f} T.")
    g = report.get("generation")
    if g:
        lines += ["", "| generation | status | sampler | frames (+ context) | clip (median) | s per frame "
                  "| frames/s (all devices) | peak memory | first call (compile) |", "|---|---|---|---|---|---|---|---|---|"]
        if g.get("status") == "measured":
            lines.append(
                f"| {g['implementation']} | measured | {g['sampler']} x {g['sampler_steps']}, CFG {g['guidance_scale']:g} "
                f"| {g['frames']} (+{g['context_frames']}) x {g['clips']} | {g['clip_s_median']:.2f} s "
                f"| {g['seconds_per_frame']:.3f} s | {g['frames_per_second_all_devices']:.2f} "
                f"| {fmt_bytes(g['peak_memory_bytes'])} | {g['first_call_s']:.0f} s |")
        else:
            lines.append(f"| {g.get('implementation')} | {g['status']} | {g.get('reason', '')} |  |  |  |  |  |  |")
    return "\n".join(lines) + "\n"


def parent(args) -> int:
    from mimaface_jax.models.attention import IMPLEMENTATIONS, resolve_implementation

    wanted = args.implementations.split(",") if args.implementations else list(IMPLEMENTATIONS)
    unknown = [i for i in wanted if i not in IMPLEMENTATIONS]
    if unknown:
        log(f"--implementations: unknown {unknown}; choose from {IMPLEMENTATIONS}")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log("probing the device (and lowering the plain-attention step for its FLOP count) ...")
    device = run_child("probe", args)
    if device.get("status") == "failed":
        log(f"the probe failed: {device['reason']}")
        return 1
    backend = device["backend"]
    peak, peak_source = chip_peak(device["device_kind"], args.peak_tflops)
    log(f"{device['device_kind']} x {device['device_count']} ({backend}); {peak_source}")
    # Order: auto's kernel (the configs' choice), then generation, then the other kernels, the
    # plain path last (the largest; at full size it does not fit 80 GB). Past --budget-s
    # nothing new starts, so the numbers that matter come first.
    auto = resolve_implementation("auto", backend, args.dtype)
    first = [i for i in wanted if i in ("auto", auto)]
    rest = sorted((i for i in wanted if i not in first), key=lambda i: i == "xla")

    def over_budget() -> str | None:
        spent = time.perf_counter() - started
        if args.budget_s and spent > args.budget_s:
            return f"not started: {spent:.0f} s spent, over --budget-s {args.budget_s}"
        return None

    def train_row(impl: str) -> dict:
        concrete = resolve_implementation(impl, backend, args.dtype)
        why = runnable(concrete, backend, args.dtype)
        if why:
            row = {"implementation": impl, "status": "skipped", "reason": why}
        elif concrete != impl and concrete in wanted:  # "auto": the very program of its kernel
            row = {"implementation": impl, "status": "same program", "same_as": concrete,
                   "reason": f"auto resolves to {concrete} on {backend} in {args.dtype}"}
        elif over_budget():
            row = {"implementation": impl, "status": "skipped", "reason": over_budget()}
        else:
            log(f"train step, {impl}: compiling and running in a child process ...")
            row = add_rates(run_child("train", args, impl), device["reference_flops_per_step"], peak)
        log(f"train step, {impl}: {row['status']}"
            + (f", {row['step_s_median']:.3f} s/step" if row["status"] == "measured" else f" ({row.get('reason')})"))
        return row

    def generation_row() -> dict:
        impl = args.generation_attention
        why = runnable(resolve_implementation(impl, backend, args.dtype), backend, args.dtype) or over_budget()
        if why:
            row = {"implementation": impl, "status": "skipped", "reason": why}
        else:
            log(f"generation ({impl} attention): compiling and running in a child process ...")
            row = run_child("generate", args, impl)
        log(f"generation: {row['status']}"
            + (f", {row['seconds_per_frame']:.3f} s per frame" if row["status"] == "measured" else ""))
        return row

    rows = [train_row(i) for i in first]
    generation = None if args.skip_generation else generation_row()
    rows += [train_row(i) for i in rest]
    report = {
        "suite": "bench/accelerator_suite.py", "tiny": args.tiny, "dtype": args.dtype,
        "command": " ".join(["python", "bench/accelerator_suite.py", *args.argv]),
        "device": device, "peak_bf16_tflops": peak, "peak_source": peak_source,
        "auto_resolves_to": auto, "train": rows, "generation": generation,
        "total_s": time.perf_counter() - started,
    }
    (out / JSON_NAME).write_text(json.dumps(report, indent=1, allow_nan=True))
    (out / MD_NAME).write_text(markdown(report))
    print(markdown(report), flush=True)
    log(f"wrote {out / JSON_NAME} and {out / MD_NAME} in {report['total_s']:.0f} s")
    failed = [r["implementation"] for r in rows + [generation or {}] if r.get("status") == "failed"]
    if failed:
        log(f"failed: {failed}")
        return 1
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for accelerator_suite.json / .md")
    parser.add_argument("--tiny", action="store_true", help="the toy model (CPU, seconds), same code")
    parser.add_argument("--dtype", choices=("bfloat16", "float32", "float16"),
                        help="compute dtype (default: bfloat16; float32 with --tiny)")
    parser.add_argument("--implementations", default="",
                        help="comma-separated subset of the attention IMPLEMENTATIONS (default: all)")
    parser.add_argument("--steps", type=int, help="timed train steps after the warm-up (default 5; --tiny 2)")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--generation-attention", default="auto", help="attention of the generation run")
    parser.add_argument("--sampler", choices=("euler", "ddim"), default="euler")
    parser.add_argument("--gen-steps", type=int, default=0, help="sampler steps (default: the config's, 25; --tiny 2)")
    parser.add_argument("--gen-repeats", type=int, help="timed generation calls (default 2; --tiny 1)")
    parser.add_argument("--trace", default="", help="write a profiler trace of one train step per implementation here")
    parser.add_argument("--peak-tflops", type=float, help="the chip's peak TFLOP/s (overrides the table)")
    parser.add_argument("--budget-s", type=int, default=420,
                        help="start no new measurement after this many seconds (0: no limit; default 420)")
    parser.add_argument("--child-timeout", type=int, default=900, help="seconds per child process")
    # internal: a child's job
    parser.add_argument("--child", choices=("probe", "train", "generate"), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--implementation", default="xla", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("steps", "gen_repeats", "gen_steps", "child_timeout", "budget_s"):
        value = getattr(args, name)
        if value is not None and value < (0 if name in ("gen_steps", "budget_s") else 1):
            low = 0 if name in ("gen_steps", "budget_s") else 1
            parser.error(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        parser.error(f"--peak-tflops must be > 0, got {args.peak_tflops}")
    args.dtype = args.dtype or ("float32" if args.tiny else "bfloat16")
    args.steps = args.steps or (2 if args.tiny else 5)
    args.gen_repeats = args.gen_repeats or (1 if args.tiny else 2)
    args.gen_steps = args.gen_steps or (2 if args.tiny else 0)
    args.argv = list(argv)
    # what every child gets from the parent's command line
    args.forward = (["--tiny"] if args.tiny else []) + [
        "--out", args.out, "--dtype", args.dtype, "--steps", str(args.steps), "--sampler", args.sampler,
        "--gen-steps", str(args.gen_steps), "--gen-repeats", str(args.gen_repeats)] + (
        ["--trace", args.trace] if args.trace else [])
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.child:
        return parent(args)
    result = {"probe": probe, "train": measure_train, "generate": measure_generation}[args.child](args)
    Path(args.child_out).write_text(json.dumps(result, allow_nan=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
