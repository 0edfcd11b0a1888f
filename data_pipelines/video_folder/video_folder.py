"""``video_folder``: any folder of videos -> face clip records (``FACEMESH_FORMAT``).

manual_dir layout (every file with a video suffix of ``media_io.VIDEO_SUFFIXES``, searched
recursively; other files are ignored):

    manual_dir/
      talk.mp4                  speaker "talk"      (a file directly in manual_dir: its stem)
      alice/                    speaker "alice"     (a file below a sub-folder: the FIRST-level
        a.mp4                                        sub-folder name, however deep the file)
        2019/b.mov
      bob/c.mp4                 speaker "bob"

video id = the file's path relative to manual_dir without its suffix (``alice/2019/b``).
Splits are identity-disjoint by speaker (``common/splits.py``).
"""

from __future__ import annotations

import os

from data_pipelines.common.builder import FaceVideoBuilder
from data_pipelines.common.preprocess import Skip, VideoItem
from data_pipelines.common.video_files import find_videos
from mimaface_jax.face.media_io import VIDEO_SUFFIXES

LAYOUT = __doc__


def folder_item(root: str, rel: str) -> VideoItem:
    """``rel``: a '/'-separated path relative to ``root`` (as :func:`find_videos` gives)."""
    parts = rel.split("/")
    stem = os.path.splitext(rel)[0]
    speaker = parts[0] if len(parts) > 1 else os.path.splitext(parts[0])[0]
    return VideoItem(path=os.path.join(root, *parts), speaker_id=speaker, video_id=stem)


class VideoFolder(FaceVideoBuilder):
    """Face clips from any folder of videos (speaker = first sub-folder or file stem)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

    def _list_videos(self, manual_dir: str) -> tuple[list[VideoItem], list[Skip]]:
        return [folder_item(manual_dir, rel) for rel in find_videos(manual_dir, VIDEO_SUFFIXES)], []
