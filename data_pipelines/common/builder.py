"""Base TFDS builder of face-video clip datasets (``FACEMESH_FORMAT``, see records.py).

A concrete builder only lists its videos: ``_list_videos(manual_dir) -> (items, skips)``
(``VideoItem`` s with speaker and video ids, plus ``Skip`` s for files it could not name).
Everything else is shared:

- splits: ``splits.assign_split(speaker_id)`` (identity-disjoint); only splits that received
  videos are declared (TFDS cannot write an empty split);
- generation: plain Python (one ``VideoProcessor`` in this process) by default, or Apache
  Beam when a runner is configured (``tfds.download.DownloadConfig(beam_runner=...)`` or
  ``beam_options=...``): ``_generate_examples`` then returns a ``beam.PTransform``
  (``Create(videos) | ParDo(ProcessVideoDoFn)``; one ``VideoProcessor`` per Beam worker);
- skipped videos are counted, never fatal: ``metadata.json`` holds ``skipped`` ({reason:
  count}) and, without Beam, ``skipped_files`` (the first 50 paths per reason with the
  detail; Beam reports counts only, from its counters);
- post-pass: the expression PCA basis is fitted on the TRAIN split's records (landmarks
  -> canonical shapes minus the video's neutral shape) and written beside the data as
  ``expression_basis.npz`` (metadata key ``expression_basis``). The records' expression field
  stays zero; the pipeline measures expression at read time with a basis (records.py says why).
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import inspect
import os

import tensorflow_datasets as tfds
from etils import epath

from data_pipelines.common import features as features_lib
from data_pipelines.common import splits as splits_lib
from data_pipelines.common.preprocess import PreprocessConfig, Skip, VideoItem, VideoProcessor
from mimaface_jax.data import records

MAX_LISTED_SKIPS = 50


@dataclasses.dataclass(eq=False)
class FaceVideoConfig(tfds.core.BuilderConfig):
    """Builder config: the crop / clip / tracking settings (``PreprocessConfig``) + splits."""

    crop_size: int = 512
    clip_length: int = 64
    min_clip_frames: int = 24
    max_clips_per_video: int = 0
    min_face_fraction: float = 0.9
    crop_mode: str = "clip"
    smooth_window: int = 9
    jpeg_quality: int = 95
    num_expression: int = 64
    arcface_model: str | None = None
    identity_frames: int = 4
    split_fractions: tuple = splits_lib.DEFAULT_FRACTIONS
    pca_max_frames: int = 200_000

    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig(
            crop_size=self.crop_size, clip_length=self.clip_length,
            min_clip_frames=self.min_clip_frames, max_clips_per_video=self.max_clips_per_video,
            min_face_fraction=self.min_face_fraction, crop_mode=self.crop_mode,
            smooth_window=self.smooth_window, jpeg_quality=self.jpeg_quality,
            num_expression=self.num_expression, arcface_model=self.arcface_model,
            identity_frames=self.identity_frames)


def default_configs() -> list[FaceVideoConfig]:
    return [FaceVideoConfig(name="crop512", description="512x512 crops, 64-frame clips"),
            FaceVideoConfig(name="crop256", crop_size=256,
                            description="256x256 crops, 64-frame clips")]


class FaceVideoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared machinery; subclasses implement ``_list_videos`` (and document their layout)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Clips with FaceMesh landmarks, pose/gaze motion, JPEG crops."}
    BUILDER_CONFIGS = default_configs()

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        """The builder's source file. TFDS's own lookup goes through ``importlib_resources``
        (not installed here) for classes inside regular packages."""
        return epath.Path(inspect.getfile(cls))

    @abc.abstractmethod
    def _list_videos(self, manual_dir: str) -> tuple[list[VideoItem], list[Skip]]:
        """All input videos under ``manual_dir`` and the files that could not be named."""

    # -- info ---------------------------------------------------------------------------------
    def _identity_dim(self) -> int:
        if not self.builder_config.arcface_model:
            return 0
        from mimaface_jax.face.identity import ArcFaceEmbedder

        dim = ArcFaceEmbedder(self.builder_config.arcface_model).dim
        if dim is None:
            raise ValueError(f"{self.builder_config.arcface_model}: the ArcFace model's output "
                             "has no static size; records need a fixed identity size")
        return dim

    def _layout(self):
        from mimaface_jax.face.motion_layout import facemesh_layout

        return facemesh_layout(self.builder_config.num_expression)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(self.__doc__ or "").strip().split("\n")[0],
            features=features_lib.facemesh_features(self._layout().size, self._identity_dim()),
            metadata=tfds.core.MetadataDict(),
        )

    # -- generation ---------------------------------------------------------------------------
    def _download_and_prepare(self, dl_manager, download_config):
        self._use_beam = (download_config.beam_runner is not None
                          or download_config.beam_options is not None)
        self._skips = collections.Counter()
        self._skip_files = collections.defaultdict(list)
        self._videos_seen = 0
        self._videos_used = set()
        self._speakers = {}
        self._processor = None
        try:
            super()._download_and_prepare(dl_manager, download_config)
        except AssertionError as err:
            if "No examples were yielded" not in str(err):
                raise
            raise RuntimeError(
                f"{self.name}: every video of a split was skipped, and TFDS cannot write an "
                f"empty split ({err}). Skips so far: {dict(self._skips)}; "
                f"{dict(self._skip_files)}") from err
        finally:
            if self._processor is not None:
                self._processor.close()
        self._write_metadata()
        self._fit_expression_basis()

    def _split_generators(self, dl_manager):
        manual_dir = dl_manager.manual_dir
        if not os.path.isdir(manual_dir):
            raise FileNotFoundError(
                f"{self.name}: manual_dir {manual_dir} does not exist; put the raw videos "
                f"there:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        items, skips = self._list_videos(str(manual_dir))
        for skip in skips:
            self._count_skip(skip)
        self._videos_seen = len(items) + len(skips)
        if not items:
            raise FileNotFoundError(f"{self.name}: no usable video found under {manual_dir} "
                                    f"({len(skips)} file(s) skipped: {dict(self._skips)}); "
                                    f"expected layout:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        fractions = splits_lib.check_fractions(self.builder_config.split_fractions)
        by_split = collections.defaultdict(list)
        for item in sorted(items, key=lambda i: i.video_id):
            by_split[splits_lib.assign_split(item.speaker_id, fractions)].append(item)
        self._speakers = {s: len({i.speaker_id for i in v}) for s, v in by_split.items()}
        return {split: self._generate_examples(videos) for split, videos in by_split.items()}

    def _generate_examples(self, videos: list[VideoItem]):
        if self._use_beam:
            from data_pipelines.common import beam_ops

            return beam_ops.process_videos(videos, self.builder_config.preprocess_config(),
                                           self.name)
        return self._generate_in_process(videos)

    def _generate_in_process(self, videos: list[VideoItem]):
        if self._processor is None:
            self._processor = VideoProcessor(self.builder_config.preprocess_config())
        for item in videos:
            for out in self._processor.process(item):
                if isinstance(out, Skip):
                    self._count_skip(out)
                else:
                    self._videos_used.add(item.video_id)
                    yield out

    def _count_skip(self, skip: Skip) -> None:
        self._skips[skip.reason] += 1
        listed = self._skip_files[skip.reason]
        if len(listed) < MAX_LISTED_SKIPS:
            listed.append(f"{skip.path}: {skip.detail}" if skip.detail else skip.path)

    def _process_pipeline_result(self, pipeline_result) -> None:
        from data_pipelines.common import beam_ops

        skips, used = beam_ops.read_counters(pipeline_result, self.name)
        self._skips.update(skips)
        self._videos_used = used

    # -- metadata and post-pass ---------------------------------------------------------------
    def _write_metadata(self) -> None:
        c = self.builder_config
        used = (self._videos_used if isinstance(self._videos_used, int)
                else len(self._videos_used))
        self.info.metadata.update({
            records.META_FORMAT: records.FACEMESH_FORMAT,
            records.META_LAYOUT: self._layout().to_json(),
            records.META_CROP_SIZE: c.crop_size,
            records.META_CLIP_LENGTH: c.clip_length,
            records.META_MIN_CLIP_FRAMES: c.min_clip_frames,
            records.META_NUM_EXPRESSION: c.num_expression,
            records.META_HAS_IDENTITY: bool(c.arcface_model),
            records.META_SKIPPED: {r: int(n) for r, n in sorted(self._skips.items())},
            records.META_SKIPPED_FILES: {r: list(v) for r, v in sorted(self._skip_files.items())},
            records.META_VIDEOS: {"seen": int(self._videos_seen), "used": int(used)},
            records.META_CLIPS: {s: int(info.num_examples)
                                 for s, info in self.info.splits.items()},
            records.META_SPEAKERS: dict(self._speakers),
            records.META_SPLIT_FRACTIONS: [list(x) for x in
                                           splits_lib.check_fractions(c.split_fractions)],
            "crop_mode": c.crop_mode,
        })

    def _fit_expression_basis(self) -> None:
        from data_pipelines.common.expression_fit import fit_basis_from_split

        if "train" not in self.info.splits:
            raise ValueError(
                f"{self.name}: no 'train' split was produced (splits: "
                f"{list(self.info.splits.keys())}), so no expression basis can be fitted; "
                "check split_fractions or add speakers")
        basis = fit_basis_from_split(self.info.features, self.info.splits["train"].filepaths,
                                     self.builder_config.num_expression,
                                     self.builder_config.pca_max_frames, source=self.name)
        basis.save(os.path.join(self.data_dir, records.EXPRESSION_BASIS_FILE))
        self.info.metadata[records.META_EXPRESSION_BASIS] = records.EXPRESSION_BASIS_FILE
