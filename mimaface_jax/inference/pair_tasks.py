"""Evaluation tasks from a folder of (source, driving) file pairs, made the way ``animate`` makes
its inputs (``python -m mimaface_jax.evaluate --pairs DIR``).

The folder, either way:

- one subfolder per pair (name order; the subfolder's name is the pair's), holding exactly one
  ``source.*`` and one ``driving.*``: ``DIR/<name>/source.png`` + ``DIR/<name>/driving.mp4``;
- or ``DIR/pairs.csv``, one ``name,source,driving`` line per pair (paths relative to DIR; a
  first line ``name,source,driving`` is a header; blank lines and ``#`` lines are skipped).
  When ``pairs.csv`` exists it alone lists the pairs.

A source is an image (``media_io.IMAGE_SUFFIXES``: png, jpg, webp, ...) for a FaceMesh-layout
model, or a SynthFaces person ``.npz`` (``python -m mimaface_jax.data.synth_faces``) for a
``synth-v1`` model. A driving is a video (``media_io.VIDEO_SUFFIXES``: mp4, mov, avi, webm,
mkv, ...), a folder of frames (``driving/``, image files in name order, 25 fps) or a motion
``.npz`` (a SynthFaces motion file, or ``face.inspect``'s for FaceMesh models).

A pair becomes a task (the keys of ``training/sample_tasks.py``) through ``animate``'s own
steps: ``load_source`` (face crop, the source's own motion, identity input: ArcFace with
``identity_model``, else zeros; a SynthFaces person's identity code), ``load_driving`` (motion
tracked in the model's crop), ``transfer`` with animate's defaults (relative to the first
driving frame, pose + expression + gaze, no smoothing) and the condition renders of the source's
face under that motion; cut to ``frames`` frames.

Ground truth: a SynthFaces person is rebuilt exactly from its file, so a SynthFaces pair's truth
is that person rendered under the transferred motion (the held-out cross tasks' truth). A
FaceMesh pair (a portrait driven by another face) has none: ``truth`` is None and only the
metrics that need no truth are scored. Its ``driving`` frames (for AED / APD / gaze / jitter)
are the driving video cut to the model's crop with the smoothed per-frame transforms its motion
was measured in; None when it is a motion file.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import os

import numpy as np

from mimaface_jax.face import media_io

SYNTH_LAYOUT = "synth-v1"
CSV_NAME = "pairs.csv"
CSV_HEADER = ["name", "source", "driving"]


class PairError(ValueError):
    """A bad pairs folder or pair (one line naming the folder, pair or file)."""


@dataclasses.dataclass(frozen=True)
class Pair:
    name: str
    source: str       # file path
    driving: str      # file or frames-folder path


def _kind(path: str) -> str:
    """'image' | 'video' | 'frames' | 'npz' | 'other' by suffix (a folder: frames)."""
    if os.path.isdir(path):
        return "frames"
    lower = path.lower()
    if lower.endswith(".npz"):
        return "npz"
    if lower.endswith(media_io.IMAGE_SUFFIXES):
        return "image"
    return "video" if media_io.is_video_path(path) else "other"


def _check_kinds(pair: Pair, where: str) -> Pair:
    if _kind(pair.source) not in ("image", "npz"):
        raise PairError(f"{where}: source {pair.source} is neither an image ({', '.join(media_io.IMAGE_SUFFIXES)}) "
                        "nor a SynthFaces person .npz")
    if _kind(pair.driving) not in ("video", "frames", "npz"):
        raise PairError(f"{where}: driving {pair.driving} is neither a video "
                        f"({', '.join(media_io.VIDEO_SUFFIXES)}), a folder of frames nor a motion .npz")
    return pair


def _one(folder: str, stem: str, name: str) -> str:
    found = sorted(n for n in os.listdir(folder) if os.path.splitext(n)[0] == stem and not n.startswith("."))
    if not found:
        raise PairError(f"pair {name}: no {stem}.* in {folder}")
    if len(found) > 1:
        raise PairError(f"pair {name}: {len(found)} {stem} candidates in {folder} ({', '.join(found)}); keep one")
    return os.path.join(folder, found[0])


def _from_csv(folder: str) -> list[Pair]:
    path = os.path.join(folder, CSV_NAME)
    pairs, names = [], set()
    with open(path, newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            row = [c.strip() for c in row]
            if not any(row) or row[0].startswith("#") or (n == 1 and row == CSV_HEADER):
                continue
            where = f"{path}:{n}"
            if len(row) != 3 or not all(row):
                raise PairError(f"{where}: a line is 'name,source,driving', got {','.join(row)!r}")
            if row[0] in names:
                raise PairError(f"{where}: pair name {row[0]!r} is used twice")
            names.add(row[0])
            files = [os.path.join(folder, c) for c in row[1:]]
            for file in files:
                if not os.path.exists(file):
                    raise PairError(f"{where}: {file} does not exist")
            pairs.append(_check_kinds(Pair(row[0], files[0], files[1]), f"{where} (pair {row[0]})"))
    return pairs


def find_pairs(folder: str) -> list[Pair]:
    """The pairs of ``folder`` (see the module docstring), checked for their structure and file
    kinds only (nothing is read but ``pairs.csv``); a PairError for a bad folder."""
    if not os.path.isdir(folder):
        raise PairError(f"--pairs {folder}: no such folder")
    if os.path.isfile(os.path.join(folder, CSV_NAME)):
        pairs = _from_csv(folder)
    else:
        pairs = []
        for name in sorted(os.listdir(folder)):
            sub = os.path.join(folder, name)
            if name.startswith(".") or not os.path.isdir(sub):
                continue
            pairs.append(_check_kinds(Pair(name, _one(sub, "source", name), _one(sub, "driving", name)),
                                      f"pair {name}"))
    if not pairs:
        raise PairError(f"--pairs {folder}: no pairs (no subfolder with a source.* and a driving.*, no "
                        f"{CSV_NAME} lines)")
    return pairs


def _npz_layout(path: str):
    """The motion layout a motion ``.npz`` names (SynthFaces writes one), or None."""
    from mimaface_jax.face.motion_layout import MotionLayout
    from mimaface_jax.inference.source import _load_npz

    data = _load_npz(path)
    if "layout" not in data:
        return None
    return MotionLayout.from_json(str(data["layout"]))


def check_pair_layout(pair: Pair, loaded) -> None:
    """A PairError when a file of the pair cannot drive this model's motion layout."""
    version = loaded.layout.version
    synth = loaded.config.model.mia.motion_layout == SYNTH_LAYOUT
    source_kind, driving_kind = _kind(pair.source), _kind(pair.driving)
    if synth and source_kind != "npz":
        raise PairError(f"pair {pair.name}: source {pair.source} is an image; the model's motion layout is "
                        f"{version!r} (SynthFaces), whose source is a SynthFaces person .npz "
                        "(python -m mimaface_jax.data.synth_faces)")
    if synth and driving_kind != "npz":
        what = "a folder of frames" if driving_kind == "frames" else "a video"
        raise PairError(f"pair {pair.name}: driving {pair.driving} is {what}; the model's motion layout is "
                        f"{version!r} (SynthFaces), which is driven by a SynthFaces motion .npz")
    if not synth and source_kind == "npz":
        raise PairError(f"pair {pair.name}: source {pair.source} is a .npz (a SynthFaces person file); the "
                        f"model's motion layout is {version!r} (FaceMesh), whose source is a portrait image")
    if driving_kind == "npz":
        layout = _npz_layout(pair.driving)
        if layout is not None and (layout.version != version or layout.size != loaded.layout.size):
            raise PairError(f"pair {pair.name}: driving {pair.driving} holds motion in layout {layout.version!r} "
                            f"({layout.size} values); the model's motion layout is {version!r} "
                            f"({loaded.layout.size} values)")


