"""MIA: per-frame contexts, modulation switches (built in, and cut at call time for inference
ablations), layout-driven motion groups, annotations."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mimaface_jax.face.motion_layout import MotionField, MotionLayout, facemesh_layout
from mimaface_jax.models.mia import MIA, MIAConfig
from mimaface_jax.parallel import unannotated_params

# Fields interleaved on purpose (expression, pose, gaze, pose): sizes and positions must come
# from the layout, not from a hard-coded [pose | expression | gaze] split.
LAYOUT = MotionLayout(
    version="test-interleaved",
    fields=(
        MotionField("expr", 5, "expression"),
        MotionField("rot", 3, "pose"),
        MotionField("gaze", 4, "gaze"),
        MotionField("trans", 2, "pose"),
    ),
)
TINY = MIAConfig(
    clip_width=12,
    num_clip_tokens=5,
    context_dim=16,
    num_heads=2,
    motion_layout=LAYOUT,
    motion_hidden=8,
    identity_dim=8,
    identity_hidden=8,
    num_identity_tokens=2,
    mapper_layers=2,
    mapper_mlp_ratio=2,
)
B, F = 2, 3


def _inputs(seed=0, layout=LAYOUT):
    k = jax.random.split(jax.random.key(seed), 3)
    appearance = jax.random.normal(k[0], (B, TINY.num_clip_tokens, TINY.clip_width))
    motion = jax.random.normal(k[1], (B, F, layout.size))
    identity = jax.random.normal(k[2], (B, TINY.identity_dim))
    return appearance, motion, identity / jnp.linalg.norm(identity, axis=-1, keepdims=True)


def _paths(model):
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(
        nnx.to_pure_dict(nnx.state(model, nnx.Param)))[0]]


def test_output_shape_and_per_frame_contexts():
    mia = MIA(TINY, rngs=nnx.Rngs(0))
    appearance, motion, identity = _inputs()
    motion = motion.at[:, 1].set(motion[:, 0])  # frames 0 and 1 share a motion vector
    out = np.asarray(mia(appearance, motion, identity))
    assert out.shape == (B * F, TINY.num_context_tokens, TINY.context_dim)
    assert TINY.num_context_tokens == 2 + 3 + 5  # identity + (expression, pose, gaze) + appearance
    frames = out.reshape(B, F, *out.shape[1:])
    np.testing.assert_allclose(frames[:, 0], frames[:, 1], atol=1e-6)  # same motion, same context
    assert np.abs(frames[:, 0] - frames[:, 2]).max() > 1e-2  # different motion, different context
    assert np.abs(frames[0] - frames[1]).max() > 1e-2  # different sources/identities


def test_clip_mean_context_is_the_context_of_the_mean_motion():
    per_frame = MIA(TINY, rngs=nnx.Rngs(0))
    clip_mean = MIA(dataclasses.replace(TINY, context="clip_mean"), rngs=nnx.Rngs(0))
    appearance, motion, identity = _inputs(1)
    out = np.asarray(clip_mean(appearance, motion, identity)).reshape(B, F, -1)
    np.testing.assert_allclose(out[:, 0], out[:, 2], atol=1e-6)
    mean_motion = jnp.repeat(motion.mean(axis=1, keepdims=True), F, axis=1)
    ref = np.asarray(per_frame(appearance, mean_motion, identity)).reshape(B, F, -1)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # frame weights: only the weighted frames enter the mean
    w = jnp.array([[0.0, 1.0, 1.0]] * B)
    out_w = np.asarray(clip_mean(appearance, motion, identity, frame_weights=w)).reshape(B, F, -1)
    mean_w = jnp.repeat(motion[:, 1:].mean(axis=1, keepdims=True), F, axis=1)
    ref_w = np.asarray(per_frame(appearance, mean_w, identity)).reshape(B, F, -1)
    np.testing.assert_allclose(out_w, ref_w, atol=1e-5)


def test_motion_groups_read_their_slices_from_the_layout():
    mia = MIA(TINY, rngs=nnx.Rngs(0))
    tokens = mia.motion_tokens
    assert tokens.groups == ("pose", "expression", "gaze")
    assert tokens.mlps["pose"].fc1.kernel.shape[0] == 5  # rot (3) + trans (2)
    assert tokens.mlps["expression"].fc1.kernel.shape[0] == 5
    assert tokens.mlps["gaze"].fc1.kernel.shape[0] == 4
    _, motion, _ = _inputs(2)
    base = np.asarray(tokens(motion))  # (B, F, G, C)
    # change only the "trans" field (a pose field at the end of the vector)
    moved = np.asarray(tokens(motion.at[..., LAYOUT.slice("trans")].add(1.0)))
    diff = np.abs(moved - base).max(axis=(0, 1, 3))  # per group
    assert diff[0] > 1e-3 and diff[1] == 0 and diff[2] == 0
    # a layout without gaze has two motion tokens
    no_gaze = MotionLayout("nogaze", (MotionField("e", 4, "expression"), MotionField("p", 2, "pose")))
    cfg = dataclasses.replace(TINY, motion_layout=no_gaze)
    assert cfg.num_motion_tokens == 2
    out = MIA(cfg, rngs=nnx.Rngs(0))(*_inputs(3)[:1], jnp.zeros((B, F, 6)), _inputs(3)[2])
    assert out.shape == (B * F, 2 + 2 + 5, TINY.context_dim)


@pytest.mark.parametrize("switch, word", [("motion_modulation", "motion"), ("identity_modulation", "identity")])
def test_disabling_a_modulation_removes_its_parameters_and_effect(switch, word):
    on = MIA(TINY, rngs=nnx.Rngs(0))
    off = MIA(dataclasses.replace(TINY, **{switch: False}), rngs=nnx.Rngs(0))
    assert any(word in p for p in _paths(on))
    assert not any(word in p for p in _paths(off))
    appearance, motion, identity = _inputs(4)
    if word == "motion":
        other = (appearance, motion + 1.0, identity)
    else:
        other = (appearance, motion, jnp.roll(identity, 1, axis=0))
    delta_on = np.abs(np.asarray(on(*other) - on(appearance, motion, identity))).max()
    delta_off = np.abs(np.asarray(off(*other) - off(appearance, motion, identity))).max()
    assert delta_on > 1e-2
    assert delta_off == 0.0
    n_id = TINY.num_identity_tokens if switch == "motion_modulation" else 0
    n_motion = 3 if switch == "identity_modulation" else 0
    assert off(appearance, motion, identity).shape[1] == n_id + n_motion + TINY.num_clip_tokens


def test_identity_scale_shift_starts_at_zero_and_acts_when_trained():
    mia = MIA(TINY, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(np.asarray(mia.identity.scale_shift.kernel[...]), 0)
    a = jax.random.normal(jax.random.key(5), (B, 1, 5, TINY.context_dim))
    _, _, identity = _inputs(5)
    np.testing.assert_allclose(np.asarray(mia.identity.modulate(a, identity)),
                               np.asarray(mia.identity.norm(a)), atol=1e-6)
    mia.identity.scale_shift.kernel[...] = jax.random.normal(jax.random.key(6), mia.identity.scale_shift.kernel.shape)
    changed = mia.identity.modulate(a, identity) - mia.identity.norm(a)
    assert np.abs(np.asarray(changed)).max() > 1e-2


def test_every_parameter_is_annotated_and_bad_inputs_are_reported():
    mia = MIA(TINY, rngs=nnx.Rngs(0))
    assert unannotated_params(nnx.state(mia)) == []
    appearance, motion, identity = _inputs()
    with pytest.raises(ValueError, match="test-interleaved"):
        mia(appearance, motion[..., :-1], identity)
    with pytest.raises(ValueError, match="identity"):
        mia(appearance, motion, None)
    with pytest.raises(ValueError, match="appearance tokens"):
        mia(appearance[..., :-1], motion, identity)
    with pytest.raises(ValueError, match="context"):
        MIAConfig(context="per_clip")
    # the default configuration reads the FaceMesh layout (64 expression components)
    assert MIAConfig().motion_layout == facemesh_layout()


# ------------------------------------------------ inference switches: a path cut at call time


def _trained_like(seed=0):
    """A MIA whose zero-initialised identity FiLM is randomised (as training leaves it), so the
    identity reaches the output through the FiLM as well as through its tokens."""
    mia = MIA(TINY, rngs=nnx.Rngs(seed))
    kernel = mia.identity.scale_shift.kernel
    kernel[...] = 0.5 * jax.random.normal(jax.random.key(seed + 1), kernel.shape)
    return mia


@pytest.mark.parametrize("flag", ["use_motion", "use_identity"])
def test_a_cut_path_ignores_its_input_the_other_path_still_acts(flag):
    mia = _trained_like()
    appearance, motion, identity = _inputs(7)
    other_motion = (appearance, motion + 1.0, identity)
    other_identity = (appearance, motion, jnp.roll(identity, 1, axis=0))
    cut_input, kept_input = (other_motion, other_identity) if flag == "use_motion" else (other_identity, other_motion)

    def delta(args, **kw):
        return float(np.abs(np.asarray(mia(*args, **kw) - mia(appearance, motion, identity, **kw))).max())

    assert delta(cut_input) > 1e-2                        # on: the input matters
    assert delta(cut_input, **{flag: False}) == 0.0       # off: changing it changes nothing
    assert delta(kept_input, **{flag: False}) > 1e-2      # the other path still acts
    n_motion = 0 if flag == "use_motion" else 3
    n_id = 0 if flag == "use_identity" else TINY.num_identity_tokens
    out = mia(appearance, motion, identity, **{flag: False})
    assert out.shape == (B * F, n_id + n_motion + TINY.num_clip_tokens, TINY.context_dim)
    assert out.shape[1] == TINY.context_length(**{flag: False})


@pytest.mark.parametrize("flag, switch", [("use_motion", "motion_modulation"),
                                          ("use_identity", "identity_modulation")])
def test_a_cut_path_computes_the_module_built_without_it(flag, switch):
    """Off at call time == a module built with the switch off, holding the same parameters."""
    full = _trained_like(3)
    built_without = MIA(dataclasses.replace(TINY, **{switch: False}), rngs=nnx.Rngs(9))
    shared = nnx.to_pure_dict(nnx.state(full, nnx.Param))

    def take(target, source):
        return {k: take(v, source[k]) if isinstance(v, dict) else source[k] for k, v in target.items()}

    state = nnx.state(built_without, nnx.Param)
    nnx.replace_by_pure_dict(state, take(nnx.to_pure_dict(state), shared))
    nnx.update(built_without, state)
    appearance, motion, identity = _inputs(8)
    np.testing.assert_allclose(np.asarray(full(appearance, motion, identity, **{flag: False})),
                               np.asarray(built_without(appearance, motion, identity)), atol=1e-6)


def test_identity_off_needs_no_identity_vector():
    mia = _trained_like()
    appearance, motion, _ = _inputs(9)
    assert mia(appearance, motion, None, use_identity=False).shape[1] == TINY.context_length(use_identity=False)
    with pytest.raises(ValueError, match="no identity vector"):
        mia(appearance, motion, None)
