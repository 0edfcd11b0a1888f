"""Data test fixtures (defined in tests/face_video_fixtures.py, shared with tests/training)."""

from face_video_fixtures import (  # noqa: F401  (pytest finds fixtures by name here)
    astronaut,
    face_videos,
    kit,
    synth_dataset,
    video_folder_dataset,
    video_folder_layout,
)
