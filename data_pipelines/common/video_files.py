"""The one folder walker of the raw-video builders (video_folder, voxceleb2, hdtf, celebv_hq)."""

from __future__ import annotations

import os
from typing import Iterable


def find_files(root: str, names: Iterable[str] = (), extensions: Iterable[str] = ()) -> list[str]:
    """Paths relative to ``root`` ('/'-separated), sorted, of the files anywhere below ``root``
    whose file name is one of ``names`` or whose suffix (case-insensitive) is one of
    ``extensions`` (``".mp4"``). Deterministic: independent of the file system's listing order.
    Symlinked folders are not followed (a link cycle cannot loop)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"not a folder: {root}")
    names = frozenset(names)
    suffixes = frozenset(e.lower() for e in extensions)
    bad = sorted(e for e in suffixes if not e.startswith("."))
    if bad:
        raise ValueError(f"extensions must start with '.', got {bad}")
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if name in names or os.path.splitext(name)[1].lower() in suffixes:
                found.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return sorted(found)


def find_videos(root: str, extensions: Iterable[str]) -> list[str]:
    """:func:`find_files` by suffix: the video files below ``root`` (relative, '/', sorted)."""
    return find_files(root, extensions=extensions)