def _driving_crops(driving, count: int, size: int) -> np.ndarray | None:
    """The first ``count`` driving frames cut to the model's crop as their motion was measured
    -> (count, size, size, 3) uint8; None for a motion file."""
    from mimaface_jax.face import align
    from mimaface_jax.inference.motion_track import crop_transforms

    if driving.landmarks is None:
        return None
    transforms = crop_transforms(driving.landmarks, driving.found, size)
    frames = driving.frames()
    try:
        crops = [align.warp_crop(f, transforms[i], size, border="replicate")
                 for i, f in enumerate(itertools.islice(frames, count))]
    finally:
        frames.close()   # the video decoder, when the loop stopped early
    return np.stack(crops)


def make_task(pair: Pair, loaded, frames: int, identity_model: str | None = None) -> dict:
    """One pair -> a task dict (``training/sample_tasks.py``'s keys; ``truth`` None without one):
    source / source_condition (r, r, 3) uint8, motion (T, D), condition / driving / truth
    (T, r, r, 3) uint8 with T = min(frames, driving length)."""
    from mimaface_jax.data.synth_faces import cross_reenactment
    from mimaface_jax.inference.driving import load_driving
    from mimaface_jax.inference.motion_transfer import TransferSettings, transfer
    from mimaface_jax.inference.source import load_source

    r = int(loaded.config.data.resolution)
    source = load_source(pair.source, loaded, None, identity_model)
    driving = load_driving(pair.driving, loaded)
    motion, reference = transfer(source.motion, driving.motion, loaded.layout, TransferSettings())
    motion = motion[:frames]
    return {
        "name": pair.name, "kind": "cross", "source_path": pair.source, "driving_path": pair.driving,
        "source": source.crop, "source_motion": source.motion, "source_condition": source.render(source.motion),
        "identity": source.identity, "motion": motion,
        "condition": np.stack([source.render(m) for m in motion]),
        "driving": _driving_crops(driving, len(motion), r),
        "truth": None if source.person is None else cross_reenactment(source.person, motion, r),
        # renders and exact SynthFaces truth: no compression noise to ignore
        "mask_threshold": 0,
        "driving_missing_frames": int((~driving.found[:len(motion)]).sum()), "reference_frame": reference,
    }


