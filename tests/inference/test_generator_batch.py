"""B videos generated in lockstep (``ClipGenerator.batch_clips``): the same frames as one by one,
inputs split over the mesh's batch axes, one compile per shape; ``context=False``."""

import numpy as np
import pytest

from mimaface_jax.inference.lockstep import VideoJob

# the tiny model fixture and its compiled B = 1 clip function are shared with test_generator.py
pytestmark = pytest.mark.xdist_group("inference_tiny_video")

SETTINGS = dict(num_steps=1, guidance_scale=2.0, clip_denoised=0.0)  # test_generator.py's


def _job(tiny, t, seed):
    rng = np.random.default_rng(100 + seed)
    r = tiny.config.data.resolution
    d = tiny.model.config.mia.motion_layout.size
    condition = rng.integers(0, 256, (t, r, r, 3), dtype=np.uint8)
    return VideoJob(source=rng.integers(0, 256, (r, r, 3), dtype=np.uint8),
                    identity=rng.standard_normal(tiny.config.model.mia.identity_dim).astype(np.float32),
                    motion=rng.standard_normal((t, d)).astype(np.float32),
                    render=lambda a, b: condition[a:b],
                    source_motion=rng.standard_normal(d).astype(np.float32),
                    source_condition=rng.integers(0, 256, (r, r, 3), dtype=np.uint8), seed=seed)


def _alone(gen, job, **kw):
    return gen.video(job.source, job.identity, job.motion, job.render, source_motion=job.source_motion,
                     source_condition=job.source_condition, seed=job.seed, **kw)


def test_a_batch_of_videos_is_each_video_alone_and_compiles_once(tiny_video):
    gen = tiny_video.generator(**SETTINGS)
    b = gen.batch_split()
    assert b == 8  # tests/conftest.py: 8 fake CPU devices, the tiny config's fsdp = -1
    t = gen.num_frames + 2  # a full clip (the source as context) and a partial one (2 context frames)
    jobs = [_job(tiny_video, t, seed) for seed in range(b)]
    batched = gen.videos(jobs)
    assert batched.shape == (b, t, 32, 32, 3)
    for i, job in enumerate(jobs):
        alone = _alone(gen, job)
        diff = np.abs(batched[i].astype(int) - alone)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"video {i}: {diff.max()}, {(diff > 0).mean()}"
    # the videos differ from each other (their own seeds and inputs)
    assert np.abs(batched[0].astype(int) - batched[1]).max() > 10

    # inputs split over the batch axes (data parallel); a batch of one is replicated
    d = gen.motion_size
    placed = gen.place({"motion": np.zeros((b, 4, d), np.float32), "start": np.int32(0)})
    assert placed["motion"].sharding.spec[0] is not None and not placed["motion"].sharding.is_fully_replicated
    assert placed["start"].sharding.is_fully_replicated
    assert gen.place({"motion": np.zeros((1, 4, d), np.float32)})["motion"].sharding.is_fully_replicated

    # a second batch of the same shape reuses the compiled function
    compiled = gen.compile_count()
    again = list(gen.batch_clips([_job(tiny_video, t, seed) for seed in range(b, 2 * b)]))
    assert gen.compile_count() == compiled and not any(c.compiled for c in again)
    assert [c.frames.shape[:2] for c in again] == [(b, gen.num_frames), (b, 2)]


def test_videos_of_a_batch_must_have_one_length(tiny_video):
    gen = tiny_video.generator(**SETTINGS)
    with pytest.raises(ValueError, match=r"same length, got lengths \[4, 5\]"):
        gen.videos([_job(tiny_video, 4, 0), _job(tiny_video, 5, 1)])


def test_without_context_only_the_first_clip_is_the_generator_s(tiny_video):
    """context=False: the first clip equals the generator's own first clip (no context either way,
    same noise); the later clips differ from the generator's, which see the previous frames."""
    gen = tiny_video.generator(source_as_context=False)
    f, t = gen.num_frames, 10
    job = _job(tiny_video, t, 3)
    with_context = _alone(gen, job)
    without = _alone(gen, job, context=False)
    assert without.shape == with_context.shape == (t, 32, 32, 3)
    np.testing.assert_array_equal(without[:f], with_context[:f])
    assert not np.array_equal(without[f:], with_context[f:])
    # in a batch too
    np.testing.assert_array_equal(gen.videos([job], context=False)[0], without)
