"""The trainer's batch source: ``make_train_iterator(config, workdir)``.

``data.source = "tfds"``: the grain pipeline (``mimaface_jax.data.pipeline``) over the TFDS
ArrayRecord datasets of ``data.mixture`` ("name=weight,...") under ``data.tfds_data_dir``, split
``data.split``, per-process shards (``grain.sharding.ShardByJaxProcess``); with
``data.use_cache`` batches carry the cached VAE moments and CLIP tokens instead of pixels.
``data.source = "synth"``: the in-memory SynthFaces source (``synth_source``; tests, demo).

Both return a :class:`TrainBatches`: ``next()`` -> this process's share of the global batch in
the train step's layout (``train_step.batch_shapes``), ``get_state()`` -> a JSON-able dict
(saved in every checkpoint, one per process), ``set_state(dict)``, and ``report`` (records
skipped as corrupt so far: the synthetic source finds them when it loads, the grain source as
it reads them; the trainer writes the count to the metrics).

Train-step batch (b = global batch / processes, S = k_max + F, pixels or cached):
  frames, condition (b, S, H, W, 3) uint8 | latent_moments, cond_moments (b, S, h, w, 2C) f32
  source (b, H, W, 3) uint8               | source_clip_tokens (b, L, D) f32
  motion (b, S, D_motion) f32,  identity (b, E) f32
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Iterator

import jax
import numpy as np

from mimaface_jax.config_validation import ConfigError, parse_mixture

PIXEL_KEYS = ("frames", "condition", "source")
CACHED_KEYS = ("latent_moments", "cond_moments", "source_clip_tokens")


class DataConfigError(ConfigError):
    """The data section of the config does not match what is on disk."""


def resolve_dataset_dir(data_dir: str, name: str) -> str:
    """``<data_dir>/<name>/<builder config>/<version>`` (or ``<data_dir>/<name>/<version>``).

    ``name`` may also be ``name/config/version`` or an absolute version folder.
    """
    root = os.path.expanduser(data_dir)
    direct = name if os.path.isabs(name) else os.path.join(root, name)
    if os.path.isfile(os.path.join(direct, "dataset_info.json")):
        return direct
    found = sorted({os.path.dirname(p) for pattern in ("*/dataset_info.json", "*/*/dataset_info.json")
                    for p in glob.glob(os.path.join(direct, pattern))})
    if not found:
        raise DataConfigError(
            f"data.mixture has {name!r} but {direct} holds no TFDS dataset (no dataset_info.json "
            f"below it); build it with data_pipelines (e.g. tfds build) into data.tfds_data_dir={data_dir!r}")
    if len(found) > 1:
        raise DataConfigError(
            f"data.mixture: {direct} holds {len(found)} datasets {found}; name one of them in "
            "data.mixture as 'name/config/version' (or remove the others)")
    return found[0]


class TrainBatches:
    """Common interface (see the module docstring)."""

    report: dict

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        raise NotImplementedError

    def get_state(self) -> dict:
        raise NotImplementedError

    def set_state(self, state: dict) -> None:
        raise NotImplementedError


class GrainBatches(TrainBatches):
    """The grain pipeline's batches converted to the train step's keys and dtypes."""

    def __init__(self, config, process_index: int, process_count: int, log=print):
        from mimaface_jax.data import pipeline

        self.log = log

        d = config.data
        if not d.tfds_data_dir:
            raise DataConfigError("data.source='tfds' needs data.tfds_data_dir (the TFDS data_dir of "
                                  "the datasets in data.mixture)")
        weights = {k: w for k, w in parse_mixture(d.mixture).items() if w > 0}
        sources = tuple(pipeline.DatasetSource(path=resolve_dataset_dir(d.tfds_data_dir, name), split=d.split,
                                               weight=w) for name, w in weights.items())
        self.use_cache = bool(d.use_cache)
        pconfig = pipeline.PipelineConfig(
            sources=sources, batch_size=d.global_batch_size // process_count,
            num_frames=config.model.num_frames, k_max=config.model.ica.k_max, resolution=d.resolution,
            flip_prob=0.0 if self.use_cache else float(d.flip_prob), seed=config.seed,
            worker_count=int(d.num_workers), shard_index=process_index, shard_count=process_count,
            use_cache=self.use_cache)
        try:
            dataset, self.sampler = pipeline.build_dataset(pconfig)
        except pipeline.MixtureError as err:
            raise DataConfigError(f"data.mixture={d.mixture!r}: {err}") from err
        self.paths = [s.path for s in sources]
        log(f"data: {self.sampler.basis_note}")
        _check_motion_layout(self.sampler.layout, config, self.paths)
        self.stored_motion = not self.sampler.facemesh
        if not self.stored_motion and not self.sampler.with_identity and config.model.mia.identity_modulation:
            raise DataConfigError(
                f"data.mixture {list(weights)}: not every dataset has ArcFace identities (metadata "
                "has_identity) but model.mia.identity_modulation=True; rebuild them with an identity "
                "model or set model.mia.identity_modulation=False")
        self.identity_modulation = bool(config.model.mia.identity_modulation)
        self.identity_dim = int(config.model.mia.identity_dim)
        self._iterator = iter(dataset)
        self._identities: dict[tuple[int, int], np.ndarray] = {}
        self.report = {"skipped": 0, "skipped_files": {}, "sources": self.paths}

    def _identity_code(self, dataset_index: int, record_index: int) -> np.ndarray:
        """SynthFaces records store the identity code; the pipeline does not yield it."""
        key = (dataset_index, record_index)
        if key not in self._identities:
            rec = self.sampler.sources[dataset_index][record_index]
            self._identities[key] = np.asarray(rec["identity_code"], np.float32)
        return self._identities[key]

    def _count_skipped(self, batch: dict) -> None:
        """Corrupt records the pipeline passed over for this batch (``pipeline`` docstring):
        each distinct one is counted and logged once (it comes back every epoch)."""
        named, new = [], 0
        for d, first, n in zip(batch["dataset_index"], batch["skipped_first"], batch["skipped_records"]):
            path = self.paths[int(d)]
            if n and int(first) not in self.report["skipped_files"].get(path, []):
                self.report["skipped_files"].setdefault(path, []).append(int(first))
                new += int(n)
                named.append(f"{path} record {int(first)}"
                             + (f" (+{int(n) - 1} after it)" if n > 1 else ""))
        if new:
            self.report["skipped"] += new
            self.log(f"data: skipped {new} corrupt record(s) ({self.report['skipped']} so far): "
                     f"{'; '.join(named)}; their samples come from the next records of the shard")

    def __next__(self) -> dict:
        batch = next(self._iterator)
        self._count_skipped(batch)
        out = {"motion": np.asarray(batch["motion"], np.float32)}
        if self.use_cache:
            out["latent_moments"] = np.asarray(batch["latent_moments"], np.float32)
            out["cond_moments"] = np.asarray(batch["cond_moments"], np.float32)
            out["source_clip_tokens"] = np.asarray(batch["source_clip_tokens"], np.float32)
        else:
            out.update(frames=batch["frames"], condition=batch["cond"], source=batch["source"])
        if "identity" in batch:
            out["identity"] = np.asarray(batch["identity"], np.float32)
        elif self.stored_motion:
            out["identity"] = np.stack([self._identity_code(int(d), int(r)) for d, r in
                                        zip(batch["dataset_index"], batch["record_index"])])
        else:  # identity modulation off (checked in __init__): the model ignores it
            out["identity"] = np.zeros((len(out["motion"]), self.identity_dim), np.float32)
        if out["identity"].shape[-1] != self.identity_dim:
            raise DataConfigError(f"datasets {self.paths} give identity vectors of size "
                                  f"{out['identity'].shape[-1]}, model.mia.identity_dim={self.identity_dim}")
        return out

    def get_state(self) -> dict:
        return {"grain": self._iterator.get_state()}

    def set_state(self, state: dict) -> None:
        if "grain" not in state:
            raise ValueError(f"data iterator state {str(state)[:200]} was not saved by the grain source "
                             "(data.source changed between runs?)")
        self._iterator.set_state(state["grain"])


def _check_motion_layout(data_layout, config, paths) -> None:
    """The datasets' motion layout (from their metadata) must be the one the model reads."""
    from mimaface_jax.training.model_config import motion_layout

    want = motion_layout(config)
    if data_layout != want:
        raise DataConfigError(
            f"datasets {paths} carry motion vectors of layout {data_layout.version!r} "
            f"({data_layout.size} numbers: {', '.join(data_layout.names)}), but the model is configured "
            f"for {want.version!r} ({want.size} numbers) by model.mia.motion_layout="
            f"{config.model.mia.motion_layout!r} / model.mia.num_expression={config.model.mia.num_expression}; "
            "set those to match the data (SynthFaces: 'synth-v1'; FaceMesh datasets: 'facemesh' with the "
            "expression basis size they were built with)")