def pair_tasks(pairs: list[Pair], loaded, frames: int, identity_model: str | None = None,
               log=lambda _: None) -> tuple[list[dict], dict]:
    """-> (tasks, {metric: why it is not computed} for these pairs). Every pair's layout is
    checked before any is loaded; a PairError naming the pair and file for bad content."""
    from mimaface_jax.face.landmarks import FaceNotFoundError
    from mimaface_jax.inference.errors import AnimateError

    def named(pair: Pair, fn, *args):
        try:
            return fn(pair, loaded, *args)
        except (AnimateError, media_io.MediaReadError, FaceNotFoundError) as err:
            raise PairError(f"pair {pair.name}: {err}") from None

    for pair in pairs:
        named(pair, check_pair_layout)
    tasks = []
    for pair in pairs:
        task = named(pair, make_task, frames, identity_model)
        log(f"pair {pair.name}: {os.path.basename(pair.source)} driven by {os.path.basename(pair.driving)} "
            f"({len(task['motion'])} frames, {task['driving_missing_frames']} driving frames without a face)")
        tasks.append(task)
    notes = {}
    no_truth = [t["name"] for t in tasks if t["truth"] is None]
    if no_truth:
        notes["ground_truth_metrics"] = (
            f"pairs {', '.join(no_truth)} have no ground truth (a portrait driven by another face): PSNR / SSIM / "
            "L1 (whole frame, in the motion mask, copy-the-source) and the ground truth's flicker and inter-clip "
            "discontinuity need one; flicker is measured where the condition renders never change")
    no_frames = [t["name"] for t in tasks if t["driving"] is None]
    if no_frames and loaded.basis is not None:
        notes["aed_apd_gaze_jitter_pairs"] = (f"pairs {', '.join(no_frames)} are driven by a motion file: no "
                                              "driving frames to measure")
    return tasks, notes
