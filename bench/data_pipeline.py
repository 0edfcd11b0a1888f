"""Throughput of the grain input pipeline: training clips per second per worker.

Synthesised data, nothing downloaded: short videos made by warping skimage's astronaut along
smooth similarity motions are built into ``video_folder`` datasets with 64x64 and 512x512
crops (the real preprocessing chain: MediaPipe tracking, alignment, JPEG), and a
``synth_faces`` dataset at 64x64 (stored motion and condition renders). Then the pipeline runs
in ONE process with one read thread (``worker_count=0, read_threads=1``: the cost of one
worker) for each case, with the condition render at read time on and off for FaceMesh records.
One clip = k_max + F frames plus a source frame. Prints a markdown table.

    python bench/data_pipeline.py [--batches 6] [--batch-size 4] [--num-frames 16] [--k-max 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import cv2
import numpy as np


def _videos(root: str, size: int, face_scale: float, count: int, frames: int) -> None:
    from skimage import data

    from mimaface_jax.face.media_io import write_video

    image = data.astronaut()
    cx, cy = 225.0, 125.0
    for v in range(count):
        out = []
        for t in range(frames):
            m = cv2.getRotationMatrix2D((cx, cy), 8 * np.sin(t / 6 + v),
                                        face_scale * (1 + 0.05 * np.sin(t / 4 + v)))
            m[:, 2] += (size / 2 - cx + 4 * np.sin(t / 5), size / 2 - cy + 3 * np.cos(t / 7))
            out.append(cv2.warpAffine(image, m, (size, size), borderMode=cv2.BORDER_REFLECT))
        write_video(os.path.join(root, f"person{v}", "take.mp4"), np.stack(out), fps=25.0)


def _build_video_folder(work: str, crop: int, frames: int) -> str:
    import tensorflow_datasets as tfds

    from data_pipelines.common.builder import FaceVideoConfig
    from data_pipelines.video_folder import VideoFolder

    manual = os.path.join(work, f"videos{crop}")
    video_size = int(crop * 1.25) if crop >= 256 else 160
    _videos(manual, video_size, 0.72 * video_size / 160, 4, frames)
    config = FaceVideoConfig(name=f"bench{crop}", crop_size=crop, clip_length=frames,
                             min_clip_frames=frames, num_expression=16,
                             split_fractions=(("train", 1.0),))
    builder = VideoFolder(config=config, data_dir=os.path.join(work, "tfds"),
                          file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual))
    return str(builder.data_path)


def _build_synth(work: str, frames: int) -> str:
    import tensorflow_datasets as tfds

    from data_pipelines.synth_faces.builder import SynthFacesBuilder, SynthFacesBuilderConfig

    config = SynthFacesBuilderConfig(name="bench64", resolution=64, num_frames=frames,
                                     train_identities=4, validation_identities=0,
                                     test_identities=0, videos_per_identity=1)
    builder = SynthFacesBuilder(config=config, data_dir=os.path.join(work, "tfds"),
                                file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig())
    return str(builder.data_path)


def _measure(path: str, args, render: bool) -> tuple[float, float]:
    from mimaface_jax.data.pipeline import DatasetSource, PipelineConfig, make_iterator

    config = PipelineConfig(sources=(DatasetSource(path, "train"),), batch_size=args.batch_size,
                            num_frames=args.num_frames, k_max=args.k_max, seed=0,
                            render_condition=render, worker_count=0, read_threads=1,
                            shard_index=0, shard_count=1)
    it = make_iterator(config)
    next(it)  # warm-up (opening files, first decode)
    start = time.perf_counter()
    for _ in range(args.batches):
        next(it)
    seconds = time.perf_counter() - start
    clips = args.batches * args.batch_size
    return clips / seconds, 1000 * seconds / clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--k-max", type=int, default=4)
    args = parser.parse_args()
    frames = args.num_frames + args.k_max + 8
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for crop in (64, 512):
            path = _build_video_folder(work, crop, frames)
            for render in (True, False):
                rows.append((f"video_folder (FaceMesh)", f"{crop}^2", "yes" if render else "no",
                             *_measure(path, args, render)))
        path = _build_synth(work, frames)
        rows.append(("synth_faces (stored motion)", "64^2", "stored", *_measure(path, args, True)))
    s = args.k_max + args.num_frames
    print(f"\nclips of k_max + F = {s} frames + 1 source frame; batch {args.batch_size}; "
          f"{args.batches} timed batches; 1 process, 1 read thread\n")
    print("| records | resolution | condition render | clips/s per worker | ms per clip |")
    print("|---|---|---|---|---|")
    for name, res, render, rate, ms in rows:
        print(f"| {name} | {res} | {render} | {rate:.2f} | {ms:.1f} |")


if __name__ == "__main__":
    main()
