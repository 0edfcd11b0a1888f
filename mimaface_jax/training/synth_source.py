"""An in-memory training batch source over SynthFaces videos (the tiny CPU configs).

``data.source = "synth"``. The grain pipeline over TFDS records (``data.source = "tfds"``,
``data_source.py``) serves real data and the demo's SynthFaces build; this source exists so
that the training-mechanics tests (kill / NaN / corrupt-file / multi-host) need no TFDS build
and get a GLOBAL batch order that does not depend on the process count. It has the same
iterator interface as a checkpointable grain iterator: ``next(it)``, ``get_state()`` ->
JSON-able dict, ``set_state(dict)``.

Build (``build_synth_videos``): one ``.npz`` per video (frames, condition renders, motion,
identity code) in a folder, plus ``index.json``. Loading checks every file; a file that
does not load or has the wrong fields/shapes is SKIPPED and counted (``skipped`` /
``skipped_files``), never fatal, and the trainer logs the count.

Batches are a pure function of ``(seed, batch index)``: the GLOBAL batch is drawn from
``numpy.random.default_rng([seed, index])`` and each process takes its contiguous slice, so
a run on 2 processes sees exactly the batches of a 1-process run, and resuming at batch n
gives the batches an uninterrupted run would have seen.

Local batch (S = k_max + F frames per clip, data order: context frames first):
  frames     (b, S, H, W, 3) uint8      condition (b, S, H, W, 3) uint8 (shape renders)
  motion     (b, S, 14) float32         source    (b, H, W, 3) uint8 (a frame of the same
                                                   video outside the clip when possible)
  identity   (b, 60) float32            (SynthFaces identity code)
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from mimaface_jax.data.synth_faces import SynthFaces, SynthFacesConfig

INDEX_FILE = "index.json"
FIELDS = ("frames", "condition", "motion", "identity_code")


def synth_faces_config(config) -> SynthFacesConfig:
    d = config.data
    return SynthFacesConfig(resolution=d.resolution, num_frames=d.synth_video_frames, seed=config.seed,
                            train_identities=d.synth_train_identities,
                            validation_identities=d.synth_validation_identities,
                            test_identities=0, videos_per_identity=d.synth_videos_per_identity)


def build_synth_videos(out_dir: str | Path, sf_config: SynthFacesConfig, splits=("train", "validation"),
                       log=print) -> Path:
    """Renders every video of ``splits`` to ``out_dir/<split>/<video>.npz`` (skips a finished build)."""
    out = Path(out_dir)
    index_path = out / INDEX_FILE
    wanted = {"config": {k: getattr(sf_config, k) for k in sf_config.__dataclass_fields__}, "splits": list(splits)}
    if index_path.exists():
        if json.loads(index_path.read_text()).get("build") == wanted:
            log(f"synth data: {out} already built")
            return out
        raise FileExistsError(f"{out} holds a SynthFaces build of another config; use another data.synth_dir "
                              "or delete that folder")
    data = SynthFaces(sf_config)
    files: dict[str, list[str]] = {}
    for split in splits:
        (out / split).mkdir(parents=True, exist_ok=True)
        files[split] = []
        ids = data.identity_ids(split)
        for n, identity_id in enumerate(ids):
            for v in range(sf_config.videos_per_identity):
                video = data.generate_video(int(identity_id), v, split)
                name = f"{split}/id{int(identity_id):07d}_v{v:03d}.npz"
                np.savez(out / name, **{k: video[k] for k in FIELDS})
                files[split].append(name)
            log(f"synth data: {split} identity {n + 1}/{len(ids)}")
    index_path.write_text(json.dumps({"build": wanted, "files": files}, indent=1))
    return out


def load_split(data_dir: str | Path, split: str, min_frames: int) -> tuple[list[dict], dict]:
    """The videos of ``split`` and a report ``{"skipped": n, "skipped_files": {name: reason}}``."""
    data_dir = Path(data_dir)
    index_path = data_dir / INDEX_FILE
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path} not found: the trainer renders the SynthFaces videos there "
                                "on first use (data.source='synth'); check data.synth_dir")
    names = json.loads(index_path.read_text())["files"].get(split)
    if not names:
        raise ValueError(f"{index_path}: no videos in split {split!r}")
    videos, skipped = [], {}
    for name in names:
        try:
            with np.load(data_dir / name) as f:
                video = {k: np.asarray(f[k]) for k in FIELDS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            skipped[name] = f"{type(err).__name__}: {err}"
            continue
        t = video["frames"].shape[0]
        if (video["frames"].ndim != 4 or video["condition"].shape != video["frames"].shape
                or video["motion"].shape[0] != t or t < min_frames):
            skipped[name] = f"bad shapes {video['frames'].shape}/{video['condition'].shape}/{video['motion'].shape}"
            continue
        video["name"] = name
        videos.append(video)
    if not videos:
        raise ValueError(f"{data_dir}: every video of split {split!r} was skipped: {skipped}")
    return videos, {"skipped": len(skipped), "skipped_files": skipped}


class SynthClipIterator:
    """Deterministic, checkpointable iterator of local training batches (see module docstring)."""

    def __init__(self, videos: list[dict], *, frames_per_clip: int, global_batch_size: int, seed: int,
                 process_index: int = 0, process_count: int = 1):
        if global_batch_size % process_count:
            raise ValueError(f"global batch {global_batch_size} is not divisible by {process_count} processes")
        self.videos = videos
        self.s = frames_per_clip
        self.global_batch = global_batch_size
        self.local_batch = global_batch_size // process_count
        self.offset = process_index * self.local_batch
        self.seed = seed
        self.index = 0

    def get_state(self) -> dict:
        return {"next_batch": self.index, "seed": self.seed, "global_batch_size": self.global_batch}

    def set_state(self, state: dict) -> None:
        if state.get("seed") != self.seed or state.get("global_batch_size") != self.global_batch:
            raise ValueError(f"data iterator state {state} was saved with another seed / global batch "
                             f"(now seed={self.seed}, global_batch_size={self.global_batch})")
        self.index = int(state["next_batch"])

    def __iter__(self):
        return self

    def _sample(self, rng: np.random.Generator) -> dict:
        video = self.videos[rng.integers(len(self.videos))]
        t = video["frames"].shape[0]
        start = int(rng.integers(0, t - self.s + 1))
        outside = [i for i in range(t) if not start <= i < start + self.s]
        src = int(rng.choice(outside)) if outside else int(rng.integers(t))
        clip = slice(start, start + self.s)
        return {"frames": video["frames"][clip], "condition": video["condition"][clip],
                "motion": video["motion"][clip].astype(np.float32), "source": video["frames"][src],
                "identity": video["identity_code"].astype(np.float32)}

    def __next__(self) -> dict:
        rng = np.random.default_rng([self.seed, self.index])
        samples = [self._sample(rng) for _ in range(self.global_batch)]  # the global batch
        self.index += 1
        mine = samples[self.offset:self.offset + self.local_batch]
        return {k: np.stack([s[k] for s in mine]) for k in mine[0]}
