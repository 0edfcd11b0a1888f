"""Per-layer ordered remat (``remat_scope="layer"``, ``remat_in_order``) on a data=2 x fsdp=4
mesh of 8 CPU devices: the same parameter gradients as the unsharded U-Net without remat.

Without a temporal mask (the masked sharded forward is tests/parallel/test_unet_mask_sharding.py).
The mask argument's path through ``remat_in_order`` is tested on one device
(tests/models/test_remat_in_order.py, tests/models/test_unet_parity.py)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tiny_unet_config import CLIPS, FRAMES, SIZE, TINY_UNET, TOKENS, random_sharded_state

from mimaface_jax.models.unet import UNet3D
from mimaface_jax.parallel import DEFAULT_RULES, MeshConfig, make_mesh, shard_batch, use_rules

PLAIN = TINY_UNET
LAYERED = dataclasses.replace(PLAIN, remat_policy="full", remat_scope="layer")


def _gradient_fn(config):
    graphdef = nnx.graphdef(UNet3D(config, rngs=nnx.Rngs(0)))  # tiny: built for its graph only

    @jax.jit
    def gradient(state, sample, timesteps, context, mask):
        def loss(state):
            out = nnx.merge(graphdef, state)(sample, timesteps, context, num_frames=FRAMES, temporal_mask=mask)
            return jnp.mean(out.astype(jnp.float32) ** 2)

        return jax.grad(loss)(state)

    return gradient


def test_sharded_layer_remat_gradients_match_unsharded_plain():
    assert jax.device_count() == 8, "tests/conftest.py should give 8 fake CPU devices"
    mesh = make_mesh(MeshConfig(data=2, fsdp=4, tensor=1))
    state = random_sharded_state(LAYERED, mesh)
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(CLIPS * FRAMES, SIZE, SIZE, PLAIN.in_channels)).astype(np.float32)
    context = rng.normal(size=(CLIPS * FRAMES, TOKENS, PLAIN.cross_attention_dim)).astype(np.float32)
    timesteps = np.array([10, 500], np.int32)  # (B,)

    single = jax.device_put(state, jax.devices()[0])
    reference = _gradient_fn(PLAIN)(single, sample, timesteps, context, None)
    with use_rules(mesh, DEFAULT_RULES):
        sample_g, context_g = shard_batch((sample, context), mesh, DEFAULT_RULES)
        got = _gradient_fn(LAYERED)(state, sample_g, timesteps, context_g, None)

    flat_ref = dict(nnx.to_flat_state(reference))
    # not vacuous: the gradient reaches the motion modules and the input conv
    assert float(jnp.abs(flat_ref[("down_blocks", 0, "motion_modules", 0, "proj_in", "kernel")][...]).max()) > 0
    assert float(jnp.abs(flat_ref[("conv_in", "kernel")][...]).max()) > 0
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(reference))
    worst = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(np.asarray(a) - np.asarray(b)).max()),
                                             reference, got)))
    assert worst <= 1e-5 * scale, f"max |grad diff| {worst:.3g} (largest gradient {scale:.3g})"
