"""TFDS builder ``celebv_hq`` (manual download)."""

from data_pipelines.celebv_hq.celebv_hq import CelebvHq

__all__ = ["CelebvHq"]
