"""The grain training input pipeline over clip datasets written by ``data_pipelines/``.

Per process: for each source dataset (a TFDS folder of ArrayRecord files, see ``records.py``)
the record indices are sharded by process (``[shard_index::shard_count]``, from
``grain.sharding.ShardByJaxProcess`` unless given), shuffled with a per-epoch reshuffle
(``shuffle(seed + i).repeat(num_epochs)``), the sources are mixed by weight
(``MapDataset.mix``), and every element is turned into a training sample by ``ClipSampler``
(a ``random_map``: its randomness is a pure function of ``seed`` and the element's position,
so the stream is deterministic and independent of the worker count's timing), batched, and
optionally spread over ``worker_count`` processes (``mp_prefetch``). The iterator's state
(``get_state`` / ``set_state``, a small JSON-able dict) restores the stream exactly, also in
a new process; ``grain.checkpoint.CheckpointHandler`` saves it through Orbax.

ClipSampler, per record (a clip of T frames): a window of S = k_max + F consecutive frames
(start uniform in [0, T - S]) and a source frame of the same clip OUTSIDE the window (uniform
over those with a tracked face, else over all), JPEG decode, resize to ``resolution``, a
horizontal flip with probability ``flip_prob`` (``augment.py``: images, landmarks with the
mirror permutation, neutral shape), then for FaceMesh records the motion vectors are measured
from the (flipped) landmarks with ONE expression basis for the whole mixture (the datasets'
stored bases must be identical, else ``PipelineConfig.expression_basis`` names the one to use;
``ClipSampler.basis_note``, also logged, says which it is) and the condition images are
rendered (``face/render.py``: the video's neutral shape posed by each frame's motion). Stored-motion records (SynthFaces) carry motion and condition frames; their flip uses
``MotionLayout.flip``.

Batch (a dict of numpy arrays; B = ``batch_size`` per process, S = k_max + F in data order:
the k_max context frames first, then the F current frames, as ``models/ica.py`` expects):

  frames        (B, S, H, W, 3) uint8    RGB crops          -> VAE -> ``latents``
  cond          (B, S, H, W, 3) uint8    condition renders  -> VAE -> ``cond_latents``
                                         (absent for FaceMesh sources when
                                         ``render_condition=False``)
  source        (B, H, W, 3) uint8       the source frame   -> CLIP preprocess -> ``source_pixels``
  motion        (B, S, D) float32        motion vectors (``layout``)   = ``motion``
  source_motion (B, D) float32           motion of the source frame
  valid         (B, S) bool              the frame's face was tracked (else interpolated)
  identity      (B, E) float32           ArcFace embedding      = ``identity`` (only when every
                                         source has one)
  landmarks     (B, S, 478, 3) float32   crop-pixel landmarks (FaceMesh sources only)
  dataset_index (B,) int32, record_index (B,) int64, frame_index (B, S) int32,
  source_index (B,) int32, flipped (B,) bool   bookkeeping (which record / frames / flip)
  skipped_records (B,) int32, skipped_first (B,) int64   corrupt records passed over for the
                                         sample and the index of the first (-1: none); see below

Corrupt records (an entry that does not parse, a frame that is not a JPEG) are skipped, never
fatal: the sample is drawn from the next record of the same shard instead (up to
``MAX_SUBSTITUTES`` in a row), deterministically, and the batch counts it, so that the trainer
can log every skipped record even when the sampler runs in worker processes.

Encoder cache (``use_cache=True``; made by ``python -m data_pipelines.cache_pass``, schema in
``encoder_cache.py``): every source must have a cache (``DatasetSource.cache``, default
``<path>/encoder_cache/<split>``) that matches it (record count, source fingerprint, per-record
key) and was made at the output resolution. The sampling is unchanged (same window, source
frame and random draws for a seed), and the batch holds, INSTEAD of the pixel keys ``frames``,
``cond`` and ``source`` (unless ``cache_pixels=True``, which yields both):

  latent_moments     (B, S, h, w, 2C)  VAE [mean, logvar] of the window's frames (unscaled)
  cond_moments       (B, S, h, w, 2C)  the same for the condition images (when cond would be
                                       yielded without the cache)
  source_clip_tokens (B, L, D)         CLIP last hidden state of the source frame
in the cache's dtypes (float16 by default). Flip is refused with the cache (``flip_prob`` must
be 0): the moments of a mirrored frame are not the mirrored moments, and caching both would
double the cache. FaceMesh condition images are rendered by the cache pass with the dataset's
expression basis; a pipeline whose basis differs is refused. Motion, landmarks and the other
keys are computed from the records as without the cache.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import cv2
import numpy as np

from google.protobuf.message import DecodeError

from mimaface_jax.data import augment, encoder_cache, records
from mimaface_jax.data.jpeg import CorruptFrameError, decode_jpeg

MAX_SUBSTITUTES = 8
# What a corrupt ArrayRecord entry raises: the tf.train.Example does not parse, or a stored
# frame does not decode.
CORRUPT_RECORD_ERRORS = (DecodeError, CorruptFrameError)


class MixtureError(ValueError):
    """The datasets of a mixture do not fit together (record format, motion layout, basis)."""


@dataclasses.dataclass(frozen=True)
class DatasetSource:
    """One dataset of the mixture: its TFDS version folder, the split, the mixture weight, and
    (``use_cache``) its encoder cache folder (None = ``<path>/encoder_cache/<split>``)."""

    path: str
    split: str = "train"
    weight: float = 1.0
    cache: str | None = None


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    sources: tuple[DatasetSource, ...]
    batch_size: int = 8                 # per process
    num_frames: int = 16                # F, current frames per clip
    k_max: int = 4                      # ICA context frames before the clip
    resolution: int | None = None       # output side; None = the records' crop size
    flip_prob: float = 0.5
    render_condition: bool = True       # FaceMesh sources: render the condition images
    expression_basis: str | None = None  # None = the sources' stored basis (one for all)
    seed: int = 0
    num_epochs: int | None = None       # None = repeat forever
    worker_count: int = 0               # grain worker processes (0 = in this process)
    worker_buffer_size: int = 2
    read_threads: int = 8
    shard_index: int | None = None      # None = jax.process_index()
    shard_count: int | None = None      # None = jax.process_count()
    drop_remainder: bool = True
    use_cache: bool = False             # read encoder outputs from the cache (module docstring)
    cache_pixels: bool = False          # with use_cache: also yield the pixel keys

    @property
    def frames_per_sample(self) -> int:
        return self.k_max + self.num_frames

    def __post_init__(self):
        if not self.sources:
            raise ValueError("PipelineConfig.sources is empty; give at least one DatasetSource")
        if self.batch_size < 1 or self.num_frames < 1 or self.k_max < 0:
            raise ValueError(f"need batch_size >= 1, num_frames >= 1, k_max >= 0; got "
                             f"{self.batch_size}, {self.num_frames}, {self.k_max}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        if (self.shard_index is None) != (self.shard_count is None):
            raise ValueError("give both shard_index and shard_count, or neither")
        if any(s.weight <= 0 for s in self.sources):
            raise ValueError(f"mixture weights must be > 0: {[s.weight for s in self.sources]}")
        if self.use_cache and self.flip_prob > 0:
            raise ValueError(f"use_cache=True needs flip_prob=0 (got {self.flip_prob}): the "
                             "cache holds the encodings of the unflipped frames only")
        if self.cache_pixels and not self.use_cache:
            raise ValueError("cache_pixels=True only makes sense with use_cache=True")


@dataclasses.dataclass
class OpenedSource:
    """A dataset opened for random access: the TFDS data source and its metadata."""

    spec: DatasetSource
    data: Any                 # tfds ArrayRecord data source: len(), [i] -> dict
    metadata: dict
    record_format: str
    cache: encoder_cache.EncoderCache | None = None

    @property
    def min_frames(self) -> int:
        return int(self.metadata[records.META_MIN_CLIP_FRAMES])

    @property
    def crop_size(self) -> int:
        return int(self.metadata[records.META_CROP_SIZE])


def open_source(spec: DatasetSource, use_cache: bool = False) -> OpenedSource:
    import tensorflow_datasets as tfds

    meta_path = os.path.join(spec.path, "metadata.json")
    if not os.path.isfile(os.path.join(spec.path, "dataset_info.json")):
        raise FileNotFoundError(f"{spec.path}: not a TFDS dataset folder (no "
                                "dataset_info.json); give the version folder, e.g. "
                                "<data_dir>/video_folder/crop512/1.0.0")
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f"{spec.path}: no metadata.json; the dataset was not written by "
                                "a mimaface_jax builder")
    with open(meta_path, encoding="utf-8") as f:
        metadata = json.load(f)
    fmt = metadata.get(records.META_FORMAT)
    if fmt not in records.RECORD_FORMATS:
        raise ValueError(f"{meta_path}: record_format {fmt!r} is not one of "
                         f"{records.RECORD_FORMATS}")
    builder = tfds.builder_from_directory(spec.path)
    if spec.split not in builder.info.splits:
        raise ValueError(f"{spec.path}: no split {spec.split!r}; splits: "
                         f"{list(builder.info.splits.keys())}")
    data = builder.as_data_source(spec.split)
    cache = None
    if use_cache:
        cache_dir = spec.cache or encoder_cache.default_cache_dir(spec.path, spec.split)
        cache = encoder_cache.open_cache(cache_dir, spec.path, spec.split, len(data))
    return OpenedSource(spec=spec, data=data, metadata=metadata, record_format=fmt, cache=cache)


def _resolve_layout_and_basis(opened: Sequence[OpenedSource], config: PipelineConfig):
    from mimaface_jax.face.expression import ExpressionPCA
    from mimaface_jax.face.motion_layout import MotionLayout, facemesh_layout

    formats = {o.record_format for o in opened}
    if len(formats) > 1:
        raise MixtureError(f"a mixture must use one record format (one motion layout); got "
                         f"{[(o.spec.path, o.record_format) for o in opened]}")
    if formats == {records.STORED_MOTION_FORMAT}:
        layouts = {o.metadata[records.META_LAYOUT] for o in opened}
        if len(layouts) > 1:
            raise MixtureError(f"stored-motion sources have different motion layouts: "
                             f"{[o.spec.path for o in opened]}")
        return MotionLayout.from_json(layouts.pop()), None, "stored motion (no expression basis)"
    if config.expression_basis is not None:
        basis = ExpressionPCA.load(config.expression_basis)
        digest = encoder_cache.expression_basis_sha256(basis)
        note = (f"expression basis {config.expression_basis} (sha256 {digest[:12]}, "
                f"PipelineConfig.expression_basis) for all {len(opened)} dataset(s)")
        return facemesh_layout(basis.num_components), basis, note
    paths = [_stored_basis_path(o) for o in opened]
    bases = [ExpressionPCA.load(p) for p in paths]
    digests = [encoder_cache.expression_basis_sha256(b) for b in bases]
    if len(set(digests)) > 1:
        groups: dict[str, list[str]] = {}
        for o, digest in zip(opened, digests):
            groups.setdefault(digest[:12], []).append(o.spec.path)
        listing = "; ".join(f"sha256 {d}: {paths}" for d, paths in groups.items())
        raise MixtureError(
            "the FaceMesh datasets of a mixture must share one expression basis (every motion "
            f"vector is measured with it), but their stored bases differ: {listing}. Rebuild them "
            "with one basis, or give PipelineConfig.expression_basis to measure all with that one")
    note = (f"expression basis {paths[0]} (sha256 {digests[0][:12]}), stored identically by "
            f"all {len(opened)} dataset(s)")
    return facemesh_layout(bases[0].num_components), bases[0], note


def _stored_basis_path(o: OpenedSource) -> str:
    if records.META_EXPRESSION_BASIS not in o.metadata:
        raise MixtureError(f"{o.spec.path}: metadata has no expression basis; give "
                         "PipelineConfig.expression_basis")
    return os.path.join(o.spec.path, o.metadata[records.META_EXPRESSION_BASIS])


class ClipSampler:
    """Record -> training sample (see the module docstring). Picklable (workers)."""

    def __init__(self, opened: Sequence[OpenedSource], config: PipelineConfig, shard_count: int = 1):
        self.sources = [o.data for o in opened]
        # records of the shards (drop_remainder): substitutes stay in the sample's own shard
        self.shard_count = shard_count
        self.num_records = [len(o.data) // shard_count * shard_count for o in opened]
        self.paths = [o.spec.path for o in opened]
        self.crop_sizes = [o.crop_size for o in opened]
        self.config = config
        # basis_note: which expression basis measures the motion (path + digest), for the logs
        self.layout, self.basis, self.basis_note = _resolve_layout_and_basis(opened, config)
        self.facemesh = opened[0].record_format == records.FACEMESH_FORMAT
        self.with_identity = self.facemesh and all(
            o.metadata.get(records.META_HAS_IDENTITY, False) for o in opened)
        sizes = {o.crop_size for o in opened}
        if config.resolution is None and len(sizes) > 1:
            raise ValueError(f"sources have different crop sizes {sorted(sizes)}; set "
                             "PipelineConfig.resolution")
        self.resolution = int(config.resolution or sizes.pop())
        need = config.frames_per_sample + 1
        short = [(o.spec.path, o.min_frames) for o in opened if o.min_frames < need]
        if short:
            raise ValueError(f"k_max + num_frames + 1 = {need} frames are needed per record "
                             f"(window + a source frame outside it), but these datasets allow "
                             f"shorter clips (min_clip_frames): {short}; rebuild them with "
                             f"min_clip_frames >= {need} or lower num_frames / k_max")
        self._extractor = None
        self.caches = [o.cache for o in opened]
        if config.use_cache:
            self._check_caches(opened)

    def _check_caches(self, opened: Sequence[OpenedSource]) -> None:
        for o in opened:
            if o.cache is None:
                raise ValueError(f"{o.spec.path}: use_cache=True but the source was opened "
                                 "without its cache (open_source(spec, use_cache=True))")
            if o.cache.resolution != self.resolution:
                raise encoder_cache.CacheMismatchError(
                    f"{o.cache.path} was made at resolution {o.cache.resolution}, the pipeline "
                    f"yields {self.resolution}; set PipelineConfig.resolution="
                    f"{o.cache.resolution} or run the cache pass with --resolution "
                    f"{self.resolution}")
            if self.wants_condition and not o.cache.has_condition:
                raise encoder_cache.CacheMismatchError(
                    f"{o.cache.path} has no condition moments (made with --no_condition); "
                    "run the cache pass again without it (FaceMesh sources: or set "
                    "render_condition=False)")
            if self.facemesh and self.wants_condition:
                want = encoder_cache.expression_basis_sha256(self.basis)
                if o.cache.info.get("expression_basis_sha256") != want:
                    raise encoder_cache.CacheMismatchError(
                        f"{o.cache.path}: its condition renders were made with another expression "
                        "basis than the pipeline's (PipelineConfig.expression_basis); cache "
                        "again with that basis or use the dataset's own")

    @property
    def wants_condition(self) -> bool:
        """Whether samples carry condition images (``cond``)."""
        return not self.facemesh or self.config.render_condition

    def clip_pixels(self, dataset_index: int, record_index: int, rec: dict) -> dict:
        """Every frame of a record as the pipeline would yield it, unflipped, at the output
        resolution: ``frames`` (T, H, W, 3) uint8 and, when samples carry it, ``cond``
        (T, H, W, 3) uint8 (what the cache pass encodes)."""
        where = f"{self.paths[dataset_index]} record {record_index}"
        out = {"frames": self._decode(rec["frames"], where)}
        if not self.wants_condition:
            return out
        if self.facemesh:
            scale = self.resolution / float(self.crop_sizes[dataset_index])
            lm = np.asarray(rec["landmarks"], np.float32) * np.float32(scale)
            motion = self._extract(lm, np.asarray(rec["neutral_shape"], np.float32))
            out["cond"] = self._render(np.asarray(rec["neutral_shape"], np.float32),
                                       motion.fields)
        else:
            out["cond"] = self._decode(rec["condition"], where)
        return out

    def clip_motion(self, dataset_index: int, rec: dict) -> np.ndarray:
        """The motion vectors (T, D) float32 of every frame of a record, unflipped, as samples
        carry them (FaceMesh records: measured from the landmarks at the output resolution)."""
        if not self.facemesh:
            return np.asarray(rec["motion"], np.float32)
        scale = self.resolution / float(self.crop_sizes[dataset_index])
        lm = np.asarray(rec["landmarks"], np.float32) * np.float32(scale)
        return self._extract(lm, np.asarray(rec["neutral_shape"], np.float32)).vectors.astype(np.float32)

    # -- helpers ------------------------------------------------------------------------------
    def _extract(self, landmarks: np.ndarray, neutral: np.ndarray):
        if self._extractor is None:
            from mimaface_jax.face.motion import MotionExtractor

            self._extractor = MotionExtractor(self.basis, self.basis.num_components)
        return self._extractor.extract(landmarks, (self.resolution, self.resolution),
                                       neutral_shape=neutral)

    def _decode(self, blobs, where: str) -> np.ndarray:
        frames = []
        for blob in blobs:
            image = decode_jpeg(blob, where)
            if image.shape[0] != self.resolution or image.shape[1] != self.resolution:
                interp = cv2.INTER_AREA if image.shape[0] > self.resolution else cv2.INTER_LINEAR
                image = cv2.resize(image, (self.resolution, self.resolution),
                                   interpolation=interp)
            frames.append(image)
        return np.stack(frames)

    def _render(self, neutral: np.ndarray, fields: dict[str, np.ndarray]) -> np.ndarray:
        from mimaface_jax.face.render import render_condition

        out = []
        for t in range(len(fields["yaw"])):
            pose = {"yaw": float(fields["yaw"][t, 0]), "pitch": float(fields["pitch"][t, 0]),
                    "roll": float(fields["roll"][t, 0]), "translation": fields["translation"][t],
                    "log_scale": float(fields["log_scale"][t, 0])}
            out.append(render_condition(neutral, fields["expression"][t], self.basis, pose,
                                        fields["gaze"][t], size=self.resolution))
        return np.stack(out)

    # -- the map ------------------------------------------------------------------------------
    def __call__(self, element: tuple[int, int], rng: np.random.Generator) -> dict:
        dataset_index, record_index = int(element[0]), int(element[1])
        skipped = []
        for attempt in range(MAX_SUBSTITUTES + 1):
            index = (record_index + attempt * self.shard_count) % self.num_records[dataset_index]
            try:
                out = self.sample(dataset_index, index, rng)
            except CORRUPT_RECORD_ERRORS as err:
                from absl import logging

                logging.warning("skipping corrupt record %s record %d: %s", self.paths[dataset_index], index,
                                str(err)[:200])
                skipped.append(index)
                continue
            out["skipped_records"] = np.int32(len(skipped))
            out["skipped_first"] = np.int64(skipped[0] if skipped else -1)
            return out
        raise records.CorruptDatasetError(
            f"{self.paths[dataset_index]}: records {skipped} of its split, {len(skipped)} in a row in this shard, "
            "are all corrupt (do not parse or hold frames that are not JPEGs); rebuild the dataset")

    def sample(self, dataset_index: int, record_index: int, rng: np.random.Generator) -> dict:
        """One training sample of one record (raises ``CORRUPT_RECORD_ERRORS`` for a bad record)."""
        rec = self.sources[dataset_index][record_index]
        where = f"{self.paths[dataset_index]} record {record_index}"
        s = self.config.frames_per_sample
        t = len(rec["frames"])
        if t < s + 1:
            raise ValueError(f"{where}: {t} frames, need k_max + num_frames + 1 = {s + 1}")
        start = int(rng.integers(0, t - s + 1))
        window = np.arange(start, start + s)
        outside = np.concatenate([np.arange(0, start), np.arange(start + s, t)])
        found = np.asarray(rec["face_found"], bool) if self.facemesh else np.ones(t, bool)
        candidates = outside[found[outside]] if found[outside].any() else outside
        source_index = int(rng.choice(candidates))
        flip = bool(rng.random() < self.config.flip_prob)

        picked = np.concatenate([window, [source_index]])
        pixels = not self.config.use_cache or self.config.cache_pixels
        out = {}
        if pixels:
            images = self._decode([rec["frames"][i] for i in picked], where)  # (S+1, H, W, 3)
            if flip:
                images = augment.flip_images(images)
            out.update(frames=images[:s], source=images[s])
        if self.config.use_cache:  # flip is off (PipelineConfig checks)
            cached = self.caches[dataset_index].read(record_index, rec, where,
                                                     token_frames=[source_index])
            out["latent_moments"] = cached[encoder_cache.MOMENTS][window]
            out["source_clip_tokens"] = cached[encoder_cache.CLIP_TOKENS][0]
            if self.wants_condition:
                out["cond_moments"] = cached[encoder_cache.COND_MOMENTS][window]
        if self.facemesh:
            scale = self.resolution / float(self.crop_sizes[dataset_index])
            lm = np.asarray(rec["landmarks"], np.float32)[picked] * np.float32(scale)
            neutral = np.asarray(rec["neutral_shape"], np.float32)
            if flip:
                lm = augment.flip_landmarks(lm, self.resolution)
                neutral = augment.flip_canonical_shape(neutral)
            motion = self._extract(lm, neutral)
            vectors = motion.vectors.astype(np.float32)
            out["motion"], out["source_motion"] = vectors[:s], vectors[s]
            out["landmarks"] = lm[:s]
            if self.config.render_condition and pixels:
                fields = {k: v[:s] for k, v in motion.fields.items()}
                out["cond"] = self._render(neutral, fields)
            if self.with_identity:
                out["identity"] = np.asarray(rec["identity"], np.float32)
        else:
            motion = np.asarray(rec["motion"], np.float32)[picked]
            if flip:
                motion = self.layout.flip(motion)
            out["motion"], out["source_motion"] = motion[:s], motion[s]
            if pixels:
                cond = self._decode([rec["condition"][i] for i in window], where)
                out["cond"] = augment.flip_images(cond) if flip else cond
        out.update(valid=found[window], dataset_index=np.int32(dataset_index),
                   record_index=np.int64(record_index), frame_index=window.astype(np.int32),
                   source_index=np.int32(source_index), flipped=np.bool_(flip))
        return out



def ensure_absl_flags_parsed(*_unused) -> None:
    """grain reads its absl flags (e.g. ``grain_enable_multiprocess_worker_profiling``) when
    multiprocessing starts and in its workers; a program that did not parse flags (tests,
    notebooks, non-absl scripts) would fail with ``UnparsedFlagAccessError``. Programs that
    run under ``absl.app.run`` have parsed them already and are left alone; otherwise the
    flags are marked parsed with their defaults. Also the ``worker_init_fn`` of the workers."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def shard_options(config: PipelineConfig):
    import grain

    if config.shard_index is None:
        return grain.sharding.ShardByJaxProcess(drop_remainder=True)
    if not 0 <= config.shard_index < config.shard_count:
        raise ValueError(f"shard_index {config.shard_index} not in [0, {config.shard_count})")
    return grain.sharding.ShardOptions(config.shard_index, config.shard_count,
                                       drop_remainder=True)


