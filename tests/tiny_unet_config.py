"""The two-level video U-Net the sharding tests run (32 / 64 channels, cross-attention and
motion modules), with the clip shapes they feed it and its randomised sharded state."""

import jax
from flax import nnx

from mimaface_jax.models.unet import UNet3D
from mimaface_jax.models.unet_config import CROSS_ATTN_DOWN, CROSS_ATTN_UP, DOWN, UP, UNetConfig
from mimaface_jax.parallel import DEFAULT_RULES, sharded_init

TINY_UNET = UNetConfig(
    block_out_channels=(32, 64),
    down_block_types=(CROSS_ATTN_DOWN, DOWN),
    up_block_types=(UP, CROSS_ATTN_UP),
    layers_per_block=1,
    num_attention_heads=2,
    cross_attention_dim=32,
    norm_num_groups=8,
    motion_num_attention_heads=2,
    motion_norm_num_groups=8,
    motion_max_seq_length=8,
)
CLIPS, FRAMES, SIZE, TOKENS = 2, 4, 8, 3


def random_sharded_state(config, mesh):
    """A UNet3D(config) state sharded over ``mesh`` with random values everywhere (a new
    model's motion modules output zero: their proj_out starts at zero)."""
    _, state = sharded_init(lambda: UNet3D(config, rngs=nnx.Rngs(0)), mesh, DEFAULT_RULES)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    return jax.tree.unflatten(treedef, [l + 0.05 * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)])
