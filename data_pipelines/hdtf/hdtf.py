"""``hdtf``: HDTF (High-Definition Talking Face) videos -> face clip records.

HDTF is distributed as YouTube links plus cut times (``RD_Radio_URL.txt``,
``WDA_...``, ``WRA_...``); the usual download scripts produce one file per cut, named
``<source>_<Name>_<index>.mp4``, e.g. ``WDA_BarackObama_000.mp4``, ``RD_Radio1_000.mp4``,
``WRA_MarcoRubio_001.mp4``. manual_dir layout (files searched recursively, any folders):

    manual_dir/**/<prefix>_<Name>_<nnn>.mp4

speaker id = the file stem without its trailing ``_<digits>`` index (``WDA_BarackObama``,
``RD_Radio1``), so every cut of one person/programme is one identity; video id = the stem.
``.mp4`` files without a trailing ``_<digits>`` are skipped and counted (``unrecognised_name``).
"""

from __future__ import annotations

import os
import re

from data_pipelines.common.builder import FaceVideoBuilder
from data_pipelines.common.preprocess import Skip, VideoItem
from data_pipelines.common.video_files import find_videos

LAYOUT = __doc__
_NAME = re.compile(r"^(?P<speaker>.+?)_(?P<index>\d+)$")


def parse_hdtf_name(stem: str) -> tuple[str, str] | None:
    """``WDA_BarackObama_000`` -> (speaker ``WDA_BarackObama``, index ``000``), else None."""
    m = _NAME.match(stem)
    return None if m is None else (m.group("speaker"), m.group("index"))


class Hdtf(FaceVideoBuilder):
    """HDTF talking-face clips (speaker = file stem without the trailing index)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

    def _list_videos(self, manual_dir: str):
        items, skips = [], []
        for rel in find_videos(manual_dir, [".mp4"]):
            stem = os.path.splitext(rel.rsplit("/", 1)[-1])[0]
            path = os.path.join(manual_dir, rel)
            parsed = parse_hdtf_name(stem)
            if parsed is None:
                skips.append(Skip("unrecognised_name", path, "expected <prefix>_<Name>_<nnn>.mp4"))
            else:
                items.append(VideoItem(path, speaker_id=parsed[0], video_id=stem))
        return items, skips
