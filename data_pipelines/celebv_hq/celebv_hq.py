"""``celebv_hq``: CelebV-HQ clips -> face clip records (``FACEMESH_FORMAT``).

manual_dir layout (the official release: the clip archive unpacked and the annotation file):

    manual_dir/
      celebvhq_info.json        the annotation file (anywhere under manual_dir; exactly one)
      **/<clip id>.mp4          the clips, e.g. 35666/_0tf2n3rlJU_0.mp4 (any folders)

What is read from ``celebvhq_info.json``: its ``"clips"`` mapping ``{clip id: {"ytb_id": str,
"duration": {"start_sec", "end_sec"}, "bbox": {...}, "attributes": {...}, ...}}``. Only
``ytb_id`` is used: speaker id = ``ytb_id`` (CelebV-HQ has no person ids; clips cut from one
YouTube video are taken to show one identity, so no YouTube video spans two splits).
``duration`` / ``bbox`` (coordinates in the raw YouTube frame, which the released clips are
already cropped from) and ``attributes`` are not used: faces are detected and tracked on the
clips. video id = the clip id.

Counted skips: a clip file whose id is not in ``"clips"`` (``not_in_annotations``), an
annotated clip without a file (``missing_file``).
"""

from __future__ import annotations

import json
import os

from data_pipelines.common.builder import FaceVideoBuilder
from data_pipelines.common.preprocess import Skip, VideoItem
from data_pipelines.common.video_files import find_files, find_videos

LAYOUT = __doc__
ANNOTATION_FILE = "celebvhq_info.json"


def find_annotation_file(manual_dir: str) -> str:
    hits = [os.path.join(manual_dir, rel) for rel in find_files(manual_dir, names=[ANNOTATION_FILE])]
    if not hits:
        raise FileNotFoundError(f"celebv_hq: {ANNOTATION_FILE} not found under {manual_dir}; "
                                f"put the official annotation file there.\n{LAYOUT}")
    if len(hits) > 1:
        raise ValueError(f"celebv_hq: {len(hits)} copies of {ANNOTATION_FILE} under "
                         f"{manual_dir}: {hits}; keep exactly one")
    return hits[0]


def read_clip_speakers(path: str) -> dict[str, str]:
    """``celebvhq_info.json`` -> {clip id: ytb_id}; malformed files raise naming the key."""
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
    clips = data.get("clips") if isinstance(data, dict) else None
    if not isinstance(clips, dict):
        raise ValueError(f"{path}: expected a top-level object with a 'clips' mapping "
                         "{clip id: {'ytb_id': ...}}")
    speakers = {}
    for clip_id, info in clips.items():
        ytb = info.get("ytb_id") if isinstance(info, dict) else None
        if not isinstance(ytb, str) or not ytb:
            raise ValueError(f"{path}: clips[{clip_id!r}] has no string 'ytb_id'")
        speakers[str(clip_id)] = ytb
    return speakers


class CelebvHq(FaceVideoBuilder):
    """CelebV-HQ clips (speaker = the clip's YouTube video id)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

    def _list_videos(self, manual_dir: str):
        speakers = read_clip_speakers(find_annotation_file(manual_dir))
        files = {}
        for rel in find_videos(manual_dir, [".mp4"]):
            stem = os.path.splitext(rel.rsplit("/", 1)[-1])[0]
            files.setdefault(stem, os.path.join(manual_dir, rel))
        items, skips = [], []
        for clip_id, path in sorted(files.items()):
            if clip_id in speakers:
                items.append(VideoItem(path, speaker_id=speakers[clip_id], video_id=clip_id))
            else:
                skips.append(Skip("not_in_annotations", path,
                                  f"clip id {clip_id!r} is not in {ANNOTATION_FILE}"))
        for clip_id in sorted(set(speakers) - set(files)):
            skips.append(Skip("missing_file", os.path.join(manual_dir, clip_id + ".mp4"),
                              f"annotated in {ANNOTATION_FILE} but no {clip_id}.mp4 found"))
        return items, skips
