"""What the trainer's sample videos show: reenactment tasks from a held-out split.

A task is one source portrait driven by a motion sequence, with its ground truth:

  name             str
  kind             "cross" (another person's motion) | "self" (the source's own video)
  source           (H, W, 3) uint8       the source frame
  source_motion    (D,) float32, source_condition (H, W, 3) uint8   (the ICA anchor frame)
  identity         (E,) float32           what the model's identity input gets
  motion           (T, D) float32, condition (T, H, W, 3) uint8     driving motion, its renders
  driving          (T, H, W, 3) uint8     the driving video's frames (shown)
  truth            (T, H, W, 3) uint8     what a perfect model would generate
  mask_threshold   int                    ``motion_mask`` threshold for the score

- SynthFaces data (``data.source = "synth"`` or a SynthFaces set in ``data.mixture``): CROSS
  identity. Person A's first frame is the source, person B's motion drives it; the renders are
  A's shape under B's motion and SynthFaces renders the exact ground truth (A moving like B).
- FaceMesh data (real videos): SELF reenactment (real data has no cross-identity truth). A
  record's first frame is the source and its later frames are the driving video and the
  truth; motion and renders come from the pipeline's own ``ClipSampler`` (the training inputs).
  The motion-mask threshold ignores JPEG noise (8 levels).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mimaface_jax.config_validation import ConfigError, parse_mixture
from mimaface_jax.data import records, synth_render
from mimaface_jax.data.synth_faces import SynthFaces, SynthFacesConfig, cross_reenactment
from mimaface_jax.training import synth_source

REAL_MASK_THRESHOLD = 8


class SampleDataError(ConfigError):
    """The held-out split cannot give the requested sample tasks."""


def _identity_id(name: str) -> int:
    return int(re.search(r"id(\d+)", name).group(1))


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _mixture_paths(config) -> list[tuple[str, dict]]:
    from mimaface_jax.training.data_source import resolve_dataset_dir

    out = []
    for name in parse_mixture(config.data.mixture):
        path = resolve_dataset_dir(config.data.tfds_data_dir, name)
        out.append((path, json.loads((Path(path) / "metadata.json").read_text())))
    return out


def _synth_videos(config, workdir: Path, limit: int) -> tuple[list[dict], SynthFacesConfig, str] | None:
    """Held-out SynthFaces videos (frames, motion, identity_code, name, identity_id; the first
    ``limit`` records of a TFDS split), the generator's config and where they are; None when
    the data has no SynthFaces set."""
    split = config.sample.split
    if config.data.source != "tfds":
        data_dir = Path(config.data.synth_dir or workdir / "synth_faces")
        videos, _ = synth_source.load_split(data_dir, split, 1)
        for v in videos:
            v["identity_id"] = _identity_id(v["name"])
        return videos, synth_source.synth_faces_config(config), str(data_dir)
    import tensorflow_datasets as tfds

    from mimaface_jax.data.jpeg import decode_jpeg

    for path, metadata in _mixture_paths(config):
        if metadata.get(records.META_FORMAT) != records.STORED_MOTION_FORMAT or "generator" not in metadata:
            continue
        source = tfds.builder_from_directory(path).as_data_source(split)
        videos = []
        for i in range(min(limit, len(source))):
            rec = source[i]
            where = f"{path} {split} record {i}"
            videos.append({"frames": np.stack([decode_jpeg(b, where) for b in rec["frames"]]),
                           "motion": np.asarray(rec["motion"], np.float32),
                           "identity_code": np.asarray(rec["identity_code"], np.float32),
                           "name": _text(rec["clip_id"]), "identity_id": _identity_id(_text(rec["speaker_id"]))})
        return videos, SynthFacesConfig(**metadata["generator"]), path
    return None


def cross_tasks(videos, sf_config: SynthFacesConfig, where: str, count: int, frames: int,
                resolution: int) -> list[dict]:
    faces = SynthFaces(sf_config)
    tasks = []
    for i in range(min(count, len(videos))):
        a = videos[i]
        others = [v for v in videos[i + 1:] + videos[:i] if v["identity_id"] != a["identity_id"]]
        if not others:
            raise SampleDataError(f"samples: the held-out split of {where} has one identity; cross-identity "
                                  "reenactment needs >= 2 (data.synth_validation_identities)")
        b = others[0]
        person_a = faces.identity(a["identity_id"])
        motion_b = b["motion"][:frames].astype(np.float32)
        source_motion = a["motion"][0].astype(np.float32)
        tasks.append({
            "name": f"{a['name']} driven by {b['name']}", "kind": "cross",
            # A's first frame rendered exactly (a stored frame is a JPEG: its artefacts would
            # put nearly every pixel into the motion mask)
            "source": cross_reenactment(person_a, a["motion"][:1], resolution)[0],
            "source_motion": source_motion,
            "source_condition": synth_render.render_condition(person_a, source_motion, resolution),
            "identity": a["identity_code"].astype(np.float32),
            "motion": motion_b,
            "condition": np.stack([synth_render.render_condition(person_a, m, resolution) for m in motion_b]),
            "driving": b["frames"][:frames],
            "truth": cross_reenactment(person_a, motion_b, resolution),
            "mask_threshold": 0,
        })
    return tasks


def self_tasks(config, count: int, frames: int) -> list[dict]:
    """Self-reenactment tasks from the first dataset of ``data.mixture`` (FaceMesh records)."""
    from mimaface_jax.data import pipeline

    path, _ = _mixture_paths(config)[0]
    spec = pipeline.DatasetSource(path, config.sample.split)
    opened = pipeline.open_source(spec)
    sampler = pipeline.ClipSampler([opened], pipeline.PipelineConfig(
        sources=(spec,), num_frames=1, k_max=0, resolution=config.data.resolution, flip_prob=0.0,
        shard_index=0, shard_count=1))
    identity_dim = int(config.model.mia.identity_dim)
    tasks = []
    for i in range(min(count, len(opened.data))):
        rec = opened.data[i]
        pixels = sampler.clip_pixels(0, i, rec)
        motion = sampler.clip_motion(0, rec)
        n = min(frames, len(motion) - 1)
        identity = (np.asarray(rec["identity"], np.float32) if sampler.with_identity
                    else np.zeros((identity_dim,), np.float32))
        tasks.append({
            "name": f"{_text(rec['clip_id'])} (self)", "kind": "self",
            "source": pixels["frames"][0], "source_motion": motion[0], "source_condition": pixels["cond"][0],
            "identity": identity, "motion": motion[1:1 + n], "condition": pixels["cond"][1:1 + n],
            "driving": pixels["frames"][1:1 + n], "truth": pixels["frames"][1:1 + n],
            "mask_threshold": REAL_MASK_THRESHOLD,
        })
    if not tasks:
        raise SampleDataError(f"samples: {path} split {config.sample.split!r} is empty (sample.split)")
    return tasks


HELD_OUT_PREFERENCE = ("validation", "test", "val", "eval")


def dataset_splits(path: str) -> list[str]:
    """The split names of a built TFDS dataset folder."""
    info = json.loads((Path(path) / "dataset_info.json").read_text())
    return [s["name"] for s in info.get("splits", [])]


def sample_dataset(config) -> str:
    """The dataset folder the samples read: the first SynthFaces set of ``data.mixture`` (cross
    reenactment), else its first dataset (self reenactment)."""
    paths = _mixture_paths(config)
    for path, metadata in paths:
        if metadata.get(records.META_FORMAT) == records.STORED_MOTION_FORMAT and "generator" in metadata:
            return path
    return paths[0][0]


def resolve_splits(config, workdir: Path, log=print) -> None:
    """Checks, before anything is compiled, that the splits the run reads exist: ``data.split``
    in every dataset of the mixture (else :class:`DataConfigError` naming the splits there are)
    and ``sample.split`` where the samples come from. A missing sample split is replaced by an
    existing held-out one (``config.sample.split`` changes, with a log line); with none, an
    error. The synthetic source renders its own train / validation splits."""
    from mimaface_jax.training.data_source import DataConfigError

    if config.data.source != "tfds":
        return
    for path, _ in _mixture_paths(config):
        splits = dataset_splits(path)
        if config.data.split not in splits:
            raise DataConfigError(f"data.split={config.data.split!r}: {path} has no such split (it has {splits})")
    if config.sample.num_videos <= 0:
        return
    path = sample_dataset(config)
    splits = dataset_splits(path)
    if config.sample.split in splits:
        return
    held_out = [s for s in HELD_OUT_PREFERENCE if s in splits and s != config.data.split]
    held_out += sorted(s for s in splits if s not in held_out and s != config.data.split)
    if not held_out:
        raise DataConfigError(f"sample.split={config.sample.split!r}: {path} has no such split and no other "
                              f"held-out split (it has {splits}); build one, or set sample.num_videos=0")
    log(f"samples: {path} has no split {config.sample.split!r}; using its held-out split {held_out[0]!r} "
        f"instead (sample.split; it has {splits})")
    config.sample.split = held_out[0]


def held_out_tasks(config, workdir: Path, count: int, frames: int) -> tuple[list[dict], str]:
    """(tasks, a description of where they come from) for the run's data."""
    # a few more videos than tasks, for drivers of other identities
    synth = _synth_videos(config, workdir, limit=4 * count + 4)
    if synth is not None:
        videos, sf_config, where = synth
        return cross_tasks(videos, sf_config, where, count, frames, config.data.resolution), where
    tasks = self_tasks(config, count, frames)
    return tasks, _mixture_paths(config)[0][0]
