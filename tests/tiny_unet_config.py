"""The two-level video U-Net the sharding tests run (32 / 64 channels, cross-attention and
motion modules), with the clip shapes they feed it."""

from mimaface_jax.models.unet_config import CROSS_ATTN_DOWN, CROSS_ATTN_UP, DOWN, UP, UNetConfig

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
