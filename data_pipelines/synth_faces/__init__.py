"""SynthFaces: the project's procedural talking-face dataset (see README.md in this folder).

The generator lives in ``mimaface_jax.data.synth_faces``; its TFDS builder is ``builder.py``.
Re-exported here so data-pipeline code has one import path.
"""

from mimaface_jax.data.synth_faces import (SPLITS, SynthFaces, SynthFacesConfig,
                                           cross_reenactment, motion_mask, synth_layout)
from data_pipelines.synth_faces.builder import SynthFacesBuilder, SynthFacesBuilderConfig

__all__ = ["SPLITS", "SynthFaces", "SynthFacesConfig", "cross_reenactment", "motion_mask",
           "synth_layout", "SynthFacesBuilder", "SynthFacesBuilderConfig"]
