"""The NNX video U-Net against diffusers' ``UNetMotionModel`` (weights moved by our importer)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from flax import nnx
from safetensors.numpy import load_file

from mimaface_jax.importers.unet import import_unet, import_unet_state, unet_config_from_checkpoint
from mimaface_jax.models.unet import UNet3D, _remat_policy
from mimaface_jax.models.unet_config import REMAT_POLICIES, UNetConfig
from tiny_checkpoints import CTX_DIM, make_tiny_unet, write_original_motion_file

TOL = 1e-4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_unet(tmp_path_factory.mktemp("unet2"), layers_per_block=2, seed=0)


@pytest.fixture(scope="module")
def checkpoint_original_layout(tmp_path_factory):
    path = tmp_path_factory.mktemp("unet1")
    unet_dir, motion_dir, reference = make_tiny_unet(path, layers_per_block=1, seed=1)
    motion_file = write_original_motion_file(motion_dir, path / "mm_sd_v15_v3_tiny.safetensors")
    original = load_file(str(motion_file))
    assert all(".temporal_transformer." in k for k in original)
    assert any(k.endswith("attention_blocks.1.pos_encoder.pe") for k in original)
    return unet_dir, motion_file, reference


def run_both(reference, ours, *, batch, frames, seed, size=16):
    """diffusers on the 4-channel input, ours on 13 channels with the last 9 zero."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, frames, size, size, generator=g)  # (B, C, F, H, W)
    ctx = torch.randn(batch, 7, CTX_DIM, generator=g)
    t = torch.tensor([17, 903][:batch])
    ctx_frames = ctx.repeat_interleave(frames, dim=0)  # the same context for every frame
    with torch.no_grad():
        ref = reference(x, t, ctx_frames).sample  # (B, C, F, H, W)
    ref = ref.permute(0, 2, 3, 4, 1).reshape(batch * frames, size, size, 4).numpy()

    xs = x.permute(0, 2, 3, 4, 1).reshape(batch * frames, size, size, 4).numpy()
    xs = np.concatenate([xs, np.zeros(xs.shape[:3] + (9,), np.float32)], axis=-1)
    graphdef, state = nnx.split(ours)

    @jax.jit
    def forward(state, x, t, c):
        return nnx.merge(graphdef, state)(x, t, c, num_frames=frames)

    out = forward(state, jnp.asarray(xs), jnp.asarray(t.numpy()), jnp.asarray(ctx_frames.numpy()))
    return np.asarray(out), ref


@pytest.mark.parametrize("frames", [1, 4])
def test_matches_diffusers_unet_motion_model(checkpoint, frames):
    unet_dir, motion_dir, reference = checkpoint
    ours = import_unet(unet_dir, motion_dir)
    assert ours.config.in_channels == 13 and ours.config.layers_per_block == 2
    out, ref = run_both(reference, ours, batch=2, frames=frames, seed=frames)
    assert out.shape == (2 * frames, 16, 16, 4)
    diff = np.abs(out - ref).max()
    assert diff <= TOL, f"max |diff| {diff:.3g} (reference scale {np.abs(ref).max():.3g})"


@pytest.mark.parametrize("frames", [1, 4])
def test_matches_diffusers_from_original_animatediff_file(checkpoint_original_layout, frames):
    unet_dir, motion_file, reference = checkpoint_original_layout
    # a config-less AnimateDiff file cannot tell the number of temporal heads (AnimateDiff's 8
    # is assumed); the tiny test model has 4
    config = unet_config_from_checkpoint(unet_dir, motion_file, motion_num_attention_heads=4)
    assert config.layers_per_block == 1 and config.motion_max_seq_length == 32
    ours = import_unet(unet_dir, motion_file, config=config)
    out, ref = run_both(reference, ours, batch=2, frames=frames, seed=5 + frames)
    diff = np.abs(out - ref).max()
    assert diff <= TOL, f"max |diff| {diff:.3g}"


def test_reference_frames_interact(checkpoint):
    """The parity above is not vacuous: in the reference, frame 3 changes the output of frame 0."""
    _, _, reference = checkpoint
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 4, 16, 16, generator=g)
    ctx = torch.randn(4, 7, CTX_DIM, generator=g)
    with torch.no_grad():
        y1 = reference(x, torch.tensor([50]), ctx).sample
        x[:, :, 3] += 1.0
        y2 = reference(x, torch.tensor([50]), ctx).sample
    assert float((y1[:, :, 0] - y2[:, :, 0]).abs().max()) > 1e-3


def test_extra_input_channels_start_at_zero(checkpoint):
    unet_dir, motion_dir, reference = checkpoint
    ours = import_unet(unet_dir, motion_dir)
    kernel = np.asarray(ours.conv_in.kernel[...])  # (3, 3, 13, C0)
    assert kernel.shape[2] == 13
    assert np.all(kernel[:, :, 4:, :] == 0)
    torch_w = reference.conv_in.weight.detach().numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(kernel[:, :, :4, :], torch_w)


