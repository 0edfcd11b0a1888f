"""MIMAFace: the training loss (masking, gradients, dropout, sharding, overfitting) and the
classifier-free-guidance denoiser."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mimaface_jax.face.motion_layout import facemesh_layout
from mimaface_jax.models import mimaface as mf
from mimaface_jax.models.clip_vision import CLIPVisionConfig
from mimaface_jax.models.ica import ICAConfig
from mimaface_jax.models.mia import MIAConfig
from mimaface_jax.models.unet import UNet3D
from mimaface_jax.models.unet_config import CROSS_ATTN_DOWN, CROSS_ATTN_UP, UNetConfig
from mimaface_jax.parallel import DEFAULT_RULES, MeshConfig, make_mesh, shard_batch, state_shardings, use_rules

DIM, SIZE, K_MAX, FRAMES, BATCH = 16, 8, 2, 3, 8
S = K_MAX + FRAMES

UNET = UNetConfig(
    block_out_channels=(16,),  # one resolution level keeps compile times short
    down_block_types=(CROSS_ATTN_DOWN,),
    up_block_types=(CROSS_ATTN_UP,),
    layers_per_block=1,
    num_attention_heads=2,
    cross_attention_dim=DIM,
    norm_num_groups=4,
    motion_num_attention_heads=2,
    motion_norm_num_groups=4,
    motion_max_seq_length=8,
)
CLIP = CLIPVisionConfig(image_size=8, patch_size=4, hidden_size=12, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16)
MIA = MIAConfig(clip_width=12, num_clip_tokens=CLIP.num_positions, context_dim=DIM, num_heads=2,
                motion_layout=facemesh_layout(4), motion_hidden=8, identity_dim=8, identity_hidden=8,
                num_identity_tokens=2, mapper_layers=1, mapper_mlp_ratio=2)
VIDEO = mf.MIMAFaceConfig(unet=UNET, mia=MIA, clip=CLIP, ica=ICAConfig(k_max=K_MAX, generation_k=2),
                          num_frames=FRAMES, clip_trainable=True)


def _batch(seed, batch=BATCH, config=VIDEO):
    rng = np.random.default_rng(seed)
    s, c = config.frames_per_clip, config.latent_channels
    out = {
        "latents": rng.normal(size=(batch, s, SIZE, SIZE, c)),
        "cond_latents": rng.normal(size=(batch, s, SIZE, SIZE, c)),
        "motion": rng.normal(size=(batch, s, config.mia.motion_layout.size)),
        "identity": rng.normal(size=(batch, config.mia.identity_dim)),
        "noise": rng.normal(size=(batch, s, SIZE, SIZE, c)),
        "timesteps": rng.integers(0, 1000, size=(batch,)),
        "num_context": np.arange(batch) % (config.ica.k_max + 1),
    }
    if config.clip is None:
        out["source_clip_tokens"] = rng.normal(size=(batch, config.mia.num_clip_tokens, config.mia.clip_width))
    else:
        out["source_pixels"] = rng.normal(size=(batch, CLIP.image_size, CLIP.image_size, 3))
    return {k: v.astype(np.int32 if k in ("timesteps", "num_context") else np.float32) for k, v in out.items()}


@pytest.fixture(scope="module")
def video():
    """(graphdef, single-device state, sharded state, mesh, jitted value-and-grad of the loss)."""
    mesh = make_mesh(MeshConfig(data=2, fsdp=4, tensor=1))
    graphdef, state = nnx.split(mf.MIMAFace(VIDEO, rngs=nnx.Rngs(0)))
    sharded_state = jax.device_put(state, state_shardings(state, mesh, DEFAULT_RULES))

    @jax.jit
    def loss_and_grad(state, batch, rng):
        return jax.value_and_grad(lambda st: mf.loss_from_state(graphdef, st, batch, rng), has_aux=True)(state)

    return graphdef, state, sharded_state, mesh, loss_and_grad


def _norm(tree):
    return float(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)) ** 0.5)


def test_gradients_reach_every_trained_part(video):
    graphdef, state, _, _, loss_and_grad = video
    (value, metrics), grads = loss_and_grad(state, _batch(0), jax.random.key(0))
    assert np.isfinite(float(value)) and float(value) > 0
    g = nnx.merge(graphdef, grads)
    parts = {
        "motion MLP pose": g.mia.motion_tokens.mlps["pose"],
        "motion MLP expression": g.mia.motion_tokens.mlps["expression"],
        "motion MLP gaze": g.mia.motion_tokens.mlps["gaze"],
        "motion cross-attention": g.mia.motion_attn,
        "identity token MLP": g.mia.identity.token_mlp,
        "identity scale/shift": g.mia.identity.scale_shift,
        "mapper": g.mia.mapper,
        "MIA proj_in": g.mia.proj_in,
        "U-Net conv_in": g.unet.conv_in,
        "U-Net cross-attention": g.unet.down_blocks[0].attentions,
        "U-Net motion modules": g.unet.down_blocks[0].motion_modules,
        "CLIP": g.clip.layers,
    }
    norms = {name: _norm(nnx.state(part)) for name, part in parts.items()}
    print("gradient norms:", {k: f"{v:.3g}" for k, v in norms.items()})
    assert all(v > 0 for v in norms.values()), norms


def test_loss_ignores_context_positions_of_noise_and_targets(video):
    _, state, _, _, loss_and_grad = video
    batch = _batch(1)
    (base, _), _ = loss_and_grad(state, batch, jax.random.key(1))
    bumped = dict(batch, noise=batch["noise"].copy())
    bumped["noise"][:, :K_MAX] += 10.0  # every context slot (used or not) of every sample
    (same, _), _ = loss_and_grad(state, bumped, jax.random.key(1))
    assert float(same) == float(base)
    current = dict(batch, noise=batch["noise"].copy())
    current["noise"][:, K_MAX] += 1.0  # the first current frame
    (other, _), _ = loss_and_grad(state, current, jax.random.key(1))
    assert abs(float(other) - float(base)) > 1e-3


def test_condition_dropout():
    context = jax.random.normal(jax.random.key(0), (64, S, 4, DIM)) + 3.0
    dropped, keep = mf.drop_condition(context, jax.random.key(1), 1.0)
    assert np.all(np.asarray(dropped) == 0) and np.all(np.asarray(keep) == 0)
    kept, keep = mf.drop_condition(context, jax.random.key(1), 0.0)
    np.testing.assert_array_equal(np.asarray(kept), np.asarray(context))
    assert np.all(np.asarray(keep) == 1)
    half, keep = mf.drop_condition(context, jax.random.key(2), 0.5)
    half, keep = np.asarray(half), np.asarray(keep)
    zero_samples = np.all(half == 0, axis=(1, 2, 3))
    assert np.array_equal(zero_samples, keep == 0)  # whole samples, nothing partial
    np.testing.assert_array_equal(half[keep == 1], np.asarray(context)[keep == 1])
    assert 16 < zero_samples.sum() < 48


def test_sharded_loss_and_grads_match_unsharded(video):
    graphdef, state, sharded_state, mesh, loss_and_grad = video
    batch = _batch(2)
    (ref, _), ref_grads = loss_and_grad(state, batch, jax.random.key(2))
    with use_rules(mesh, DEFAULT_RULES):
        (val, _), grads = loss_and_grad(sharded_state, shard_batch(batch, mesh, DEFAULT_RULES), jax.random.key(2))
    assert len(jax.tree.leaves(grads)[0].sharding.device_set) == 8
    kernel = sharded_state["unet"]["down_blocks"][0]["resnets"][0]["conv1"]["kernel"][...]
    assert kernel.addressable_shards[0].data.size * 4 == kernel.size  # split over fsdp
    loss_diff = abs(float(val) - float(ref))
    grad_diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)))
    print(f"sharded vs unsharded: |loss diff| = {loss_diff:.3g}, max |grad diff| = {grad_diff:.3g}")
    assert loss_diff <= 1e-5 and grad_diff <= 1e-5


def test_cfg_denoise_one_batched_call_and_scales(video, monkeypatch):
    graphdef, state, _, _, _ = video
    b = 2
    batch = _batch(3, batch=b)
    gen = {
        "cond_latents": batch["cond_latents"][:, K_MAX:],
        "motion": batch["motion"][:, K_MAX:],
        "context_cond_latents": batch["cond_latents"][:, :K_MAX],
        "context_motion": batch["motion"][:, :K_MAX],
        "source_pixels": batch["source_pixels"],
        "identity": batch["identity"],
    }
    ctx_frames = batch["latents"][:, :K_MAX]
    x_t = jnp.asarray(batch["noise"])
    t = jnp.array([700, 300], jnp.int32)

    cond = jax.jit(lambda st, g, c: mf.generation_condition(nnx.merge(graphdef, st), g, context_frames=c))(
        state, gen, ctx_frames)
    assert cond["context"].shape[:2] == (b, S) and bool(cond["layout"].is_context[:, :K_MAX].all())

    # one U-Net call of batch 2B per guided step (recorded while tracing)
    calls = []
    original = UNet3D.__call__

    def recording(self, sample, *args, **kwargs):
        calls.append(sample.shape[0])
        return original(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet3D, "__call__", recording)
    jax.eval_shape(lambda st: mf.denoise_from_state(graphdef, st, x_t, t, cond, 5.0), state)
    assert calls == [2 * b * S]
    monkeypatch.setattr(UNet3D, "__call__", original)

    guided = jax.jit(lambda st, scale: mf.denoise_from_state(graphdef, st, x_t, t, cond, scale))

    @jax.jit
    def predict(st, c):
        return nnx.merge(graphdef, st).predict(x_t, t, c["cond_latents"], c["context_latents"], c["layout"],
                                               c["context"])

    conditional = np.asarray(predict(state, cond))
    unconditional = np.asarray(predict(state, dict(cond, context=jnp.zeros_like(cond["context"]))))
    np.testing.assert_allclose(np.asarray(guided(state, 1.0)), conditional, atol=1e-6)
    np.testing.assert_allclose(np.asarray(guided(state, 0.0)), unconditional, atol=1e-6)
    assert np.abs(conditional - unconditional).max() > 1e-3
    np.testing.assert_allclose(np.asarray(guided(state, 3.0)),
                               unconditional + 3.0 * (conditional - unconditional), atol=1e-5)


def test_tiny_image_stage_model_overfits_a_fixed_batch():
    unet = dataclasses.replace(UNET, use_motion_module=False)  # the image stage: F = 1, no motion modules
    config = mf.MIMAFaceConfig(unet=unet, mia=MIA, clip=None, ica=ICAConfig(k_max=0), num_frames=1,
                               cond_dropout=0.0)
    graphdef, state = nnx.split(mf.MIMAFace(config, rngs=nnx.Rngs(0)))
    batch = _batch(4, batch=2, config=config)
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(state)

    @jax.jit
    def step(state, opt_state):
        (value, _), grads = jax.value_and_grad(
            lambda st: mf.loss_from_state(graphdef, st, batch, jax.random.key(0)), has_aux=True)(state)
        updates, opt_state = optimizer.update(grads, opt_state, state)
        return optax.apply_updates(state, updates), opt_state, value

    losses = []
    for _ in range(300):  # stop as soon as the loss has fallen 10x
        state, opt_state, value = step(state, opt_state)
        losses.append(float(value))
        if losses[-1] * 10 <= losses[0]:
            break
    print(f"overfit: loss {losses[0]:.4g} -> {losses[-1]:.4g} in {len(losses)} steps")
    assert losses[-1] * 10 <= losses[0]


def test_trainable_mask_freezes_clip_unless_trainable():
    frozen = dataclasses.replace(VIDEO, clip_trainable=False)
    _, abstract = nnx.split(nnx.eval_shape(lambda: mf.MIMAFace(frozen, rngs=nnx.Rngs(0))))
    mask = nnx.to_pure_dict(mf.trainable_mask(abstract, frozen))
    assert not any(jax.tree.leaves(mask["clip"]))
    assert all(jax.tree.leaves(mask["mia"])) and all(jax.tree.leaves(mask["unet"]))
    assert all(jax.tree.leaves(mf.trainable_mask(abstract, VIDEO)))


def test_config_errors():
    with pytest.raises(ValueError, match="cross_attention_dim"):
        mf.MIMAFaceConfig(unet=UNET, mia=dataclasses.replace(MIA, context_dim=8, num_heads=2), clip=CLIP)
    with pytest.raises(ValueError, match="motion modules"):
        mf.MIMAFaceConfig(unet=dataclasses.replace(UNET, use_motion_module=False), mia=MIA, clip=CLIP)
    with pytest.raises(ValueError, match="positional encoding"):
        mf.MIMAFaceConfig(unet=UNET, mia=MIA, clip=CLIP, num_frames=7)
    with pytest.raises(ValueError, match="CLIP gives"):
        mf.MIMAFaceConfig(unet=UNET, mia=dataclasses.replace(MIA, clip_width=8), clip=CLIP)


def test_train_timesteps_range_is_where_timesteps_are_drawn():
    """With train_timesteps=(999, 1000) every drawn timestep is 999: the loss equals the loss of
    the same batch with timesteps 999 given, not with 998."""
    batch = _batch(3)
    drawn = {k: v for k, v in batch.items() if k != "timesteps"}
    rng = jax.random.PRNGKey(5)
    graphdef, state = nnx.split(mf.MIMAFace(dataclasses.replace(VIDEO, train_timesteps=(999, 1000)),
                                            rngs=nnx.Rngs(0)))
    fn = jax.jit(lambda st, b: mf.loss_from_state(graphdef, st, b, rng)[0])
    at = {t: float(fn(state, dict(batch, timesteps=np.full((BATCH,), t, np.int32)))) for t in (998, 999)}
    assert float(fn(state, drawn)) == pytest.approx(at[999], rel=1e-6)
    assert abs(at[998] - at[999]) > 1e-6 * at[999]
    with pytest.raises(ValueError, match="train_timesteps"):
        dataclasses.replace(VIDEO, train_timesteps=(500, 500))
