"""TFDS builder ``hdtf`` (manual download)."""

from data_pipelines.hdtf.hdtf import Hdtf

__all__ = ["Hdtf"]
