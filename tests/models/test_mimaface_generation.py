"""MIMAFace generation: the ICA temporal mask of a clip holds for every clip length.

The last clip of a video may have fewer than F current frames; with k context frames its
sequence k + F' can be shorter than, equal to or longer than F. In ``isolated`` mode the
context slots must never see the current frames (neither through temporal attention nor
through the motion modules' GroupNorm statistics), whatever the length.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mimaface_jax.models import mimaface as mf
from tests.models.test_mimaface_loss import FRAMES, K_MAX, SIZE, VIDEO

B = 2


@pytest.fixture(scope="module")
def model_with_live_motion_modules():
    model = mf.MIMAFace(VIDEO, rngs=nnx.Rngs(3))
    key = jax.random.key(11)
    live = 0
    for block in list(model.unet.down_blocks) + list(model.unet.up_blocks):
        for mm in block.motion_modules:
            key, sub = jax.random.split(key)
            mm.proj_out.kernel[...] = 0.2 * jax.random.normal(sub, mm.proj_out.kernel.shape)
            live += 1
    assert live > 0
    graphdef, state = nnx.split(model)

    @jax.jit
    def context_slot_outputs(state, batch, context_frames, noisy_current, k_arr):
        net = nnx.merge(graphdef, state)
        k = k_arr.shape[0]
        cond = mf.generation_condition(net, batch, context_frames=context_frames, k=k)
        layout = cond["layout"]
        noisy = jnp.concatenate([jnp.zeros_like(context_frames[:, -k:]), noisy_current], axis=1)
        t = jnp.full((noisy.shape[0],), 500, jnp.int32)
        out = net.predict(noisy, t, cond["cond_latents"], cond["context_latents"], layout, cond["context"])
        return out[:, :k], out[:, k:]

    return state, context_slot_outputs


def _batch(seed, f, k):
    rng = np.random.default_rng(seed)
    c, d = VIDEO.latent_channels, VIDEO.mia.motion_layout.size
    batch = {
        "cond_latents": rng.normal(size=(B, f, SIZE, SIZE, c)),
        "motion": rng.normal(size=(B, f, d)),
        "identity": rng.normal(size=(B, VIDEO.mia.identity_dim)),
        "source_pixels": rng.normal(size=(B, VIDEO.clip.image_size, VIDEO.clip.image_size, 3)),
        "context_cond_latents": rng.normal(size=(B, k, SIZE, SIZE, c)),
        "context_motion": rng.normal(size=(B, k, d)),
    }
    batch = {key: v.astype(np.float32) for key, v in batch.items()}
    return batch, rng.normal(size=(B, k, SIZE, SIZE, c)).astype(np.float32)


@pytest.mark.parametrize("k,f", [(1, 1), (1, FRAMES - 1), (K_MAX, FRAMES)],
                         ids=["k+F'<F", "k+F'=F", "k+F'>F"])
def test_isolated_context_slots_ignore_current_frames_for_any_clip_length(model_with_live_motion_modules, k, f):
    assert VIDEO.ica.mode == "isolated"
    state, run = model_with_live_motion_modules
    batch, context_frames = _batch(k * 10 + f, f, k)
    rng = np.random.default_rng(99)
    noisy = rng.normal(size=(B, f, SIZE, SIZE, VIDEO.latent_channels)).astype(np.float32)
    ctx_a, cur_a = run(state, batch, context_frames, noisy, jnp.zeros((k,)))
    # only the current frames change: their noisy latents, renders and motion
    bumped = dict(batch, cond_latents=batch["cond_latents"] + 1.0, motion=batch["motion"] + 0.5)
    ctx_b, cur_b = run(state, bumped, context_frames, noisy + 1.0, jnp.zeros((k,)))
    cur_change = float(np.abs(np.asarray(cur_b - cur_a)).max())
    ctx_change = float(np.abs(np.asarray(ctx_b - ctx_a)).max())
    print(f"k={k} F'={f}: current outputs change {cur_change:.3g}, context outputs {ctx_change:.3g}")
    assert cur_change > 1e-3  # the perturbation is real
    assert ctx_change <= 1e-5, ctx_change
