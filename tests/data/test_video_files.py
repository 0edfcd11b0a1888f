"""data_pipelines/common/video_files: the raw-video builders' one folder walker."""

from __future__ import annotations

import os

import pytest

from data_pipelines.common.video_files import find_files, find_videos


def _touch(root, *rels):
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_finds_videos_at_every_depth_sorted_relative_and_case_insensitive(tmp_path):
    _touch(tmp_path, "z.mp4", "b/2019/deep.MOV", "b/a.mp4", "a/notes.txt", "a/c.mp4", "a/audio.m4a",
           "a.mp4")
    assert find_videos(str(tmp_path), [".mp4", ".mov"]) == [
        "a.mp4", "a/c.mp4", "b/2019/deep.MOV", "b/a.mp4", "z.mp4"]
    assert find_videos(str(tmp_path), [".MP4"]) == ["a.mp4", "a/c.mp4", "b/a.mp4", "z.mp4"]


def test_does_not_depend_on_creation_order(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    rels = [f"s{i % 3}/v{i}.mp4" for i in range(12)]
    _touch(first, *rels)
    _touch(second, *reversed(rels))
    assert find_videos(str(first), [".mp4"]) == find_videos(str(second), [".mp4"]) == sorted(rels)


def test_finds_files_by_name(tmp_path):
    _touch(tmp_path, "x/celebvhq_info.json", "y/z/celebvhq_info.json", "info.json")
    assert find_files(str(tmp_path), names=["celebvhq_info.json"]) == [
        "x/celebvhq_info.json", "y/z/celebvhq_info.json"]


def test_does_not_follow_folder_links(tmp_path):
    _touch(tmp_path, "real/v.mp4")
    os.symlink(tmp_path / "real", tmp_path / "link")
    os.symlink(tmp_path, tmp_path / "real" / "loop")
    assert find_videos(str(tmp_path), [".mp4"]) == ["real/v.mp4"]


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        find_videos(str(tmp_path / "missing"), [".mp4"])
    with pytest.raises(ValueError, match=r"must start with '\.'"):
        find_videos(str(tmp_path), ["mp4"])
