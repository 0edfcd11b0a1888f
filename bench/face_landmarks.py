"""Frames per second per CPU core of face tracking (MediaPipe) + motion extraction.

    python bench/face_landmarks.py [VIDEO] [--core N] [--frames T] [--repeats R]

Pins the process to one core (``os.sched_setaffinity``) before MediaPipe starts its threads,
decodes the video up front (decoding is not timed), then times ``FaceLandmarker.track_video``
(landmarks) and ``MotionExtractor.extract`` (pose, expression, gaze) separately; the best of
``--repeats`` runs is reported as a markdown table row, both as wall-clock fps and as fps of
process CPU time (``time.process_time``, all threads): on a shared machine other processes
steal the pinned core, which lowers the wall-clock number but not the CPU-time one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench_common import REPO, cpu_name, pin_to_core, use_repo
DEFAULT_VIDEO = os.path.join(REPO, "..", "shared", "fixtures", "faces",
                             "driving_vox_id10291.mp4")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("video", nargs="?", default=DEFAULT_VIDEO)
    p.add_argument("--core", type=int, default=0, help="CPU core to pin to")
    p.add_argument("--frames", type=int, default=0, help="use only the first T frames (0: all)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    pin_to_core(args.core)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    use_repo()
    import numpy as np

    from mimaface_jax.face.landmarks import FaceLandmarker
    from mimaface_jax.face.media_io import read_video
    from mimaface_jax.face.motion import MotionExtractor

    frames, fps = read_video(args.video)
    if args.frames:
        frames = frames[:args.frames]
    t_count, h, w = frames.shape[:3]
    extractor = MotionExtractor()

    best_lm = best_motion = best_cpu_lm = best_cpu_motion = np.inf
    with FaceLandmarker() as landmarker:
        landmarker.track_video(frames[:2])  # warm-up: graph start-up is not timed
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            track = landmarker.track_video(frames)
            t1, c1 = time.perf_counter(), time.process_time()
            extractor.extract(track.landmarks, (w, h))
            t2, c2 = time.perf_counter(), time.process_time()
            best_lm, best_motion = min(best_lm, t1 - t0), min(best_motion, t2 - t1)
            best_cpu_lm = min(best_cpu_lm, c1 - c0)
            best_cpu_motion = min(best_cpu_motion, c2 - c1)
    found = int(track.found.sum())
    print("| video | frames (found) | size | landmarks fps (wall / cpu) | "
          "motion fps (wall / cpu) | total fps (wall / cpu) | cpu |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {os.path.basename(args.video)} | {t_count} ({found}) | {w}x{h} | "
          f"{t_count / best_lm:.1f} / {t_count / best_cpu_lm:.1f} | "
          f"{t_count / best_motion:.0f} / {t_count / max(best_cpu_motion, 1e-9):.0f} | "
          f"{t_count / (best_lm + best_motion):.1f} / "
          f"{t_count / (best_cpu_lm + best_cpu_motion):.1f} | {cpu_name()}, 1 core |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
