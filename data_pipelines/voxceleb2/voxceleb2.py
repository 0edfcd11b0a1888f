"""``voxceleb2``: VoxCeleb2 utterance videos -> face clip records (``FACEMESH_FORMAT``).

manual_dir layout (the official ``vox2_dev_mp4`` / ``vox2_test_mp4`` archives unpacked; any
parent folders, e.g. ``dev/mp4/`` and ``test/mp4/``, are allowed):

    manual_dir/**/idXXXXX/<youtube id>/<nnnnn>.mp4

speaker id = ``idXXXXX``; video id = ``idXXXXX/<youtube id>/<nnnnn>`` (one utterance file).
``.mp4`` files whose path does not end in that pattern are skipped and counted as
``unrecognised_name``; other files (``.m4a`` audio, txt) are ignored. The official dev/test
split is NOT used: splits come from the hash of the speaker id (``common/splits.py``), which is
identity-disjoint as well.
"""

from __future__ import annotations

import os
import re

from data_pipelines.common.builder import FaceVideoBuilder
from data_pipelines.common.preprocess import Skip, VideoItem
from data_pipelines.common.video_files import find_videos

LAYOUT = __doc__
_NAME = re.compile(r"(?:^|/)(id\d+)/([^/]+)/(\d+)\.mp4$")


def parse_voxceleb2_path(rel: str) -> VideoItem | None:
    """``.../idXXXXX/<ytid>/<nnnnn>.mp4`` (relative, '/'-separated) -> ids, else None."""
    m = _NAME.search(rel)
    if m is None:
        return None
    speaker, youtube, utterance = m.groups()
    return VideoItem(path=rel, speaker_id=speaker, video_id=f"{speaker}/{youtube}/{utterance}")


class Voxceleb2(FaceVideoBuilder):
    """VoxCeleb2 talking-head clips (speaker = VoxCeleb id)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

    def _list_videos(self, manual_dir: str):
        items, skips = [], []
        for rel in find_videos(manual_dir, [".mp4"]):
            path = os.path.join(manual_dir, rel)
            item = parse_voxceleb2_path(rel)
            if item is None:
                skips.append(Skip("unrecognised_name", path,
                                  "expected .../idXXXXX/<youtube id>/<nnnnn>.mp4"))
            else:
                items.append(VideoItem(path, item.speaker_id, item.video_id))
        return items, skips
