"""TFDS builder ``voxceleb2`` (manual download)."""

from data_pipelines.voxceleb2.voxceleb2 import Voxceleb2

__all__ = ["Voxceleb2"]
