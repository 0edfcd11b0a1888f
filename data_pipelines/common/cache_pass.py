"""The optional cache pass: frozen-encoder outputs of every frame of a built dataset split.

    python -m data_pipelines.cache_pass --data_dir DIR --dataset NAME[/CONFIG] --split train \\
        --pretrained CKPT_DIR [--batch 16] [--moments_dtype float16|float32] [--resolution R]

For every record of the split (a clip of T frames), in record order, it stores (schema and
location: ``mimaface_jax/data/encoder_cache.py``):
  - the KL-VAE moments ``[mean, logvar]`` of every frame, ``(T, h, w, 2C)``;
  - the same for every frame's condition image (``--no_condition`` to skip): stored-motion
    records (SynthFaces) carry it as JPEG; FaceMesh records get it rendered here exactly as the
    pipeline renders it (``ClipSampler.clip_pixels``: motion from the landmarks with the
    dataset's expression basis, whose fingerprint goes into the info);
  - the CLIP vision last hidden state of every frame, ``(T, L, D)``: every frame is a source
    candidate for some window, so all are encoded. The CLIP input is ``clip_preprocess``
    (equal to ``CLIPImageProcessor``: PIL bicubic resize, centre crop, CLIP mean/std) of the
    frame at the pipeline's output resolution.
Pixels are exactly the pipeline's (``ClipSampler``: JPEG decode, resize to the resolution),
unflipped; VAE input is ``pixels / 127.5 - 1``. The encoders run in float32, jitted, over
fixed-size batches of ``batch`` frames that run across record boundaries (the last is
padded), so one compilation serves the whole split. Storage dtype: float16 by default for
both (half the bytes; rounding error <= 2^-11 ~ 4.9e-4 of each value); ``--moments_dtype float32`` / ``--tokens_dtype
float32`` keep the encoders' float32 output exactly. Size per frame at 512 px
with SD-1.5's VAE and ViT-L/14: moments 64*64*8*2 B = 64 KiB (+ the same for the
condition), tokens 257*1024*2 B = 514 KiB.

The encoders come from a "pretrained" Orbax checkpoint (``python -m mimaface_jax.convert``)
with the components ``vae`` and ``clip``; their model configs are read from its meta. The
cache's ``cache_info.json`` records the checkpoint path, sha256 of each component's config
and parameters, the dtypes, shapes, the resolution, and the dataset's fingerprint.

The cache stands in for FROZEN encoders only: a run that trains CLIP (stage 1 with
``model.clip.trainable``) must encode the source itself. The trainer's in-graph CLIP input
(``training/train_step.clip_input``: area / bilinear resize of the whole frame) is not the
same preprocessing as the cached tokens' (``CLIPImageProcessor``-equal); use one of them
consistently in a run.

An existing cache is never overwritten: the cache is written into a temporary sibling folder
and renamed into place when complete; a cache folder that exists already stops the pass
before any work.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import math
import os
import shutil
import time
from typing import Any, Callable, Iterator

import numpy as np

from mimaface_jax.data import encoder_cache, records

STORAGE_DTYPES = ("float16", "float32")


@dataclasses.dataclass(frozen=True)
class CachePassConfig:
    batch: int = 16                    # frames per encoder call
    moments_dtype: str = "float16"
    tokens_dtype: str = "float16"
    resolution: int | None = None      # None = the records' crop size (the pipeline's default)
    condition: bool = True             # also cache the condition images' moments
    records_per_shard: int = 64
    read_threads: int = 4

    def __post_init__(self):
        for name in ("moments_dtype", "tokens_dtype"):
            if getattr(self, name) not in STORAGE_DTYPES:
                raise ValueError(f"{name} must be one of {STORAGE_DTYPES}, got "
                                 f"{getattr(self, name)!r}")
        if self.batch < 1 or self.records_per_shard < 1 or self.read_threads < 1:
            raise ValueError(f"batch, records_per_shard and read_threads must be >= 1: {self}")


# -- encoders -------------------------------------------------------------------------------
@dataclasses.dataclass
class Encoders:
    """The frozen VAE and CLIP vision tower as jitted batch functions + provenance."""

    vae_config: Any
    clip_config: Any
    encode_moments: Callable    # (N, H, W, 3) float32 in [-1, 1] -> (N, h, w, 2C) float32
    encode_tokens: Callable     # (N, S, S, 3) CLIP-normalised -> (N, L, D) float32
    provenance: dict


def _config_from_meta(cls, values: dict, where: str):
    """A frozen model-config dataclass from its ``dataclasses.asdict`` JSON (as convert writes)."""
    from mimaface_jax.models.attention import AttentionConfig

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise encoder_cache.EncoderCacheError(f"{where}: unknown {cls.__name__} keys {unknown}")
    kwargs = {}
    for key, value in values.items():
        if key == "attention":
            value = AttentionConfig(**value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def _restore(pretrained: str, name: str, factory):
    import jax
    from flax import nnx

    from mimaface_jax.importers.pretrained_store import restore_component

    graphdef, abstract, rest = nnx.split(nnx.eval_shape(factory), nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise encoder_cache.EncoderCacheError(f"{name}: the model has non-parameter state; the "
                                              "cache pass only restores parameters")
    state = restore_component(pretrained, name, abstract)
    leaves = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))[0]
    digest = encoder_cache.array_sha256({jax.tree_util.keystr(path): np.asarray(leaf)
                                         for path, leaf in leaves})
    return graphdef, state, digest


def load_encoders(pretrained: str) -> Encoders:
    """The ``vae`` and ``clip`` components of a pretrained checkpoint, as jitted functions."""
    import hashlib

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from mimaface_jax.importers.pretrained_store import read_meta
    from mimaface_jax.models.clip_vision import CLIPVisionConfig, CLIPVisionModel, clip_vision_apply
    from mimaface_jax.models.vae import AutoencoderKL, VAEConfig, vae_encode_apply

    meta = read_meta(pretrained)
    configs = meta.get("configs", {})
    missing = [n for n in ("vae", "clip") if n not in meta["components"] or n not in configs]
    if missing:
        raise encoder_cache.EncoderCacheError(
            f"{pretrained}: the pretrained checkpoint lacks the component(s) {missing} (or their "
            f"configs in its meta); it has {meta['components']}. Write one with "
            "`python -m mimaface_jax.convert all ...` (or `vae` / `clip`)")
    vae_config = _config_from_meta(VAEConfig, configs["vae"], f"{pretrained} meta configs.vae")
    clip_config = _config_from_meta(CLIPVisionConfig, configs["clip"],
                                    f"{pretrained} meta configs.clip")
    vae_graph, vae_state, vae_digest = _restore(
        pretrained, "vae", lambda: AutoencoderKL(vae_config, rngs=nnx.Rngs(0)))
    clip_graph, clip_state, clip_digest = _restore(
        pretrained, "clip", lambda: CLIPVisionModel(clip_config, rngs=nnx.Rngs(0)))

    @jax.jit
    def moments(state, x):
        mean, logvar = vae_encode_apply(vae_graph, state, x)
        return jnp.concatenate([mean, logvar], axis=-1)

    tokens = jax.jit(clip_vision_apply, static_argnums=0)

    def config_sha(values):
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()

    provenance = {
        "path": os.path.abspath(pretrained),
        "vae_config": configs["vae"], "clip_config": configs["clip"],
        "vae_config_sha256": config_sha(configs["vae"]),
        "clip_config_sha256": config_sha(configs["clip"]),
        "vae_params_sha256": vae_digest, "clip_params_sha256": clip_digest,
    }
    return Encoders(vae_config=vae_config, clip_config=clip_config,
                    encode_moments=lambda x: moments(vae_state, x),
                    encode_tokens=lambda x: tokens(clip_graph, clip_state, x),
                    provenance=provenance)


# -- batching across records ----------------------------------------------------------------
class StreamEncoder:
    """Feeds items of many records through ``fn`` in fixed batches of ``batch`` rows (one
    compiled shape; only the final call is padded) and hands back each record's outputs in
    order as soon as they are all computed."""

    def __init__(self, fn: Callable, batch: int):
        self.fn, self.batch = fn, batch
        self._inputs: list[np.ndarray] = []
        self._queued = 0
        self._outputs: list[Any] = []      # device arrays, in row order
        self._ready = 0                    # rows in _outputs
        self._records: collections.deque = collections.deque()   # (tag, rows)

    def push(self, tag: Any, items: np.ndarray) -> None:
        self._records.append((tag, len(items)))
        self._inputs.append(items)
        self._queued += len(items)
        while self._queued >= self.batch:
            self._run(self.batch)

    def _run(self, rows: int) -> None:
        x = np.concatenate(self._inputs) if len(self._inputs) > 1 else self._inputs[0]
        head, tail = x[:rows], x[rows:]
        if rows < self.batch:
            head = np.concatenate([head, np.zeros((self.batch - rows, *x.shape[1:]), x.dtype)])
        self._outputs.append(self.fn(head)[:rows])
        self._ready += rows
        self._inputs = [tail] if len(tail) else []
        self._queued = len(tail)

    def flush(self) -> None:
        if self._queued:
            self._run(self._queued)

    def pop_ready(self) -> Iterator[tuple[Any, np.ndarray]]:
        """(tag, outputs) of every record whose rows are all computed, in push order."""
        while self._records and self._records[0][1] <= self._ready:
            tag, rows = self._records.popleft()
            out = np.concatenate([np.asarray(o) for o in self._outputs])
            self._outputs = [out[rows:]] if len(out) > rows else []
            self._ready -= rows
            yield tag, out[:rows]


# -- the pass -------------------------------------------------------------------------------
def _prefetch(fn: Callable, items, threads: int) -> Iterator:
    """fn(item) for items in order, computed ``2 * threads`` ahead in a thread pool."""
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def run_cache_pass(dataset_path: str, split: str, pretrained: str, *,
                   out: str | None = None, config: CachePassConfig = CachePassConfig(),
                   log: Callable[[str], None] = print) -> str:
    """Writes the encoder cache of ``dataset_path`` (a TFDS version folder) / ``split`` to
    ``out`` (default ``<dataset_path>/encoder_cache/<split>``); returns that folder."""
    from mimaface_jax.data.pipeline import ClipSampler, DatasetSource, PipelineConfig, open_source
    from mimaface_jax.models.clip_preprocess import clip_preprocess

    dataset_path = os.path.abspath(dataset_path)
    out = os.path.abspath(out or encoder_cache.default_cache_dir(dataset_path, split))
    if os.path.exists(out):
        raise encoder_cache.EncoderCacheError(
            f"{out} already exists; a cache is never overwritten. Delete it yourself to "
            "rebuild it, or give another --out")
    spec = DatasetSource(dataset_path, split)
    opened = open_source(spec)
    sampler = ClipSampler([opened], PipelineConfig(
        sources=(spec,), batch_size=1, num_frames=1, k_max=0, flip_prob=0.0,
        resolution=config.resolution, render_condition=config.condition,
        shard_index=0, shard_count=1))
    condition = config.condition and sampler.wants_condition
    encoders = load_encoders(pretrained)
    f = encoders.vae_config.downsample_factor
    if sampler.resolution % f:
        raise encoder_cache.EncoderCacheError(
            f"resolution {sampler.resolution} is not divisible by the VAE's downsample factor "
            f"{f}; choose --resolution accordingly")
    clip_size = encoders.clip_config.image_size
    moments_dtype, tokens_dtype = np.dtype(config.moments_dtype), np.dtype(config.tokens_dtype)

    num_records = len(opened.data)
    num_shards = max(1, math.ceil(num_records / config.records_per_shard))
    kinds = (encoder_cache.MOMENTS, encoder_cache.CLIP_TOKENS)
    files = {kind: [encoder_cache.cache_file_name(split, kind, i, num_shards)
                    for i in range(num_shards)] for kind in kinds}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.tmp-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)

    def prepare(index: int):
        rec = opened.data[index]
        pixels = sampler.clip_pixels(0, index, rec)
        vae_in = pixels["frames"] if not condition else np.concatenate(
            [pixels["frames"], pixels["cond"]])
        vae_in = vae_in.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        clip_in = clip_preprocess(pixels["frames"], size=clip_size, crop=clip_size)
        return index, encoder_cache.record_key(rec), len(pixels["frames"]), vae_in, clip_in

    started, frames_done, shapes = time.time(), 0, {}
    vae_stream = StreamEncoder(encoders.encode_moments, config.batch)
    clip_stream = StreamEncoder(encoders.encode_tokens, config.batch)
    writers, written, meta_of = {}, 0, {}
    try:
        from array_record.python.array_record_module import ArrayRecordWriter

        done_vae, done_clip = {}, {}

        def write_ready(final: bool) -> None:
            """Writes, in record order, every record whose VAE and CLIP outputs are done."""
            nonlocal written, frames_done
            if final:
                vae_stream.flush()
                clip_stream.flush()
            done_vae.update(vae_stream.pop_ready())
            done_clip.update(clip_stream.pop_ready())
            while written in done_vae and written in done_clip:
                index = written
                moments, tokens = done_vae.pop(index), done_clip.pop(index)
                key, t = meta_of.pop(index)
                arrays = {encoder_cache.MOMENTS: moments[:t].astype(moments_dtype)}
                if condition:
                    arrays[encoder_cache.COND_MOMENTS] = moments[t:].astype(moments_dtype)
                shapes.setdefault("moments", list(moments.shape[1:]))
                shapes.setdefault("clip_tokens", list(tokens.shape[1:]))
                if index % config.records_per_shard == 0:
                    shard = index // config.records_per_shard
                    for kind in kinds:
                        if kind in writers:
                            writers.pop(kind).close()
                        writers[kind] = ArrayRecordWriter(os.path.join(tmp, files[kind][shard]),
                                                          encoder_cache.WRITER_OPTIONS)
                writers[encoder_cache.MOMENTS].write(encoder_cache.serialize_record(
                    key, arrays, tokens_offset=frames_done))
                for j, frame_tokens in enumerate(tokens.astype(tokens_dtype)):
                    writers[encoder_cache.CLIP_TOKENS].write(encoder_cache.serialize_record(
                        f"{key}#{j}", {encoder_cache.CLIP_TOKENS: frame_tokens}))
                written += 1
                frames_done += t

        for index, key, t, vae_in, clip_in in _prefetch(prepare, range(num_records),
                                                         config.read_threads):
            meta_of[index] = (key, t)
            vae_stream.push(index, vae_in)
            clip_stream.push(index, clip_in)
            write_ready(final=False)
            if (index + 1) % 100 == 0:
                log(f"cache pass: {index + 1}/{num_records} records, "
                    f"{frames_done / (time.time() - started):.1f} frames/s")
        write_ready(final=True)
        for kind in list(writers):
            writers.pop(kind).close()
        if written != num_records:
            raise encoder_cache.EncoderCacheError(f"wrote {written} records of {num_records}")
        info = {
            "format": encoder_cache.CACHE_FORMAT,
            "source": {"path": dataset_path, "split": split, "num_records": num_records,
                       "fingerprint": encoder_cache.dataset_fingerprint(dataset_path, split),
                       "record_format": opened.record_format},
            "resolution": sampler.resolution,
            "condition": bool(condition),
            "condition_source": (None if not condition else "rendered"
                                 if opened.record_format == records.FACEMESH_FORMAT
                                 else "records"),
            "expression_basis_sha256": (encoder_cache.expression_basis_sha256(sampler.basis)
                                        if condition and sampler.basis is not None else None),
            "moments_dtype": config.moments_dtype, "tokens_dtype": config.tokens_dtype,
            "moments_shape_per_frame": shapes.get("moments"),
            "clip_tokens_shape_per_frame": shapes.get("clip_tokens"),
            "latent_channels": encoders.vae_config.latent_channels,
            "downsample_factor": f,
            "scaling_factor": encoders.vae_config.scaling_factor,
            "vae_input": "uint8 pixels / 127.5 - 1, NHWC",
            "clip_input": f"clip_preprocess(frame, size={clip_size}, crop={clip_size})",
            "pretrained": encoders.provenance,
            "files": files, "records_per_shard": config.records_per_shard,
            "frames": frames_done,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with open(os.path.join(tmp, encoder_cache.CACHE_INFO_FILE), "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=1)
        if os.path.exists(out):
            raise encoder_cache.EncoderCacheError(
                f"{out} appeared while the cache pass ran; not replacing it (the new cache is "
                "discarded)")
        os.rename(tmp, out)
    finally:
        for w in writers.values():
            w.close()
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    log(f"cache pass: wrote {num_records} records ({frames_done} frames) to {out} in "
        f"{time.time() - started:.1f} s")
    return out


def resolve_dataset_path(data_dir: str, dataset: str, version: str | None = None) -> str:
    """``<data_dir>/<name>[/<config>]/<version>``: the given version, else the highest one."""
    base = os.path.join(data_dir, *dataset.split("/"))
    if not os.path.isdir(base):
        raise FileNotFoundError(f"no dataset folder {base} (from --data_dir {data_dir} "
                                f"--dataset {dataset})")
    if version is not None:
        path = os.path.join(base, version)
    else:
        versions = [v for v in os.listdir(base)
                    if os.path.isfile(os.path.join(base, v, "dataset_info.json"))
                    and all(p.isdigit() for p in v.split("."))]
        if not versions:
            raise FileNotFoundError(f"{base}: no built version folder (X.Y.Z with "
                                    "dataset_info.json); is --dataset NAME/CONFIG right?")
        path = os.path.join(base, max(versions, key=lambda v: tuple(map(int, v.split(".")))))
    if not os.path.isfile(os.path.join(path, "dataset_info.json")):
        raise FileNotFoundError(f"{path}: not a built TFDS dataset (no dataset_info.json)")
    return path
