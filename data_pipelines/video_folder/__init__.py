"""TFDS builder ``video_folder``: face clips from any folder of videos."""

from data_pipelines.video_folder.video_folder import VideoFolder

__all__ = ["VideoFolder"]