def test_full_size_parameter_count_equals_diffusers():
    """SD-1.5 + AnimateDiff-v3, counted abstractly on both sides (nothing allocated)."""
    with torch.device("meta"):
        unet2d = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8)  # SD-1.5
        adapter = MotionAdapter(use_motion_mid_block=False)  # AnimateDiff-v3 (diffusers defaults)
        reference = UNetMotionModel.from_unet2d(unet2d, adapter, load_weights=False)
    # our defaults are that configuration, and from_diffusers reads it so
    assert UNetConfig.from_diffusers(unet2d.config, adapter.config) == UNetConfig()
    ours = nnx.eval_shape(lambda: UNet3D(UNetConfig(), rngs=nnx.Rngs(0)))
    ours_count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(ours, nnx.Param)))
    reference_count = sum(p.numel() for p in reference.parameters())
    conv_in_extension = 9 * 3 * 3 * 320
    assert ours_count == reference_count + conv_in_extension


def _tiny_config(**overrides) -> UNetConfig:
    settings = dict(
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        num_attention_heads=2,
        cross_attention_dim=16,
        norm_num_groups=4,
        motion_num_attention_heads=2,
        motion_norm_num_groups=4,
    )
    return UNetConfig(**{**settings, **overrides})


def _one_level_config(**overrides) -> UNetConfig:
    """The smallest U-Net with every kind of block (down, mid, up; cross-attention; motion)."""
    return _tiny_config(
        block_out_channels=(16,),
        down_block_types=("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",),
        **overrides,
    )


class _RematGradients:
    """Gradients of a loss through the one-level U-Net (every kind of block) per remat policy,
    on the same random parameters and inputs; "none" (no checkpointing) is the reference.

    Not jitted: the policy acts when ``jax.grad`` linearises the checkpointed blocks (which
    residuals are saved, which recomputed), with or without jit; op by op, the compiled
    primitives are shared by all six policies, where six jitted U-Net gradients would each
    compile for about a minute on 2 CPU cores."""

    def __init__(self):
        base = UNet3D(_one_level_config(), rngs=nnx.Rngs(0))
        _, state = nnx.split(base, nnx.Param)
        # random values everywhere (incl. the zero-initialised proj_out of the motion modules)
        leaves, treedef = jax.tree.flatten(state)
        keys = jax.random.split(jax.random.key(1), len(leaves))
        self.state = jax.tree.unflatten(
            treedef, [l + 0.05 * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)]
        )
        rng = np.random.default_rng(2)
        self.x = jnp.asarray(rng.standard_normal((4, 8, 8, 13)).astype(np.float32))
        self.ctx = jnp.asarray(rng.standard_normal((4, 5, 16)).astype(np.float32))
        self.mask = jnp.asarray(np.tril(np.ones((2, 2), bool)))

    def loss(self, policy, scope="block"):
        model = UNet3D(_one_level_config(remat_policy=policy, remat_scope=scope), rngs=nnx.Rngs(0))
        graphdef, _, rest = nnx.split(model, nnx.Param, ...)

        def loss(params):
            out = nnx.merge(graphdef, params, rest)(self.x, jnp.array([3, 700]), self.ctx, num_frames=2,
                                                    temporal_mask=self.mask)
            return jnp.mean(out**2)

        return loss

    def __call__(self, policy, scope="block"):
        return jax.grad(self.loss(policy, scope))(self.state)

    def checkpoint_policies(self, policy, scope="block") -> list:
        """The ``policy`` of every checkpoint (remat) equation in the traced loss, nested ones too;
        "in order" for every custom-VJP call (``remat_in_order``; the tiny U-Net's plain
        attention has none of its own)."""
        found = []

        def walk(jaxpr):
            for eqn in jaxpr.eqns:
                if eqn.primitive.name.startswith(("remat", "checkpoint")):  # remat2 today
                    found.append(eqn.params["policy"])
                if eqn.primitive.name.startswith("custom_vjp"):
                    found.append("in order")
                for value in eqn.params.values():
                    inner = getattr(value, "jaxpr", value)
                    if hasattr(inner, "eqns"):
                        walk(inner)

        walk(jax.make_jaxpr(self.loss(policy, scope))(self.state).jaxpr)
        return found


@pytest.fixture(scope="module")
def remat_gradients():
    grads = _RematGradients()
    reference = grads("none")
    assert grads.checkpoint_policies("none") == []
    # the check is not vacuous: gradients reach the motion modules and the input conv
    flat = dict(reference.flat_state())
    assert float(jnp.abs(flat[("conv_in", "kernel")][...]).max()) > 0
    mm = flat[("down_blocks", 0, "motion_modules", 0, "proj_in", "kernel")][...]
    assert float(jnp.abs(mm).max()) > 0
    return grads, reference


