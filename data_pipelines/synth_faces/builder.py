"""TFDS builder ``synth_faces``: SynthFaces videos -> clip records (``STORED_MOTION_FORMAT``).

No manual download: every video is rendered by ``mimaface_jax.data.synth_faces.SynthFaces``
from the config (seed, identities per split, videos per identity, resolution, frames). Splits
are the generator's own identity-disjoint id ranges. Each video is cut into clips of
``clip_length`` frames (default: the whole video is one clip); frames and condition renders
are stored as JPEG, the exact motion (``synth_layout``) and identity code as float32 tensors.
The pipeline reads them as stored (no landmarks, no expression basis) and flips motion with
``MotionLayout.flip``.

Generation runs in process, or under Apache Beam when a runner is configured
(``DownloadConfig(beam_runner=...)``): ``Create(video keys) | FlatMap(render)``.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_pipelines.common import features as features_lib
from data_pipelines.common.preprocess import clip_bounds
from mimaface_jax.data import records
from mimaface_jax.data.jpeg import encode_jpeg
from mimaface_jax.data.synth_faces import SynthFacesConfig

SPLITS = ("train", "validation", "test")
# The generator settings a builder config exposes; their defaults are the generator's.
GENERATOR_FIELDS = ("resolution", "num_frames", "fps", "seed", "train_identities",
                    "validation_identities", "test_identities", "videos_per_identity", "symmetric")
_GENERATOR_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SynthFacesConfig)}


@dataclasses.dataclass(eq=False)
class SynthFacesBuilderConfig(tfds.core.BuilderConfig):
    """``GENERATOR_FIELDS`` (defaults: ``SynthFacesConfig``'s) + how videos become records."""

    resolution: int = _GENERATOR_DEFAULTS["resolution"]
    num_frames: int = _GENERATOR_DEFAULTS["num_frames"]
    fps: float = _GENERATOR_DEFAULTS["fps"]
    seed: int = _GENERATOR_DEFAULTS["seed"]
    train_identities: int = _GENERATOR_DEFAULTS["train_identities"]
    validation_identities: int = _GENERATOR_DEFAULTS["validation_identities"]
    test_identities: int = _GENERATOR_DEFAULTS["test_identities"]
    videos_per_identity: int = _GENERATOR_DEFAULTS["videos_per_identity"]
    clip_length: int = 0          # 0 = one clip per video
    min_clip_frames: int = 0      # 0 = clip_length (or num_frames)
    jpeg_quality: int = 95
    symmetric: bool = _GENERATOR_DEFAULTS["symmetric"]

    def generator_config(self) -> SynthFacesConfig:
        return SynthFacesConfig(**{name: getattr(self, name) for name in GENERATOR_FIELDS})

    @property
    def effective_clip_length(self) -> int:
        return self.clip_length or self.num_frames

    @property
    def effective_min_clip_frames(self) -> int:
        return self.min_clip_frames or self.effective_clip_length


def _description(**settings) -> str:
    """``"64x64, 48 frames, 64/8/16 people"`` for the generator defaults + ``settings``."""
    s = {**_GENERATOR_DEFAULTS, **settings}
    return (f"{s['resolution']}x{s['resolution']}, {s['num_frames']} frames, "
            f"{s['train_identities']}/{s['validation_identities']}/{s['test_identities']} people")


def _identity_code_size(config: SynthFacesBuilderConfig) -> int:
    from mimaface_jax.data.synth_faces import SynthFaces

    gen = SynthFaces(config.generator_config())
    return int(np.asarray(gen.identity(0).identity_code).size)


class _RenderVideo:
    """(split, identity id, video index) -> [(key, example)] of its clips. Picklable (Beam)."""

    def __init__(self, config: SynthFacesBuilderConfig):
        self.config = config
        self._gen = None

    def __call__(self, key: tuple[str, int, int]) -> list[tuple[str, dict]]:
        from mimaface_jax.data.synth_faces import SynthFaces

        if self._gen is None:
            self._gen = SynthFaces(self.config.generator_config())
        split, identity_id, video_idx = key
        video = self._gen.generate_video(identity_id, video_idx, split)
        c = self.config
        out = []
        bounds = clip_bounds(len(video["frames"]), c.effective_clip_length,
                             c.effective_min_clip_frames)
        for k, (start, stop) in enumerate(bounds):
            clip_id = f"{video['video_id']}/clip{k:04d}"
            out.append((clip_id, {
                "frames": [encode_jpeg(f, c.jpeg_quality) for f in video["frames"][start:stop]],
                "condition": [encode_jpeg(f, c.jpeg_quality)
                              for f in video["condition"][start:stop]],
                "motion": np.asarray(video["motion"][start:stop], np.float32),
                "identity_code": np.asarray(video["identity_code"], np.float32),
                "speaker_id": f"id{int(video['identity_id']):07d}",
                "video_id": video["video_id"],
                "clip_id": clip_id,
                "clip_index": k,
                "start_frame": start,
                "num_frames": stop - start,
                "fps": float(video["fps"]),
            }))
        return out


class SynthFacesBuilder(tfds.core.GeneratorBasedBuilder):
    """SynthFaces procedural talking faces with exact motion and identity ground truth."""

    name = "synth_faces"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Clips of SynthFaces videos: JPEG frames and condition renders, "
                              "synth-v1 motion, identity codes."}
    BUILDER_CONFIGS = [
        SynthFacesBuilderConfig(name="res64", resolution=64, description=_description(resolution=64)),
        SynthFacesBuilderConfig(name="res128", resolution=128, description=_description(resolution=128)),
    ]

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        """This file (TFDS's own lookup needs ``importlib_resources``, not installed)."""
        return epath.Path(inspect.getfile(cls))

    def _info(self) -> tfds.core.DatasetInfo:
        from mimaface_jax.data.synth_faces import synth_layout

        c = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self, description=self.__doc__,
            features=features_lib.stored_motion_features(synth_layout().size,
                                                         _identity_code_size(c)),
            metadata=tfds.core.MetadataDict())

    def _download_and_prepare(self, dl_manager, download_config):
        from mimaface_jax.data.synth_faces import synth_layout

        self._use_beam = (download_config.beam_runner is not None
                          or download_config.beam_options is not None)
        super()._download_and_prepare(dl_manager, download_config)
        c = self.builder_config
        self.info.metadata.update({
            records.META_FORMAT: records.STORED_MOTION_FORMAT,
            records.META_LAYOUT: synth_layout().to_json(),
            records.META_CROP_SIZE: c.resolution,
            records.META_CLIP_LENGTH: c.effective_clip_length,
            records.META_MIN_CLIP_FRAMES: c.effective_min_clip_frames,
            records.META_SKIPPED: {},
            records.META_CLIPS: {s: int(i.num_examples) for s, i in self.info.splits.items()},
            records.META_SPEAKERS: {s: c.generator_config().num_identities(s) for s in SPLITS
                                    if s in self.info.splits},
            "generator": dataclasses.asdict(c.generator_config()),
        })

    def _split_generators(self, dl_manager):
        from mimaface_jax.data.synth_faces import SynthFaces

        gen = SynthFaces(self.builder_config.generator_config())
        out = {}
        for split in SPLITS:
            keys = [(split, int(i), v) for i in gen.identity_ids(split)
                    for v in range(self.builder_config.videos_per_identity)]
            if keys:
                out[split] = self._generate_examples(keys)
        return out

    def _generate_examples(self, keys):
        render = _RenderVideo(self.builder_config)
        if self._use_beam:
            beam = tfds.core.lazy_imports.apache_beam
            return beam.Create(keys) | "RenderSynthVideo" >> beam.FlatMap(render)
        return (pair for key in keys for pair in render(key))
