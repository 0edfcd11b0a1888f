"""Configuration of the 3-D (video) U-Net: SD-1.5 topology + AnimateDiff-v3 motion modules."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from mimaface_jax.models.attention import AttentionConfig

CROSS_ATTN_DOWN = "CrossAttnDownBlock2D"
DOWN = "DownBlock2D"
CROSS_ATTN_UP = "CrossAttnUpBlock2D"
UP = "UpBlock2D"

# diffusers names of the video blocks -> the 2-D names used here
_BLOCK_ALIASES = {
    "CrossAttnDownBlockMotion": CROSS_ATTN_DOWN,
    "DownBlockMotion": DOWN,
    "CrossAttnUpBlockMotion": CROSS_ATTN_UP,
    "UpBlockMotion": UP,
}

REMAT_POLICIES = (
    "none",  # no checkpointing
    "full",  # save nothing inside a block, recompute everything
    "dots_saveable",
    "dots_with_no_batch_dims_saveable",
    "nothing_saveable",
    "everything_saveable",
)

# where the remat policy's checkpoints go: around every down / mid / up "block", or around
# every resnet / spatial transformer / motion module ("layer") inside the blocks
REMAT_SCOPES = ("block", "layer")


def _per_block(value, n: int, name: str) -> tuple:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries, expected one per block ({n})")
    return value


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Every width, depth and head count of the U-Net (defaults: SD-1.5 + AnimateDiff-v3).

    Attributes:
      in_channels: input channels (13 = 4 noisy + 4 condition render + 4 ICA context + 1 mask).
      pretrained_in_channels: channels of the pretrained ``conv_in`` (4); the importer
        zero-fills the rest.
      out_channels: predicted channels (4).
      block_out_channels: width of each resolution level.
      down_block_types / up_block_types: ``CrossAttnDownBlock2D`` / ``DownBlock2D`` and
        ``UpBlock2D`` / ``CrossAttnUpBlock2D`` (diffusers' ``...Motion`` names are accepted).
      layers_per_block: resnets per down block (up blocks have one more).
      num_attention_heads: spatial attention heads per block (what SD-1.5's config calls
        ``attention_head_dim = 8``); head width = block width // heads.
      cross_attention_dim: width of the cross-attention context (768).
      transformer_layers_per_block: BasicTransformerBlocks in each Transformer2D.
      use_linear_projection: Linear (True) or 1x1 conv (False, SD-1.5) proj_in/proj_out.
      norm_num_groups, norm_eps: GroupNorm of resnets / conv_norm_out.
      flip_sin_to_cos, freq_shift: sinusoidal timestep embedding.
      downsample_padding, mid_block_scale_factor: as diffusers.
      mid_block_layers: cross-attention layers of the mid block (1).
      use_motion_module: temporal modules after every resnet/attention pair of down/up blocks.
      motion_num_attention_heads: temporal heads (int or one per down block).
      motion_max_seq_length: longest clip the positional encoding covers (32).
      motion_transformer_layers: transformer blocks per motion module.
      motion_norm_num_groups: GroupNorm groups of motion modules (diffusers' UNetMotionModel
        uses the U-Net's ``norm_num_groups``).
      use_motion_mid_block: a motion module in the mid block (off: AnimateDiff-v3 has none).
      remat_policy: gradient checkpointing: one of ``REMAT_POLICIES`` (``"full"`` = recompute
        everything; others name ``jax.checkpoint_policies``).
      remat_scope: what one checkpoint wraps (``REMAT_SCOPES``): ``"block"`` = every down /
        mid / up block (the backward of a block holds all its layers' recomputed
        activations at once), ``"layer"`` = every resnet, spatial transformer and motion
        module (the layers' inputs are saved instead; with ``"full"`` the layers' backward
        passes are ordered one after another, ``models/remat_in_order.py``). Same FLOPs.
      attention: kernel selection for every attention layer.
    """

    in_channels: int = 13
    pretrained_in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = (CROSS_ATTN_DOWN, CROSS_ATTN_DOWN, CROSS_ATTN_DOWN, DOWN)
    up_block_types: tuple[str, ...] = (UP, CROSS_ATTN_UP, CROSS_ATTN_UP, CROSS_ATTN_UP)
    layers_per_block: int = 2
    num_attention_heads: int | tuple[int, ...] = 8
    cross_attention_dim: int = 768
    transformer_layers_per_block: int = 1
    use_linear_projection: bool = False
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    mid_block_layers: int = 1
    use_motion_module: bool = True
    motion_num_attention_heads: int | tuple[int, ...] = 8
    motion_max_seq_length: int = 32
    motion_transformer_layers: int = 1
    motion_norm_num_groups: int = 32
    use_motion_mid_block: bool = False
    remat_policy: str = "none"
    remat_scope: str = "block"
    attention: AttentionConfig = AttentionConfig()

    def __post_init__(self):
        n = len(self.block_out_channels)
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        object.__setattr__(
            self, "down_block_types", tuple(_BLOCK_ALIASES.get(t, t) for t in self.down_block_types)
        )
        object.__setattr__(self, "up_block_types", tuple(_BLOCK_ALIASES.get(t, t) for t in self.up_block_types))
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(
                f"UNetConfig: {n} block_out_channels but {len(self.down_block_types)} down and "
                f"{len(self.up_block_types)} up block types"
            )
        for t in self.down_block_types:
            if t not in (CROSS_ATTN_DOWN, DOWN):
                raise ValueError(f"UNetConfig: unknown down block type {t!r}")
        for t in self.up_block_types:
            if t not in (CROSS_ATTN_UP, UP):
                raise ValueError(f"UNetConfig: unknown up block type {t!r}")
        for name in ("num_attention_heads", "motion_num_attention_heads"):
            value = getattr(self, name)
            if not isinstance(value, int):
                object.__setattr__(self, name, _per_block(value, n, name))
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(f"UNetConfig.remat_policy={self.remat_policy!r}; expected one of {REMAT_POLICIES}")
        if self.remat_scope not in REMAT_SCOPES:
            raise ValueError(f"UNetConfig.remat_scope={self.remat_scope!r}; expected one of {REMAT_SCOPES}")
        if self.in_channels < self.pretrained_in_channels:
            raise ValueError("UNetConfig.in_channels must be >= pretrained_in_channels")
        if isinstance(self.attention, Mapping):
            object.__setattr__(self, "attention", AttentionConfig(**self.attention))

    def heads_per_block(self) -> tuple[int, ...]:
        return _per_block(self.num_attention_heads, len(self.block_out_channels), "num_attention_heads")

    def motion_heads_per_block(self) -> tuple[int, ...]:
        return _per_block(
            self.motion_num_attention_heads, len(self.block_out_channels), "motion_num_attention_heads"
        )

    @classmethod
    def from_diffusers(
        cls,
        unet_config: Mapping[str, Any],
        motion_adapter_config: Mapping[str, Any] | None = None,
        **overrides,
    ) -> "UNetConfig":
        """Builds the config of diffusers' ``UNet2DConditionModel`` config.json (+ ``MotionAdapter``).

        Mirrors ``UNetMotionModel.from_unet2d``: block types become their video versions,
        motion settings come from the adapter, the motion modules' GroupNorm uses the U-Net's
        ``norm_num_groups``. ``in_channels`` defaults to 13 with the file's channels as
        ``pretrained_in_channels``. Unsupported settings raise ``ValueError``.
        """
        c = dict(unet_config)
        unsupported = {
            "addition_embed_type": None,
            "encoder_hid_dim_type": None,
            "class_embed_type": None,
            "time_cond_proj_dim": None,
            "resnet_time_scale_shift": "default",
            "only_cross_attention": False,
            "dual_cross_attention": False,
            "upcast_attention": False,
            "act_fn": "silu",
            "mid_block_type": "UNetMidBlock2DCrossAttn",
            "time_embedding_type": "positional",
            "time_embedding_dim": None,
            "time_embedding_act_fn": None,
            "timestep_post_act": None,
            "num_class_embeds": None,
            "encoder_hid_dim": None,
            "center_input_sample": False,
            "conv_in_kernel": 3,
            "conv_out_kernel": 3,
            "resnet_skip_time_act": False,
            "resnet_out_scale_factor": 1.0,
            "attention_type": "default",
            "reverse_transformer_layers_per_block": None,
            "dropout": 0.0,
        }
        for key, expected in unsupported.items():
            value = c.get(key)
            if value is not None and value != expected:
                raise ValueError(f"unsupported U-Net setting {key}={c[key]!r} (supported: {expected!r})")
        for key in ("cross_attention_dim", "layers_per_block", "transformer_layers_per_block"):
            if not isinstance(c.get(key, 1), int):
                raise ValueError(f"unsupported U-Net setting {key}={c[key]!r}: per-block values are not supported")
        heads = c.get("num_attention_heads") or c.get("attention_head_dim", 8)
        kwargs: dict[str, Any] = dict(
            in_channels=max(cls.in_channels, c.get("in_channels", 4)),
            pretrained_in_channels=c.get("in_channels", 4),
            out_channels=c.get("out_channels", 4),
            block_out_channels=tuple(c.get("block_out_channels", (320, 640, 1280, 1280))),
            down_block_types=tuple(c.get("down_block_types", cls.down_block_types)),
            up_block_types=tuple(c.get("up_block_types", cls.up_block_types)),
            layers_per_block=c.get("layers_per_block", 2),
            num_attention_heads=heads if isinstance(heads, int) else tuple(heads),
            cross_attention_dim=c.get("cross_attention_dim", 768),
            transformer_layers_per_block=c.get("transformer_layers_per_block", 1),
            use_linear_projection=bool(c.get("use_linear_projection", False)),
            norm_num_groups=c.get("norm_num_groups", 32),
            norm_eps=c.get("norm_eps", 1e-5),
            flip_sin_to_cos=c.get("flip_sin_to_cos", True),
            freq_shift=c.get("freq_shift", 0),
            downsample_padding=c.get("downsample_padding", 1),
            mid_block_scale_factor=c.get("mid_block_scale_factor", 1.0),
            motion_norm_num_groups=c.get("norm_num_groups", 32),
        )
        if motion_adapter_config is not None:
            m = dict(motion_adapter_config)
            layers = m.get("motion_layers_per_block", 2)
            if not isinstance(layers, int) or layers != kwargs["layers_per_block"]:
                raise ValueError(
                    f"motion adapter motion_layers_per_block={layers!r} does not match the U-Net's "
                    f"layers_per_block={kwargs['layers_per_block']}"
                )
            if tuple(m.get("block_out_channels", kwargs["block_out_channels"])) != kwargs["block_out_channels"]:
                raise ValueError(
                    f"motion adapter block_out_channels={m.get('block_out_channels')} do not match the "
                    f"U-Net's {kwargs['block_out_channels']}"
                )
            t_layers = m.get("motion_transformer_layers_per_block", 1)
            if not isinstance(t_layers, int):
                raise ValueError(f"per-block motion_transformer_layers_per_block={t_layers!r} is not supported")
            if m.get("conv_in_channels"):
                raise ValueError("motion adapters with their own conv_in (PIA) are not supported")
            mh = m.get("motion_num_attention_heads", 8)
            kwargs.update(
                use_motion_module=True,
                motion_num_attention_heads=mh if isinstance(mh, int) else tuple(mh),
                motion_max_seq_length=m.get("motion_max_seq_length", 32),
                motion_transformer_layers=t_layers,
                use_motion_mid_block=bool(m.get("use_motion_mid_block", True)),
            )
        kwargs.update(overrides)
        return cls(**kwargs)