class SynthBatches(TrainBatches):
    def __init__(self, iterator, report: dict):
        self._iterator = iterator
        self.report = report

    def __next__(self) -> dict:
        return next(self._iterator)

    def get_state(self) -> dict:
        return self._iterator.get_state()

    def set_state(self, state: dict) -> None:
        self._iterator.set_state(state)


def synth_data_dir(config, workdir: str | os.PathLike | None) -> Path:
    if config.data.synth_dir:
        return Path(config.data.synth_dir).expanduser()
    if workdir is None:
        raise DataConfigError("data.source='synth' with an empty data.synth_dir needs a workdir")
    return Path(workdir) / "synth_faces"


def make_synth_iterator(config, workdir=None, log=print) -> SynthBatches:
    from mimaface_jax.training import synth_source

    data_dir = synth_data_dir(config, workdir)
    if jax.process_index() == 0:
        synth_source.build_synth_videos(data_dir, synth_source.synth_faces_config(config), log=log)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("synth data built")
    s = config.model.num_frames + config.model.ica.k_max
    videos, report = synth_source.load_split(data_dir, "train", s)
    if report["skipped"]:
        log(f"data: skipped {report['skipped']} corrupt/unreadable record(s): "
            f"{json.dumps(report['skipped_files'])}")
    log(f"data: {len(videos)} training videos from {data_dir} (in-memory SynthFaces source)")
    iterator = synth_source.SynthClipIterator(
        videos, frames_per_clip=s, global_batch_size=config.data.global_batch_size, seed=config.seed,
        process_index=jax.process_index(), process_count=jax.process_count())
    return SynthBatches(iterator, report)


def make_train_iterator(config, workdir: str | os.PathLike | None = None, log=print) -> TrainBatches:
    """This process's batch iterator for ``config.data`` (see the module docstring)."""
    if config.data.source == "synth":
        return make_synth_iterator(config, workdir, log)
    if config.data.source == "tfds":
        batches = GrainBatches(config, jax.process_index(), jax.process_count(), log)
        log(f"data: grain over {batches.paths} (split {config.data.split!r}, "
            f"{'cached encoder outputs' if batches.use_cache else 'pixels'})")
        return batches
    raise DataConfigError(f"data.source={config.data.source!r}: expected 'synth' or 'tfds'")


def describe(state: dict) -> str:
    """Short form of an iterator state for the log."""
    text = json.dumps(state, sort_keys=True)
    return text if len(text) < 120 else text[:117] + "..."

