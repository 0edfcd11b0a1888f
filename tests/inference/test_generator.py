"""The clip-by-clip generator: any length (the partial last clip too), one compile per shape,
and a short last clip computed exactly as a plain (k + F')-frame clip of the model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimaface_jax.diffusion.samplers import ddim_sample
from mimaface_jax.models import mimaface
from mimaface_jax.parallel import use_rules
from mimaface_jax.training.train_step import clip_input, encode_frames

# one xdist worker builds the shared model / bundle fixture and compiles its generator once
pytestmark = pytest.mark.xdist_group("inference_tiny_video")


def _inputs(tiny, t, seed=0):
    rng = np.random.default_rng(seed)
    r = tiny.config.data.resolution
    d = tiny.model.config.mia.motion_layout.size
    return {
        "source": rng.integers(0, 256, (r, r, 3), dtype=np.uint8),
        "identity": rng.standard_normal(tiny.config.model.mia.identity_dim).astype(np.float32),
        "motion": rng.standard_normal((t, d)).astype(np.float32),
        "condition": rng.integers(0, 256, (t, r, r, 3), dtype=np.uint8),
        "source_motion": rng.standard_normal(d).astype(np.float32),
        "source_condition": rng.integers(0, 256, (r, r, 3), dtype=np.uint8),
    }


def _run(gen, x, **kw):
    return gen.clips(x["source"], x["identity"], x["motion"], lambda a, b: x["condition"][a:b],
                     source_motion=x["source_motion"], source_condition=x["source_condition"], **kw)


# the settings of the parity test below too: one compile serves both
SETTINGS = dict(num_steps=1, guidance_scale=2.0, clip_denoised=0.0)


def test_every_frame_of_a_three_and_a_half_clip_video(tiny_video):
    gen = tiny_video.generator(**SETTINGS)
    f = gen.num_frames
    t = 3 * f + f // 2
    x = _inputs(tiny_video, t)
    clips = list(_run(gen, x))
    assert [c.start for c in clips] == [0, f, 2 * f, 3 * f]
    assert [len(c.frames) for c in clips] == [f, f, f, f // 2]
    video = np.concatenate([c.frames for c in clips])
    assert video.shape == (t, 32, 32, 3) and video.dtype == np.uint8
    assert video.std() > 0
    # the same inputs and seed give the same frames; another seed other frames
    np.testing.assert_array_equal(gen.video(x["source"], x["identity"], x["motion"], lambda a, b: x["condition"][a:b],
                                            source_motion=x["source_motion"], source_condition=x["source_condition"]),
                                  video)
    other = np.concatenate([c.frames for c in _run(gen, x, seed=7)])
    assert np.abs(other.astype(int) - video).max() > 0


def test_a_ten_clip_video_compiles_the_clip_function_once(tiny_video):
    gen = tiny_video.generator(num_steps=1, guidance_scale=1.5)  # settings no other test compiles
    f = gen.num_frames
    x = _inputs(tiny_video, 10 * f + 1, seed=1)  # 10 full clips + a partial one
    compiles = []

    def listener(name, *_args, **_kw):
        if name == "/jax/core/compile/backend_compile_duration":
            compiles.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        clips = list(_run(gen, x))
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert len(clips) == 11 and sum(len(c.frames) for c in clips) == 10 * f + 1
    assert len(compiles) <= 2, f"{len(compiles)} XLA compilations for an 11-clip video"
    assert gen.compile_count() == 1  # full and partial clips share one shape
    assert [c.compiled for c in clips] == [True] + [False] * 10
    # a new generator of the same model and settings (the next job) reuses the compiled function
    again = tiny_video.generator(num_steps=1, guidance_scale=1.5, seed=3)
    assert not any(c.compiled for c in _run(again, x)) and again.compile_count() == 1


def test_a_short_last_clip_equals_a_plain_clip_of_its_length(tiny_video):
    """k = K context frames + n = 1 current frame through the generator's fixed K + F slots
    (unused slots masked) == the model's own ``generation_condition`` on a K + 1 frame clip."""
    tiny = tiny_video
    gen = tiny.generator(**SETTINGS)
    mc, big_k, f = tiny.model.config, gen.num_context, gen.num_frames
    r, hw, c = gen.resolution, gen.latent_hw, gen.latent_channels
    rng = np.random.default_rng(3)
    x = _inputs(tiny, f, seed=3)
    n = 1
    ctx_latents = rng.standard_normal((1, big_k, hw, hw, c)).astype(np.float32)
    ctx_cond = rng.integers(0, 256, (1, big_k, r, r, 3), dtype=np.uint8)
    ctx_motion = rng.standard_normal((1, big_k, x["motion"].shape[1])).astype(np.float32)
    cond = np.zeros((1, f, r, r, 3), np.uint8)
    cond[0, :n] = x["condition"][:n]
    motion = np.repeat(x["motion"][None, :1], f, axis=1)
    inputs = {"condition": cond, "motion": motion, "source": x["source"][None], "identity": x["identity"][None],
              "num_current": np.asarray([n], np.int32), "seed": np.asarray([5], np.int32),
              "start": np.int32(40),
              "context_condition": ctx_cond, "context_motion": ctx_motion, "context_latents": ctx_latents,
              "num_context": np.asarray([big_k], np.int32), "context_is_source": np.asarray([False])}
    latents, pixels = gen.run_clip(inputs)

    key = jax.random.fold_in(jax.random.PRNGKey(5), 40)
    noise = jax.random.normal(key, (1, big_k + f, hw, hw, c), jnp.float32)[:, :big_k + n]

    @jax.jit
    def reference(params, ae_params):
        net = tiny.model.spec.merge(params)
        ae = tiny.model.ae_spec.merge(ae_params)
        batch = {"cond_latents": encode_frames(ae, jnp.asarray(cond[:, :n]), None),
                 "motion": jnp.asarray(motion[:, :n]), "identity": jnp.asarray(x["identity"][None]),
                 "source_pixels": clip_input(jnp.asarray(x["source"][None]), mc.clip.image_size),
                 "context_cond_latents": encode_frames(ae, jnp.asarray(ctx_cond), None),
                 "context_motion": jnp.asarray(ctx_motion)}
        conditioning = mimaface.generation_condition(net, batch, context_frames=jnp.asarray(ctx_latents), k=big_k)
        out = ddim_sample(mimaface.denoise_fn(net, conditioning, 2.0), noise, mc.schedule, 1,
                          timestep_spacing=tiny.config.sample.timestep_spacing)
        return out[:, big_k:]

    with use_rules(tiny.mesh, tiny.rules):
        want = np.asarray(reference(tiny.params, tiny.ae_params))
    np.testing.assert_allclose(latents[:, :n], want, atol=2e-5, rtol=1e-4)
    assert pixels.shape == (1, f, r, r, 3)