def build_dataset(config: PipelineConfig):
    """-> (grain IterDataset of batches, ClipSampler) for this process's shard."""
    import grain

    opened = [open_source(spec, config.use_cache) for spec in config.sources]
    shard = shard_options(config)
    sampler = ClipSampler(opened, config, shard.shard_count)
    from absl import logging

    logging.info("data pipeline: %s", sampler.basis_note)
    parts = []
    for i, o in enumerate(opened):
        n = len(o.data)
        if shard.drop_remainder:
            n = (n // shard.shard_count) * shard.shard_count
        if n == 0:
            raise ValueError(f"{o.spec.path} split {o.spec.split!r}: {len(o.data)} records "
                             f"cannot give every one of {shard.shard_count} shards a record")
        indices = grain.MapDataset.range(n)[shard.shard_index::shard.shard_count]
        ds = indices.map(_Tag(i)).shuffle(seed=config.seed + 1000 * i)
        parts.append(ds.repeat(config.num_epochs))
    if len(parts) == 1:
        mixed = parts[0]
    else:
        mixed = grain.MapDataset.mix(parts, [s.weight for s in config.sources])
    samples = mixed.random_map(sampler, seed=config.seed)
    batches = samples.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads,
                                                        prefetch_buffer_size=4 * config.batch_size))
    batches = batches.batch(config.batch_size, drop_remainder=config.drop_remainder)
    if config.worker_count > 0:
        ensure_absl_flags_parsed()
        batches = batches.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=config.worker_count,
                                         per_worker_buffer_size=config.worker_buffer_size),
            worker_init_fn=ensure_absl_flags_parsed)
    return batches, sampler


class _Tag:
    """record index -> (dataset index, record index)."""

    def __init__(self, dataset_index: int):
        self.dataset_index = dataset_index

    def __call__(self, record_index):
        return (self.dataset_index, int(record_index))


def make_iterator(config: PipelineConfig):
    """The batch iterator (``next``, ``get_state``, ``set_state``)."""
    dataset, _ = build_dataset(config)
    return iter(dataset)


def state_to_bytes(iterator) -> bytes:
    """The iterator's position as JSON bytes (what a checkpoint stores per process)."""
    return json.dumps(iterator.get_state(), sort_keys=True).encode("utf-8")


def restore_state(iterator, state: bytes) -> None:
    iterator.set_state(json.loads(state.decode("utf-8")))
