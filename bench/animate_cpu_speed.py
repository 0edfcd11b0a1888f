"""Generation speed and memory on CPU: the tiny demo model (``configs/tiny.py:video``, 64x64,
F = 4, K = 2, fp32, random weights) through the shared clip generator.

1. seconds per generated frame (steady state, compile excluded) for the demo's sampler (one
   DDIM step, no CFG) and for 25 DDIM steps with CFG 5; the compile time of each;
2. peak resident memory (ru_maxrss) of generating and streaming to an mp4 a video of T frames
   and of 4T frames, each in a fresh process: streaming means it should not grow with T.

    JAX_PLATFORMS=cpu .venv/bin/python bench/animate_cpu_speed.py [--frames 64] [--clips 6]

Prints a Markdown table (the BENCHMARKS.md "Generation" section).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_config():
    spec = importlib.util.spec_from_file_location("cfg_tiny", REPO / "configs" / "tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("video")


def make_generator(**overrides):
    from mimaface_jax.inference.generator import ClipGenerator, GenerationSettings
    from mimaface_jax.training import mesh_and_model

    config = load_config()
    mesh, rules = mesh_and_model.build_mesh(config)
    model = mesh_and_model.abstract_model(config, mesh, rules)
    params, ae = mesh_and_model.init_params(config, model, mesh, rules)
    return ClipGenerator(config, model, params, ae, mesh, rules, GenerationSettings.from_config(config, **overrides))


def inputs(gen, frames: int):
    import numpy as np

    rng = np.random.default_rng(0)
    r, d = gen.resolution, gen.motion_size
    cond = rng.integers(0, 256, (r, r, 3), dtype=np.uint8)
    return dict(source=rng.integers(0, 256, (r, r, 3), dtype=np.uint8),
                identity=rng.standard_normal(gen.config.model.mia.identity_dim).astype(np.float32),
                motion=rng.standard_normal((frames, d)).astype(np.float32),
                render=lambda a, b: np.broadcast_to(cond, (b - a, r, r, 3)),
                source_motion=np.zeros(d, np.float32), source_condition=cond)


def speed(clips: int, **overrides) -> dict:
    gen = make_generator(**overrides)
    x = inputs(gen, clips * gen.num_frames)
    results = list(gen.clips(x["source"], x["identity"], x["motion"], x["render"],
                             source_motion=x["source_motion"], source_condition=x["source_condition"]))
    steady = [c for c in results if not c.compiled]
    seconds = sum(c.seconds for c in steady)
    frames = sum(len(c.frames) for c in steady)
    return {"compile_s": sum(c.seconds for c in results if c.compiled), "s_per_frame": seconds / frames,
            "frames_timed": frames}


def memory_child(frames: int) -> None:
    """Generate ``frames`` frames and stream them to an mp4; print the peak RSS (MiB) as JSON."""
    from mimaface_jax.inference.video_out import VideoOutput

    gen = make_generator()
    x = inputs(gen, frames)
    out = Path(tempfile.mkdtemp()) / "long.mp4"
    t0 = time.perf_counter()
    with VideoOutput(out, 25.0) as video:
        for clip in gen.clips(x["source"], x["identity"], x["motion"], x["render"],
                              source_motion=x["source_motion"], source_condition=x["source_condition"]):
            for frame in clip.frames:
                video.write(frame)
        video.finish()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    print(json.dumps({"frames": frames, "peak_rss_mib": peak, "seconds": time.perf_counter() - t0}))


def memory(frames: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, __file__, "--memory-child", str(frames)], env=env, cwd=REPO,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=64, help="T of the memory comparison (and 4T)")
    p.add_argument("--clips", type=int, default=6, help="clips per speed measurement")
    p.add_argument("--memory-child", type=int, default=0)
    args = p.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    rows = []
    for name, overrides in (("demo sampler: DDIM 1 step, CFG 1", {}),
                            ("DDIM 25 steps, CFG 5", {"num_steps": 25, "guidance_scale": 5.0,
                                                      "timestep_spacing": "leading"})):
        r = speed(args.clips, **overrides)
        rows.append(f"| {name} | {r['s_per_frame']:.4f} | {r['compile_s']:.1f} | {r['frames_timed']} |")
    mem = [memory(args.frames), memory(4 * args.frames)]
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible; "
          f"tiny.py:video, 64x64, F = 4, K = 2, fp32, random weights")
    print("\n| sampler | s / generated frame | compile (s) | frames timed |\n| --- | --- | --- | --- |")
    print("\n".join(rows))
    print("\n| video length (frames) | peak RSS (MiB) | wall (s) |\n| --- | --- | --- |")
    for m in mem:
        print(f"| {m['frames']} | {m['peak_rss_mib']:.0f} | {m['seconds']:.1f} |")


if __name__ == "__main__":
    main()
