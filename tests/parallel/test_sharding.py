"""Logical-axis rules, sharded init, batch sharding and activation constraints (8 CPU devices)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from mimaface_jax.models.partitioning import PARAM_AXES, logical
from mimaface_jax.parallel import (
    DEFAULT_RULES,
    MeshConfig,
    constrain,
    logical_to_mesh,
    make_mesh,
    merge_rules,
    shard_batch,
    sharded_init,
    state_shardings,
    unannotated_params,
    use_rules,
)

MESH_2x4 = {"data": 2, "fsdp": 4, "tensor": 1}
MESH_4x2 = {"data": 1, "fsdp": 4, "tensor": 2}


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == 8, "tests/conftest.py should give 8 fake CPU devices"
    return make_mesh(MeshConfig(data=2, fsdp=4, tensor=1))


# --- rules ---------------------------------------------------------------------------------


def test_default_rules_cover_every_param_axis():
    names = {name for name, _ in DEFAULT_RULES}
    assert set(PARAM_AXES) - {None} <= names


@pytest.mark.parametrize(
    "logical_names, shape, mesh_shape, expected",
    [
        (("embed", "mlp"), (8, 16), MESH_4x2, P("fsdp", "tensor")),
        (("mlp", "embed"), (16, 8), MESH_4x2, P("tensor", "fsdp")),
        # 3 input channels: fsdp=4 does not divide -> that dim stays replicated, the next splits
        ((None, None, "conv_in", "conv_out"), (3, 3, 3, 8), MESH_4x2, P(None, None, None, "tensor")),
        ((None, None, "conv_in", "conv_out"), (3, 3, 8, 3), MESH_4x2, P(None, None, "fsdp", None)),
        (("norm",), (16,), MESH_2x4, P(None)),
        (("batch", None), (8, 5), MESH_2x4, P(("data", "fsdp"), None)),
        # batch 4 over data=2 x fsdp=4: data divides, data*fsdp does not -> only data
        (("batch", None), (4, 5), MESH_2x4, P("data", None)),
        (("batch", None), (1, 5), MESH_2x4, P(None, None)),
    ],
)
def test_logical_to_mesh(logical_names, shape, mesh_shape, expected):
    assert logical_to_mesh(logical_names, shape, mesh_shape, DEFAULT_RULES) == expected


def test_a_mesh_axis_is_used_at_most_once():
    rules = merge_rules(DEFAULT_RULES, [("mlp", "fsdp")])
    assert logical_to_mesh(("embed", "mlp"), (8, 8), MESH_4x2, rules) == P("fsdp", None)
    assert logical_to_mesh(("mlp", "embed"), (8, 8), MESH_4x2, rules) == P("fsdp", None)


def test_merge_rules_overrides_by_name_and_adds_new_names():
    rules = dict(merge_rules(DEFAULT_RULES, [["embed", ["data", "fsdp"]], ("extra", "tensor")]))
    assert rules["embed"] == ("data", "fsdp")
    assert rules["extra"] == ("tensor",)
    assert rules["mlp"] == ("tensor",)


def test_rule_errors():
    with pytest.raises(KeyError, match="'colour' has no sharding rule"):
        logical_to_mesh(("colour",), (4,), MESH_2x4, DEFAULT_RULES)
    with pytest.raises(ValueError, match="the mesh has no axis 'model'"):
        logical_to_mesh(("embed",), (4,), MESH_2x4, [("embed", "model")])
    with pytest.raises(ValueError, match="name 'embed' twice"):
        logical_to_mesh(("embed",), (4,), MESH_2x4, [("embed", "fsdp"), ("embed", None)])
    with pytest.raises(ValueError, match="name 2 dimensions but the array has shape"):
        logical_to_mesh(("embed", "mlp"), (4, 4, 4), MESH_2x4, DEFAULT_RULES)


# --- toy model -----------------------------------------------------------------------------

_init = nnx.initializers.lecun_normal()
_conv_axes = (None, None, "conv_in", "conv_out")


class ToyNet(nnx.Module):
    """conv(3->16) -> conv(16->32) -> pool -> MLP(32->64->32), every param annotated."""

    def __init__(self, rngs: nnx.Rngs, annotate_norm: bool = True):
        self.conv_a = nnx.Conv(3, 16, (3, 3), kernel_init=logical(_init, *_conv_axes),
                               bias_init=logical(nnx.initializers.normal(), "norm"), rngs=rngs)
        self.conv_b = nnx.Conv(16, 32, (3, 3), kernel_init=logical(_init, *_conv_axes),
                               bias_init=logical(nnx.initializers.normal(), "norm"), rngs=rngs)
        norm_axes = {"scale_init": logical(nnx.initializers.ones, "norm"),
                     "bias_init": logical(nnx.initializers.zeros, "norm")} if annotate_norm else {}
        self.norm = nnx.LayerNorm(32, rngs=rngs, **norm_axes)
        self.fc_in = nnx.Linear(32, 64, kernel_init=logical(_init, "embed", "mlp"),
                                bias_init=logical(nnx.initializers.normal(), "norm"), rngs=rngs)
        self.fc_out = nnx.Linear(64, 32, kernel_init=logical(_init, "mlp", "embed"),
                                 bias_init=logical(nnx.initializers.normal(), "norm"), rngs=rngs)

    def __call__(self, x):  # (B, H, W, 3) -> (B, 32)
        x = constrain(jax.nn.silu(self.conv_a(x)), ("batch", "height", "width", "act_channels"))
        x = constrain(jax.nn.silu(self.conv_b(x)), ("batch", "height", "width", "act_channels"))
        x = self.norm(x.mean(axis=(1, 2)))
        h = constrain(jax.nn.gelu(self.fc_in(x)), ("batch", "act_mlp"))
        return constrain(self.fc_out(h), ("batch", "act_embed"))


def _factory():
    return ToyNet(nnx.Rngs(0))


def _shard_shape(array):
    return array.addressable_shards[0].data.shape


def test_state_shardings_from_abstract_state(mesh):
    _, abstract_state = nnx.split(nnx.eval_shape(_factory))
    shardings = state_shardings(abstract_state, mesh, DEFAULT_RULES)
    assert shardings["fc_in"]["kernel"].get_value().spec == P("fsdp", "tensor")
    assert shardings["conv_a"]["kernel"].get_value().spec == P(None, None, None, "tensor")
    assert shardings["conv_b"]["kernel"].get_value().spec == P(None, None, "fsdp", "tensor")
    assert shardings["norm"]["scale"].get_value().spec == P(None)


def test_unannotated_params_are_listed():
    _, annotated = nnx.split(nnx.eval_shape(_factory))
    _, bare = nnx.split(nnx.eval_shape(lambda: ToyNet(nnx.Rngs(0), annotate_norm=False)))
    assert unannotated_params(annotated) == []
    assert unannotated_params(bare) == ["['norm']['bias']", "['norm']['scale']"]


def test_sharded_init_splits_kernels_and_matches_eager_init(mesh):
    _, state = sharded_init(_factory, mesh, DEFAULT_RULES)
    eager = nnx.state(_factory())

    # (32, 64) and (64, 32): the "embed" side is split 4 ways over fsdp
    assert _shard_shape(state["fc_in"]["kernel"].get_value()) == (8, 64)
    assert _shard_shape(state["fc_out"]["kernel"].get_value()) == (64, 8)
    # (3, 3, 16, 32): conv_in over fsdp
    kernel_b = state["conv_b"]["kernel"].get_value()
    assert _shard_shape(kernel_b) == (3, 3, 4, 32)
    assert kernel_b.addressable_shards[0].data.size * 4 == kernel_b.size
    # (3, 3, 3, 16): 3 input channels do not divide over fsdp=4 -> replicated, no error
    assert _shard_shape(state["conv_a"]["kernel"].get_value()) == (3, 3, 3, 16)

    assert jax.tree.structure(state) == jax.tree.structure(eager)
    for (path, got), want in zip(jax.tree_util.tree_flatten_with_path(state)[0], jax.tree.leaves(eager)):
        if jax.dtypes.issubdtype(got.dtype, jax.dtypes.prng_key):
            got, want = jax.random.key_data(got), jax.random.key_data(want)
        # same RNG streams; jit vs eager may differ in the last float bit
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-8,
                                   err_msg=str(path))


@pytest.mark.parametrize("mesh_cfg", [MeshConfig(2, 4, 1), MeshConfig(1, 4, 2)])
def test_sharded_forward_matches_unsharded(mesh_cfg):
    mesh = make_mesh(mesh_cfg)
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype(np.float32)
    reference = np.asarray(jax.jit(lambda m, x: m(x))(_factory(), jnp.asarray(x)))

    graphdef, state = sharded_init(_factory, mesh, DEFAULT_RULES)

    @jax.jit
    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    with use_rules(mesh, DEFAULT_RULES):
        batch = shard_batch(x, mesh, DEFAULT_RULES)
        out = forward(state, batch)

    assert _shard_shape(batch) == (16 // (mesh_cfg.data * mesh_cfg.fsdp), 8, 8, 3)
    assert _shard_shape(out)[0] == 16 // (mesh_cfg.data * mesh_cfg.fsdp)
    diff = np.abs(np.asarray(out) - reference).max()
    print(f"max |sharded - unsharded| = {diff:.3g}")
    assert diff <= 1e-5, diff


# --- batches and activation constraints ----------------------------------------------------


def test_shard_batch_splits_leading_dim_and_keeps_values(mesh):
    local = {"image": np.arange(8 * 2 * 3, dtype=np.float32).reshape(8, 2, 3),
             "label": np.arange(8, dtype=np.int32)}
    batch = shard_batch(local, mesh, DEFAULT_RULES)
    assert _shard_shape(batch["image"]) == (1, 2, 3)
    assert len({s.device for s in batch["label"].addressable_shards}) == 8
    np.testing.assert_array_equal(np.asarray(batch["image"]), local["image"])
    with pytest.raises(ValueError, match=r"\['image'\].*global batch \(6\) must be divisible by 8"):
        shard_batch({"image": np.zeros((6, 2))}, mesh, DEFAULT_RULES)


def test_constrain_is_a_noop_without_mesh():
    x = jnp.ones((4, 8))
    assert constrain(x, ("batch", "act_embed")) is x
    # under jit too: the result keeps the input's (single-device) sharding
    out = jax.jit(lambda x: constrain(x * 2, ("batch", "act_embed")))(x)
    assert len(out.sharding.device_set) == 1


@pytest.mark.parametrize(
    "rules, batch, shard_rows",
    [
        (DEFAULT_RULES, 16, 2),                                   # data x fsdp = 8 ways
        (DEFAULT_RULES, 4, 2),                                    # data*fsdp does not divide 4: data only
        (merge_rules(DEFAULT_RULES, [("batch", "fsdp")]), 16, 4),  # rules from use_rules count
    ],
)
def test_constrain_shards_activation_under_mesh(mesh, rules, batch, shard_rows):
    x = jnp.ones((batch, 8))  # one device, unsharded
    with use_rules(mesh, rules):
        out = jax.jit(lambda x: constrain(x * 2, ("batch", "act_embed")))(x)
    assert _shard_shape(out) == (shard_rows, 8)


def test_constrain_with_unknown_name_raises_under_mesh(mesh):
    with use_rules(mesh, DEFAULT_RULES), pytest.raises(KeyError, match="'pixels' has no sharding rule"):
        jax.jit(lambda x: constrain(x, ("batch", "pixels")))(jnp.ones((8, 4)))