# one xdist worker for all policies: they share the module fixture's reference gradients
@pytest.mark.xdist_group("unet_remat_gradients")
@pytest.mark.parametrize("policy", [p for p in REMAT_POLICIES if p != "none"])
def test_gradients_equal_with_and_without_checkpointing(remat_gradients, policy):
    grads, reference = remat_gradients
    # the policy is really applied: one checkpoint per down / mid / up block, with its policy
    # (jax.checkpoint_policies.<name>; None = save nothing = "full")
    expected = None if policy == "full" else getattr(jax.checkpoint_policies, policy)
    assert grads.checkpoint_policies(policy) == [expected] * 3
    other = grads(policy)
    assert jax.tree.structure(other) == jax.tree.structure(reference)
    diffs = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), reference, other)
    worst = max(jax.tree.leaves(diffs))
    assert worst <= 1e-5, f"remat_policy={policy}: max |grad diff| {worst:.3g}"


# one xdist worker with the block-scope policies: the same module fixture
@pytest.mark.xdist_group("unet_remat_gradients")
@pytest.mark.parametrize("policy", ["full", "dots_saveable"])
def test_layer_scope_checkpoints_every_layer_with_equal_gradients(remat_gradients, policy):
    grads, reference = remat_gradients
    # "full" recomputes each layer only once its output's gradient exists (remat_in_order)
    expected = "in order" if policy == "full" else jax.checkpoint_policies.dots_saveable
    # one checkpoint per layer, none per block: down (resnet, transformer, motion module),
    # mid (resnet, transformer, resnet), up (2 x resnet, transformer, motion module)
    assert grads.checkpoint_policies(policy, "layer") == [expected] * (3 + 3 + 6)
    other = grads(policy, "layer")
    assert jax.tree.structure(other) == jax.tree.structure(reference)
    diffs = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), reference, other)
    worst = max(jax.tree.leaves(diffs))
    assert worst <= 1e-5, f"remat_policy={policy}, remat_scope=layer: max |grad diff| {worst:.3g}"


def test_unknown_remat_scope_is_an_error():
    with pytest.raises(ValueError, match="remat_scope='resnet'"):
        _one_level_config(remat_policy="full", remat_scope="resnet")


@pytest.mark.parametrize("policy", [p for p in REMAT_POLICIES if p != "none"])
def test_remat_policy_names_resolve(policy):
    resolved = _remat_policy(policy)
    assert (resolved is None) == (policy == "full")


def test_temporal_mask_isolates_frames():
    """ICA isolation: frames masked off from each other do not influence each other at all.

    Clip 0 (F=3): frame 0 is a context frame that attends only to itself; clip 1: no
    isolation. Changing frames 1-2 of clip 0 leaves frame 0's output exactly as it was, and
    changes the other clip's frames 1-2 when done there. An all-True mask equals no mask.
    """
    model = UNet3D(_one_level_config(), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    # give the zero-initialised motion-module outputs weight, so temporal attention matters
    state = jax.tree.map(lambda v: v + 0.05, state)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 8, 8, 13)).astype(np.float32)  # B=2 clips x F=3 frames
    ctx = jnp.asarray(rng.standard_normal((6, 5, 16)).astype(np.float32))
    isolated = np.ones((3, 3), bool)
    isolated[0, 1:] = False  # frame 0 sees only itself
    masks = jnp.asarray(np.stack([isolated, np.ones((3, 3), bool)]))  # (B, F, F)

    @jax.jit
    def run(x, mask):
        return nnx.merge(graphdef, state)(x, jnp.array([10, 20]), ctx, num_frames=3, temporal_mask=mask)

    base = np.asarray(run(jnp.asarray(x), masks))
    changed = x.copy()
    changed[1:3] += 1.0  # clip 0, frames 1-2
    changed[4:6] += 1.0  # clip 1, frames 1-2
    out = np.asarray(run(jnp.asarray(changed), masks))
    np.testing.assert_allclose(out[0], base[0], atol=1e-6)  # isolated context frame: untouched
    assert np.abs(out[3] - base[3]).max() > 1e-3  # clip 1, frame 0: sees the change

    plain = jax.jit(lambda x: nnx.merge(graphdef, state)(x, jnp.array([10, 20]), ctx, num_frames=3))
    all_true = run(jnp.asarray(x), jnp.ones((3, 3), bool))
    np.testing.assert_allclose(np.asarray(all_true), np.asarray(plain(jnp.asarray(x))), rtol=1e-5, atol=1e-5)


def test_config_from_checkpoint(checkpoint):
    unet_dir, motion_dir, _ = checkpoint
    config = unet_config_from_checkpoint(unet_dir, motion_dir)
    expected = dict(
        in_channels=13,
        pretrained_in_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        num_attention_heads=4,
        motion_num_attention_heads=4,
        motion_norm_num_groups=8,
        use_motion_mid_block=False,
    )
    got = {k: getattr(config, k) for k in expected}
    assert got == expected
    cfg, _, state = import_unet_state(unet_dir, motion_dir, config=dataclasses.replace(config, in_channels=9))
    assert cfg.in_channels == 9 and state["conv_in"]["kernel"].shape[2] == 9
