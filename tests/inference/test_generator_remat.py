"""Generation from a model configured with gradient checkpointing (the SD-1.5 configs use
``remat_policy="full"``): remat only matters for a backward pass, and ``nnx.remat`` inside the
sampler's scan failed to trace. The generator samples such a model as its remat-free twin (the
same parameters): the frames equal those of the same model built without remat, and the
trainer's sample steps and ``animate`` of SD-1.5 runs work."""

import pathlib

import numpy as np

from mimaface_jax.config_files import load_config

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_a_remat_model_generates_the_frames_of_its_remat_free_twin(tiny_video):
    config = load_config(REPO / "configs" / "tiny.py", "video_min")
    config.model.unet.remat_policy = "full"
    remat = type(tiny_video)(config)  # the conftest's TinyModel
    remat.params = tiny_video.params  # the same weights
    f = tiny_video.config.model.num_frames
    rng = np.random.default_rng(5)
    r, d = config.data.resolution, tiny_video.model.config.mia.motion_layout.size
    source = rng.integers(0, 256, (r, r, 3), dtype=np.uint8)
    identity = rng.standard_normal(config.model.mia.identity_dim).astype(np.float32)
    motion = rng.standard_normal((f + 1, d)).astype(np.float32)
    condition = rng.integers(0, 256, (f + 1, r, r, 3), dtype=np.uint8)
    kw = dict(source_motion=motion[0], source_condition=condition[0])
    want = tiny_video.generator(num_steps=2, guidance_scale=2.5).video(
        source, identity, motion, lambda a, b: condition[a:b], **kw)
    got = remat.generator(num_steps=2, guidance_scale=2.5).video(source, identity, motion,
                                                               lambda a, b: condition[a:b], **kw)
    assert got.shape == (f + 1, r, r, 3)
    np.testing.assert_array_equal(got, want)
