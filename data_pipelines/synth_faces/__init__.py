"""SynthFaces: the project's procedural talking-face dataset (see README.md in this folder).

The generator lives in ``mimaface_jax.data.synth_faces``; this package will hold its TFDS
builder. Re-exported here so data-pipeline code has one import path.
"""

from mimaface_jax.data.synth_faces import (SPLITS, SynthFaces, SynthFacesConfig,
                                           cross_reenactment, motion_mask, synth_layout)

__all__ = ["SPLITS", "SynthFaces", "SynthFacesConfig", "cross_reenactment", "motion_mask",
           "synth_layout"]
