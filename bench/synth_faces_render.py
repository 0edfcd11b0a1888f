"""Frames per second per CPU core of the SynthFaces renderer at 64 and 256 px.

    python bench/synth_faces_render.py [--core N] [--frames T] [--repeats R]

Pins the process to one core (``os.sched_setaffinity``, cv2 single-threaded), samples one
motion sequence per identity (not timed), warms the per-identity caches (background, static
texture: once per identity and resolution, not timed), then times ``render_frames`` for the
RGB frames and for the condition (untextured shape) renders separately. The best of
``--repeats`` runs is printed as markdown table rows, as wall-clock fps and as fps of process
CPU time (``time.process_time``): on a shared machine other processes steal the pinned core,
which lowers the wall-clock number but not the CPU-time one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench_common import cpu_name, pin_to_core, use_repo


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--core", type=int, default=0, help="CPU core to pin to")
    p.add_argument("--frames", type=int, default=400, help="frames at 64 px (256 px: 1/8)")
    p.add_argument("--identities", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    pin_to_core(args.core)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    use_repo()
    import cv2
    import numpy as np

    from mimaface_jax.data import synth_motion as sm
    from mimaface_jax.data import synth_render as sr
    from mimaface_jax.data.synth_identity import sample_identity

    cv2.setNumThreads(1)
    print("| resolution | supersample | frames | RGB fps (wall / cpu) | condition fps "
          "(wall / cpu) | cpu |")
    print("|---|---|---|---|---|---|")
    for resolution in (64, 256):
        count = max(1, args.frames // args.identities // (1 if resolution == 64 else 8))
        jobs = []
        for k in range(args.identities):
            person = sample_identity(0, k)
            motion = sm.sample_motion(np.random.default_rng(k), count)
            sr.render_frames(person, motion[:1], resolution)                  # warm caches
            sr.render_frames(person, motion[:1], resolution, condition=True)
            jobs.append((person, motion))
        total = count * args.identities
        best = {}
        for condition in (False, True):
            wall = cpu = np.inf
            for _ in range(args.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                for person, motion in jobs:
                    sr.render_frames(person, motion, resolution, condition=condition)
                wall = min(wall, time.perf_counter() - t0)
                cpu = min(cpu, time.process_time() - c0)
            best[condition] = (total / wall, total / cpu)
        print(f"| {resolution} | {sr.DEFAULT_SUPERSAMPLE} | {total} | "
              f"{best[False][0]:.0f} / {best[False][1]:.0f} | "
              f"{best[True][0]:.0f} / {best[True][1]:.0f} | {cpu_name()}, 1 core |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
