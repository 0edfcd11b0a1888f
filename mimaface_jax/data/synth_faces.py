"""SynthFaces: a procedural talking-face dataset with exact ground-truth motion and identity.

Every video is a function of ``(seed, split, identity id, video index)``: the identity's
appearance comes from ``(seed, identity id)`` (``synth_identity``), the motion sequence from
``(seed, identity id, video index)`` (``synth_motion``), and the frames are rendered from both
(``synth_render``). Because any identity can be rendered with any motion, cross-identity
reenactment has exact ground truth: ``cross_reenactment(identity_a, motion_of_b)``.

Splits. Identity ids are partitioned by split into disjoint ranges:
``train: [0, n)``, ``validation: [1_000_000, 1_000_000 + n)``, ``test: [2_000_000, ...)``,
so no person is in two splits and growing one split never changes another's people.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import cv2
import numpy as np

from mimaface_jax.data import synth_motion as sm
from mimaface_jax.data import synth_render as sr
from mimaface_jax.data.synth_identity import SynthIdentity, sample_identity
from mimaface_jax.data.synth_motion import synth_layout
from mimaface_jax.face.motion_layout import MotionLayout

SPLITS = ("train", "validation", "test")
SPLIT_ID_OFFSET = 1_000_000   # identity ids of split k start at k * SPLIT_ID_OFFSET

__all__ = ["SPLITS", "SynthFaces", "SynthFacesConfig", "cross_reenactment", "motion_mask",
           "synth_layout"]


@dataclasses.dataclass(frozen=True)
class SynthFacesConfig:
    """Size and content of a SynthFaces dataset."""

    resolution: int = 64
    num_frames: int = 48
    fps: float = 25.0
    seed: int = 0
    train_identities: int = 64
    validation_identities: int = 8
    test_identities: int = 16
    videos_per_identity: int = 4
    supersample: int = sr.DEFAULT_SUPERSAMPLE
    symmetric: bool = False   # only left-right symmetric people (flip-augmentation studies)

    def __post_init__(self):
        for name in ("resolution", "num_frames", "videos_per_identity", "supersample"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SynthFacesConfig.{name} must be >= 1, "
                                 f"got {getattr(self, name)}")
        for name in ("train_identities", "validation_identities", "test_identities"):
            count = int(getattr(self, name))
            if not 0 <= count < SPLIT_ID_OFFSET:
                raise ValueError(f"SynthFacesConfig.{name} must be in [0, {SPLIT_ID_OFFSET}), "
                                 f"got {count}")
        if self.resolution < 16:
            raise ValueError(f"SynthFacesConfig.resolution must be >= 16, got {self.resolution}")
        if self.fps <= 0:
            raise ValueError(f"SynthFacesConfig.fps must be positive, got {self.fps}")

    def num_identities(self, split: str) -> int:
        _check_split(split)
        return int(getattr(self, f"{split}_identities"))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown SynthFaces split {split!r}; splits: {SPLITS}")


class SynthFaces:
    """The SynthFaces dataset of one config: identities, motions and rendered videos."""

    def __init__(self, config: SynthFacesConfig = SynthFacesConfig()):
        self.config = config
        self.layout: MotionLayout = synth_layout()

    def identity_ids(self, split: str) -> np.ndarray:
        """Global identity ids of ``split`` (disjoint between splits). (N,) int64"""
        _check_split(split)
        start = SPLITS.index(split) * SPLIT_ID_OFFSET
        return np.arange(start, start + self.config.num_identities(split), dtype=np.int64)

    def split_of(self, identity_id: int) -> str:
        """The split an identity id belongs to (error if it is in none)."""
        index, local = divmod(int(identity_id), SPLIT_ID_OFFSET)
        if identity_id >= 0 and index < len(SPLITS):
            split = SPLITS[index]
            if local < self.config.num_identities(split):
                return split
        raise ValueError(f"identity id {identity_id} is in no split of this config "
                         f"(train: 0..{self.config.train_identities - 1}, validation: "
                         f"{SPLIT_ID_OFFSET}.., test: {2 * SPLIT_ID_OFFSET}..)")

    def identity(self, identity_id: int) -> SynthIdentity:
        self.split_of(identity_id)
        return sample_identity(self.config.seed, int(identity_id), self.config.symmetric)

    def motion(self, identity_id: int, video_idx: int) -> np.ndarray:
        """The ground-truth motion of one video. (T, 14) float32 in ``synth_layout``."""
        self.split_of(identity_id)
        if not 0 <= video_idx < self.config.videos_per_identity:
            raise ValueError(f"video_idx must be in [0, {self.config.videos_per_identity}), "
                             f"got {video_idx}")
        rng = np.random.default_rng(np.random.SeedSequence(
            [self.config.seed, sm.MOTION_STREAM, int(identity_id), int(video_idx)]))
        return sm.sample_motion(rng, self.config.num_frames, self.config.fps)

    def generate_video(self, identity_id: int, video_idx: int, split: str) -> dict:
        """One video with its ground truth.

        Returns frames (T, H, W, 3) uint8, condition (T, H, W, 3) uint8 (untextured shape
        render), motion (T, 14) float32, identity_code (D,) float32, and ids: identity_id,
        video_idx, split, video_id; fps; motion_layout (JSON of ``synth_layout``).
        """
        _check_split(split)
        actual = self.split_of(identity_id)
        if actual != split:
            raise ValueError(f"identity id {identity_id} belongs to split {actual!r}, "
                             f"not {split!r}; see SynthFaces.identity_ids({split!r})")
        person = self.identity(identity_id)
        motion = self.motion(identity_id, video_idx)
        cfg = self.config
        return {
            "frames": sr.render_frames(person, motion, cfg.resolution,
                                       supersample=cfg.supersample),
            "condition": sr.render_frames(person, motion, cfg.resolution, condition=True,
                                          supersample=cfg.supersample),
            "motion": motion,
            "identity_code": person.identity_code,
            "identity_id": int(identity_id),
            "video_idx": int(video_idx),
            "split": split,
            "video_id": f"{split}/id{int(identity_id):07d}/v{int(video_idx):03d}",
            "fps": float(cfg.fps),
            "motion_layout": self.layout.to_json(),
        }

    def videos(self, split: str) -> Iterator[dict]:
        """Every video of ``split``, identity by identity."""
        for identity_id in self.identity_ids(split):
            for video_idx in range(self.config.videos_per_identity):
                yield self.generate_video(int(identity_id), video_idx, split)


def cross_reenactment(identity_a: SynthIdentity, motion_seq_b: np.ndarray, resolution: int = 64,
                      *, supersample: int = sr.DEFAULT_SUPERSAMPLE) -> np.ndarray:
    """Ground truth of reenacting ``identity_a`` with another person's motion (T, 14).

    Returns (T, H, W, 3) uint8: exactly the frames person A would have made moving like B.
    """
    return sr.render_frames(identity_a, motion_seq_b, resolution, supersample=supersample)


def motion_mask(frame: np.ndarray, source: np.ndarray, threshold: int = 0,
                dilate: int = 0) -> np.ndarray:
    """Pixels where a ground-truth frame differs from the source frame.

    frame, source: (..., H, W, C) uint8 of equal shape. A pixel is in the mask when any
    channel differs by more than ``threshold``; ``dilate`` grows the mask by that many pixels
    (square structuring element). Returns (..., H, W) bool.
    """
    frame, source = np.asarray(frame), np.asarray(source)
    if frame.shape != source.shape or frame.ndim < 3:
        raise ValueError(f"motion_mask: frame {frame.shape} and source {source.shape} must "
                         "be equal (..., H, W, C) arrays")
    diff = np.abs(frame.astype(np.int32) - source.astype(np.int32)).max(-1)
    mask = diff > threshold
    if dilate > 0:
        kernel = np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8)
        flat = mask.reshape((-1,) + mask.shape[-2:]).astype(np.uint8)
        flat = np.stack([cv2.dilate(m, kernel) for m in flat])
        mask = flat.reshape(mask.shape).astype(bool)
    return mask


# -- files for ``python -m mimaface_jax.animate`` (a SynthFaces model's source and driving) --

PERSON_FILE_KIND = "synthfaces-person"


def export_person(faces: SynthFaces, identity_id: int, path: str, video_idx: int = 0) -> str:
    """Writes the ``.npz`` that ``animate --source`` takes for a SynthFaces model: the generator
    config (JSON) and identity id (the person is rebuilt exactly from them), its identity code,
    and its own motion in the first frame of video ``video_idx`` (the source frame)."""
    import json

    np.savez(path, kind=np.asarray(PERSON_FILE_KIND), generator=np.asarray(json.dumps(dataclasses.asdict(faces.config))),
             identity_id=np.int64(identity_id), identity_code=faces.identity(identity_id).identity_code,
             source_motion=faces.motion(identity_id, video_idx)[0])
    return path


def export_motion(faces: SynthFaces, identity_id: int, path: str, video_idx: int = 0) -> str:
    """Writes the ``.npz`` that ``animate --driving`` takes: the motion (T, 14) of one video of a
    person, its fps and layout (JSON)."""
    motion = faces.motion(identity_id, video_idx)
    np.savez(path, motion=motion, found=np.ones(len(motion), bool), fps=np.float32(faces.config.fps),
             layout=np.asarray(faces.layout.to_json()))
    return path


def main(argv=None) -> int:
    """``python -m mimaface_jax.data.synth_faces --dataset DIR --out_dir OUT``: writes
    ``person.npz`` (a held-out person, ``--person``-th of ``--split``) and ``motion.npz`` (the
    motion of ANOTHER person, ``--driver``-th, over ``--frames`` frames) for ``animate``.
    ``DIR``: a built SynthFaces TFDS folder (its metadata.json holds the generator config)."""
    import argparse
    import json
    import os
    import sys

    p = argparse.ArgumentParser(prog="python -m mimaface_jax.data.synth_faces", description=main.__doc__)
    p.add_argument("--dataset", required=True, help="SynthFaces TFDS version folder (with metadata.json)")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--split", default="validation", choices=SPLITS)
    p.add_argument("--person", type=int, default=0, help="index of the source person in the split")
    p.add_argument("--driver", type=int, default=1, help="index of the driving person in the split")
    p.add_argument("--frames", type=int, default=0, help="driving frames (0: the dataset's video length)")
    args = p.parse_args(argv)
    meta_path = os.path.join(args.dataset, "metadata.json")
    if not os.path.isfile(meta_path):
        print(f"synth_faces: error: {meta_path}: not found (a built SynthFaces dataset folder?)", file=sys.stderr)
        return 1
    generator = json.loads(open(meta_path).read()).get("generator")
    if generator is None:
        print(f"synth_faces: error: {meta_path}: no 'generator' config (not a SynthFaces dataset)", file=sys.stderr)
        return 1
    config = SynthFacesConfig(**generator)
    if args.frames:
        config = dataclasses.replace(config, num_frames=args.frames)
    faces = SynthFaces(config)
    ids = faces.identity_ids(args.split)
    if args.person == args.driver or max(args.person, args.driver) >= len(ids):
        print(f"synth_faces: error: --person {args.person} and --driver {args.driver} must be two different "
              f"people of the {len(ids)} in split {args.split!r}", file=sys.stderr)
        return 1
    os.makedirs(args.out_dir, exist_ok=True)
    person = export_person(faces, int(ids[args.person]), os.path.join(args.out_dir, "person.npz"))
    motion = export_motion(faces, int(ids[args.driver]), os.path.join(args.out_dir, "motion.npz"))
    print(f"wrote {person} (person {int(ids[args.person])}) and {motion} (person {int(ids[args.driver])}'s motion, "
          f"{config.num_frames} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
