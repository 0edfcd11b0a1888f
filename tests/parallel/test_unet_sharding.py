"""The video U-Net on a data=2 x fsdp=4 mesh of 8 CPU devices: same output, parameters split."""

import jax
import numpy as np
import pytest
from flax import nnx

from tiny_unet_config import CLIPS, FRAMES, SIZE, TINY_UNET, TOKENS

from mimaface_jax.models.unet import UNet3D
from mimaface_jax.parallel import (
    DEFAULT_RULES,
    MeshConfig,
    make_mesh,
    shard_batch,
    sharded_init,
    unannotated_params,
    use_rules,
)

TINY = TINY_UNET


def _factory():
    return UNet3D(TINY, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def sharded():
    assert jax.device_count() == 8, "tests/conftest.py should give 8 fake CPU devices"
    mesh = make_mesh(MeshConfig(data=2, fsdp=4, tensor=1))
    graphdef, state = sharded_init(_factory, mesh, DEFAULT_RULES)
    return mesh, graphdef, state


def test_every_unet_param_is_annotated(sharded):
    _, _, state = sharded
    assert unannotated_params(state) == []


def test_unet_kernels_are_split_over_fsdp(sharded):
    _, _, state = sharded
    params = [v for v in jax.tree.leaves(state) if v.ndim >= 1]
    largest = sorted(params, key=lambda v: -v.size)[:8]
    for v in largest:
        assert v.addressable_shards[0].data.size * 4 == v.size, (v.shape, v.sharding.spec)
    total = sum(v.size for v in params)
    per_device = sum(v.addressable_shards[0].data.size for v in params)
    # small norms / biases stay replicated; the kernels dominate
    assert per_device / total < 0.3, per_device / total


def test_sharded_unet_forward_matches_unsharded(sharded):
    mesh, graphdef, state = sharded
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(CLIPS * FRAMES, SIZE, SIZE, TINY.in_channels)).astype(np.float32)
    context = rng.normal(size=(CLIPS * FRAMES, TOKENS, TINY.cross_attention_dim)).astype(np.float32)
    timesteps = np.array([10, 500], np.int32)  # (B,)

    def run(model, sample, timesteps, context):
        return model(sample, timesteps, context, num_frames=FRAMES)  # (B*F, H, W, 4)

    @jax.jit
    def forward(state, sample, timesteps, context):
        return run(nnx.merge(graphdef, state), sample, timesteps, context)

    # the same parameter values, all on one device, no mesh
    single_device_state = jax.device_put(state, jax.devices()[0])
    assert len(jax.tree.leaves(single_device_state)[0].sharding.device_set) == 1
    reference = np.asarray(forward(single_device_state, sample, timesteps, context))

    with use_rules(mesh, DEFAULT_RULES):
        sample_g, context_g = shard_batch((sample, context), mesh, DEFAULT_RULES)
        out = forward(state, sample_g, timesteps, context_g)

    assert out.addressable_shards[0].data.shape == (1, SIZE, SIZE, TINY.out_channels)
    diff = np.abs(np.asarray(out) - reference).max()
    print(f"U-Net max |sharded - unsharded| = {diff:.3g}")
    assert diff <= 1e-5, diff
