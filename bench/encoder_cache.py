"""Pipeline throughput with and without the encoder cache, and the cache's size per frame.

A ``video_folder`` dataset with 512x512 crops is built from warped-astronaut videos (as in
``bench/data_pipeline.py``), and its encoder cache is written with stand-in encoders whose
OUTPUT shapes are SD-1.5's VAE (f = 8, 4 latent channels: 64x64x8 moments) and CLIP ViT-L/14
(257 x 1024 tokens) but whose compute is tiny (random weights, 1 transformer layer): the
bench measures the READ side (one pipeline process, one read thread: what a grain worker
costs), not the encoders. Cases: pixels with the read-time condition render (what the trainer
needs without the cache), pixels without the render, and the cache (moments of the frames and
of the condition renders + the source's CLIP tokens, no pixels). Prints a markdown table.

    python bench/encoder_cache.py [--batches 6] [--batch-size 4] [--num-frames 16] [--k-max 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import numpy as np


def _write_stand_in_encoders(path: str) -> None:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from mimaface_jax.importers.pretrained_store import write_pretrained
    from mimaface_jax.models.clip_vision import CLIPVisionConfig, CLIPVisionModel
    from mimaface_jax.models.vae import AutoencoderKL, VAEConfig

    vae = VAEConfig(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)
    clip = CLIPVisionConfig(num_hidden_layers=1, intermediate_size=1024)
    rng = np.random.default_rng(0)

    def params(factory):
        _, abstract, _ = nnx.split(nnx.eval_shape(factory), nnx.Param, ...)
        return jax.tree.map(lambda x: jnp.asarray(
            rng.normal(0, 0.02, x.shape).astype(x.dtype)), abstract)

    write_pretrained(path, {"vae": params(lambda: AutoencoderKL(vae, rngs=nnx.Rngs(0))),
                            "clip": params(lambda: CLIPVisionModel(clip, rngs=nnx.Rngs(0)))},
                     {"configs": {"vae": dataclasses.asdict(vae),
                                  "clip": dataclasses.asdict(clip)}})


def _measure(path: str, args, **kw) -> tuple[float, float]:
    from mimaface_jax.data.pipeline import DatasetSource, PipelineConfig, make_iterator

    config = PipelineConfig(sources=(DatasetSource(path, "train"),), batch_size=args.batch_size,
                            num_frames=args.num_frames, k_max=args.k_max, seed=0, flip_prob=0.0,
                            worker_count=0, read_threads=1, shard_index=0, shard_count=1, **kw)
    it = make_iterator(config)
    next(it)  # warm-up
    start = time.perf_counter()
    for _ in range(args.batches):
        next(it)
    seconds = time.perf_counter() - start
    clips = args.batches * args.batch_size
    return clips / seconds, 1000 * seconds / clips


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from data_pipeline import _build_video_folder

    from data_pipelines.common.cache_pass import CachePassConfig, run_cache_pass
    from mimaface_jax.data.encoder_cache import default_cache_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--k-max", type=int, default=4)
    args = parser.parse_args()
    frames = args.num_frames + args.k_max + 8
    with tempfile.TemporaryDirectory() as work:
        path = _build_video_folder(work, 512, frames)
        pretrained = os.path.join(work, "pretrained")
        _write_stand_in_encoders(pretrained)
        run_cache_pass(path, "train", pretrained, config=CachePassConfig(batch=8))
        cache = default_cache_dir(path, "train")
        cache_bytes = sum(os.path.getsize(os.path.join(cache, f)) for f in os.listdir(cache))
        import json
        with open(os.path.join(cache, "cache_info.json")) as f:
            cached_frames = json.load(f)["frames"]
        rows = [("pixels + condition render", *_measure(path, args)),
                ("pixels, no condition", *_measure(path, args, render_condition=False)),
                ("encoder cache (fp16)", *_measure(path, args, use_cache=True))]
    s = args.k_max + args.num_frames
    print(f"\n512^2 video_folder (FaceMesh) records of {frames} frames; clips of k_max + F = {s} "
          f"frames + 1 source frame; batch {args.batch_size}; {args.batches} timed batches; "
          f"1 process, 1 read thread; cache {cache_bytes / cached_frames / 1024:.0f} KiB per "
          "frame (frame + condition moments, CLIP tokens, fp16)\n")
    print("| read path | clips/s per worker | ms per clip |")
    print("|---|---|---|")
    for name, rate, ms in rows:
        print(f"| {name} | {rate:.2f} | {ms:.1f} |")


if __name__ == "__main__":
    main()
