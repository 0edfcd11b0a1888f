"""ICA: frame layout, masks, masked clip GroupNorm, and the U-Net-level guarantees.

U-Net tests use a tiny video U-Net whose motion modules' zero-initialised ``proj_out`` are
replaced by random weights, so that the temporal attention really mixes frames.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mimaface_jax.models import ica
from mimaface_jax.models.frame_mask import frame_masked_group_norm
from mimaface_jax.models.layers import GroupNorm
from mimaface_jax.models.unet import UNet3D
from mimaface_jax.models.unet_config import CROSS_ATTN_DOWN, CROSS_ATTN_UP, UNetConfig

K_MAX, FRAMES, B, SIZE, CTX_LEN, CTX_DIM = 2, 3, 2, 8, 3, 16

TINY_UNET = UNetConfig(
    block_out_channels=(16,),  # one resolution level keeps compile times short
    down_block_types=(CROSS_ATTN_DOWN,),
    up_block_types=(CROSS_ATTN_UP,),
    layers_per_block=1,
    num_attention_heads=2,
    cross_attention_dim=CTX_DIM,
    norm_num_groups=4,
    motion_num_attention_heads=2,
    motion_norm_num_groups=4,
    motion_max_seq_length=8,
)


# ---------------------------------------------------------------------------- layout and masks


@pytest.mark.parametrize("k", [0, 1, 2])
def test_layout_rolls_used_context_before_current_and_unused_to_the_end(k):
    s = K_MAX + FRAMES
    layout = ica.frame_layout(jnp.array([k]), K_MAX, FRAMES, "isolated")
    data = jnp.arange(s)[None]  # data slot ids: 0..K_MAX-1 context, then current frames
    model = np.asarray(ica.to_model_order(data, layout))[0]
    expected = list(range(K_MAX - k, K_MAX)) + list(range(K_MAX, s)) + list(range(0, K_MAX - k))
    assert model.tolist() == expected
    assert np.asarray(layout.is_context)[0].tolist() == [i < k for i in range(s)]
    assert np.asarray(layout.is_current)[0].tolist() == [k <= i < k + FRAMES for i in range(s)]
    x = jax.random.normal(jax.random.key(k), (1, s, 2, 3))
    back = ica.from_model_order(ica.to_model_order(x, layout), layout)
    np.testing.assert_array_equal(np.asarray(back), np.asarray(x))


def test_temporal_masks_isolated_and_full():
    layout_iso = ica.frame_layout(jnp.array([1, 0]), K_MAX, FRAMES, "isolated")
    layout_full = ica.frame_layout(jnp.array([1, 0]), K_MAX, FRAMES, "full")
    iso, full = np.asarray(layout_iso.temporal_mask), np.asarray(layout_full.temporal_mask)
    # sample 0: k=1 -> slot 0 context, slots 1..3 current, slot 4 unused
    ctx, cur, unused = [0], [1, 2, 3], [4]
    assert iso[0][np.ix_(ctx, ctx)].all() and not iso[0][np.ix_(ctx, cur)].any()
    assert iso[0][np.ix_(cur, ctx + cur)].all()
    assert full[0][np.ix_(ctx + cur, ctx + cur)].all()
    for m in (iso, full):
        assert m[0][:, unused[0]].tolist() == [False] * 4 + [True]  # nobody attends to it
        assert m[0][unused[0]].tolist() == [False] * 4 + [True]  # it attends to itself only
    # sample 1: k=0 -> current frames attend to each other only
    assert iso[1][:3, :3].all() and not iso[1][:3, 3:].any()


def test_sample_num_context_distribution():
    cfg = ica.ICAConfig(k_max=4, p_no_context=0.5)
    k = np.asarray(ica.sample_num_context(jax.random.key(0), 4000, cfg))
    assert k.min() == 0 and k.max() == 4
    assert abs((k == 0).mean() - 0.5) < 0.04
    counts = np.bincount(k[k > 0], minlength=5)[1:]
    assert np.all(np.abs(counts / counts.sum() - 0.25) < 0.04)


def test_unet_input_channels():
    s = K_MAX + FRAMES
    layout = ica.frame_layout(jnp.array([1]), K_MAX, FRAMES, "isolated")
    keys = jax.random.split(jax.random.key(1), 3)
    noisy, cond, clean = (jax.random.normal(k, (1, s, 4, 4, 4)) for k in keys)
    x = np.asarray(ica.unet_input(noisy, cond, ica.context_latents(clean, layout), layout))
    x = x.reshape(1, s, 4, 4, 13)
    ctx, cur, unused = 0, slice(1, 4), 4
    np.testing.assert_array_equal(x[0, ctx, ..., :4], 0)  # no noisy latents at context slots
    np.testing.assert_array_equal(x[0, ctx, ..., 8:12], np.asarray(clean)[0, ctx])
    np.testing.assert_array_equal(x[0, ctx, ..., 12], 1)
    np.testing.assert_array_equal(x[0, cur, ..., :4], np.asarray(noisy)[0, cur])
    np.testing.assert_array_equal(x[0, cur, ..., 4:8], np.asarray(cond)[0, cur])
    np.testing.assert_array_equal(x[0, cur, ..., 8:], 0)
    np.testing.assert_array_equal(x[0, unused], 0)


def test_context_latent_noise_std():
    layout = ica.frame_layout(jnp.array([2]), 2, 1, "isolated")
    clean = jnp.zeros((1, 3, 32, 32, 4))
    noisy = np.asarray(ica.context_latents(clean, layout, 0.1, jax.random.key(0)))
    assert abs(noisy[0, :2].std() - 0.1) < 0.005
    np.testing.assert_array_equal(noisy[0, 2], 0)


# ------------------------------------------------------------------------ masked clip GroupNorm


def _group_norm_np(x, groups, eps, scale, bias):
    """Two-pass float64 GroupNorm over every axis but the first and the channel groups."""
    shape = x.shape
    xg = x.astype(np.float64).reshape(shape[0], -1, groups, shape[-1] // groups)
    mean = xg.mean(axis=(1, 3), keepdims=True)
    var = ((xg - mean) ** 2).mean(axis=(1, 3), keepdims=True)
    return ((xg - mean) / np.sqrt(var + eps)).reshape(shape) * scale + bias


def test_frame_masked_group_norm_matches_group_norm_over_selected_frames():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (2, 5, 4, 4, 8))
    scale = jax.random.normal(jax.random.key(1), (8,))
    bias = jax.random.normal(jax.random.key(2), (8,))
    xn, sn, bn = np.asarray(x), np.asarray(scale), np.asarray(bias)
    clip_ref = _group_norm_np(xn, 4, 1e-6, sn, bn)  # statistics over the whole clip
    norm = GroupNorm(8, 4, eps=1e-6)  # the U-Net's clip GroupNorm agrees with the reference
    norm.scale[...], norm.bias[...] = scale, bias
    np.testing.assert_allclose(np.asarray(norm(x)), clip_ref, atol=2e-6)
    for mask in (jnp.ones((5, 5), bool), None):
        out = frame_masked_group_norm(x, mask, 4, 1e-6, scale, bias)
        np.testing.assert_allclose(np.asarray(out), clip_ref, atol=2e-6)
    # per-sample masks: frame i normalised with the statistics of its attended frames only
    layout = ica.frame_layout(jnp.array([1, 2]), 2, 3, "isolated")
    y = np.asarray(frame_masked_group_norm(x, layout.temporal_mask, 4, 1e-6, scale, bias))
    mask = np.asarray(layout.temporal_mask)
    for b in range(2):
        for i in range(5):
            sel = np.flatnonzero(mask[b, i])
            ref = _group_norm_np(xn[b : b + 1, sel], 4, 1e-6, sn, bn)[0, list(sel).index(i)]
            np.testing.assert_allclose(y[b, i], ref, atol=2e-6)


# --------------------------------------------------------------------------- U-Net level tests


@pytest.fixture(scope="module")
def unet():
    model = UNet3D(TINY_UNET, rngs=nnx.Rngs(0))
    # Random (non-zero) motion-module output projections so that frames interact.
    key, live = jax.random.key(7), 0
    for block in list(model.down_blocks) + list(model.up_blocks):
        for mm in block.motion_modules:
            key, sub = jax.random.split(key)
            mm.proj_out.kernel[...] = 0.2 * jax.random.normal(sub, mm.proj_out.kernel.shape)
            live += 1
    assert live == 3  # one per layer: 1 down-block layer + 2 up-block layers
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, x, t, context, mask):
        frames = x.shape[0] // t.shape[0]
        return nnx.merge(graphdef, state)(x, t, context, num_frames=frames, temporal_mask=mask)

    @jax.jit
    def run_plain(state, x, t, context):
        frames = x.shape[0] // t.shape[0]
        return nnx.merge(graphdef, state)(x, t, context, num_frames=frames)

    return state, run, run_plain


def _inputs(seed, s):
    keys = jax.random.split(jax.random.key(seed), 5)
    noisy, cond, clean = (jax.random.normal(k, (B, s, SIZE, SIZE, 4)) for k in keys[:3])
    context = jax.random.normal(keys[3], (B, s, CTX_LEN, CTX_DIM))
    t = jnp.array([500, 20], jnp.int32)
    return noisy, cond, clean, context, t


def _run_ica(unet, num_context, mode, noisy, cond, clean, context, t):
    """Runs the U-Net in model order over data-order inputs; returns (B, S, h, w, 4) model order."""
    state, run, _ = unet
    layout = ica.frame_layout(jnp.asarray(num_context), K_MAX, FRAMES, mode)
    m = lambda a: ica.to_model_order(a, layout)  # noqa: E731
    x = ica.unet_input(m(noisy), m(cond), ica.context_latents(m(clean), layout), layout)
    ctx = m(context).reshape(B * (K_MAX + FRAMES), CTX_LEN, CTX_DIM)
    out = run(state, x, t, ctx, layout.temporal_mask)
    return out.reshape(B, K_MAX + FRAMES, SIZE, SIZE, 4), layout


@pytest.mark.parametrize("mode", ["isolated", "full"])
def test_k0_context_is_inert(unet, mode):
    s = K_MAX + FRAMES
    noisy, cond, clean, context, t = _inputs(0, s)
    out, layout = _run_ica(unet, [0, 0], mode, noisy, cond, clean, context, t)
    current = np.asarray(out[:, :FRAMES])  # k=0: current frames are the first F model slots
    assert np.asarray(layout.is_current)[:, :FRAMES].all()
    # reference: F frames only, zero context channels, mask 0, plain (unmasked) U-Net
    state, _, run_plain = unet
    cur = slice(K_MAX, s)
    x = jnp.concatenate([noisy[:, cur], cond[:, cur], jnp.zeros((B, FRAMES, SIZE, SIZE, 5))], axis=-1)
    ref = run_plain(state, x.reshape(B * FRAMES, SIZE, SIZE, 13), t,
                    context[:, cur].reshape(B * FRAMES, CTX_LEN, CTX_DIM))
    ref = np.asarray(ref).reshape(B, FRAMES, SIZE, SIZE, 4)
    assert np.abs(ref).max() > 0.1
    print(f"k=0 ({mode}): max |ICA run - F-frame run| = {np.abs(current - ref).max():.3g}")
    np.testing.assert_allclose(current, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["isolated", "full"])
def test_context_isolation_and_cross_clip_influence(unet, mode):
    s = K_MAX + FRAMES
    noisy, cond, clean, context, t = _inputs(1, s)
    k = [K_MAX, 1]
    base, layout = _run_ica(unet, k, mode, noisy, cond, clean, context, t)
    is_ctx, is_cur = np.asarray(layout.is_context), np.asarray(layout.is_current)

    # perturb the current frames' noisy latents (data slots K_MAX..)
    bumped = noisy.at[:, K_MAX:].add(jax.random.normal(jax.random.key(9), noisy[:, K_MAX:].shape))
    out, _ = _run_ica(unet, k, mode, bumped, cond, clean, context, t)
    ctx_change = np.abs(np.asarray(out - base))[is_ctx].max()
    print(f"{mode}: context outputs change by {ctx_change:.3g} when current frames change")
    if mode == "isolated":
        assert ctx_change <= 1e-6, ctx_change
    else:
        assert ctx_change > 1e-3, ctx_change

    # perturb the clean context latents: current frames must change in both modes
    moved = clean.at[:, :K_MAX].add(1.0)
    out, _ = _run_ica(unet, k, mode, noisy, cond, moved, context, t)
    cur_change = np.abs(np.asarray(out - base))[is_cur].max()
    print(f"{mode}: current outputs change by {cur_change:.3g} when context latents change")
    assert cur_change > 1e-3, cur_change
