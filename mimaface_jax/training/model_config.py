"""ml_collections training config -> the model's dataclass configs and the autoencoder."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
from flax import nnx

from mimaface_jax.data.synth_motion import synth_layout
from mimaface_jax.diffusion.schedule import ScheduleConfig
from mimaface_jax.face.motion_layout import MotionLayout, facemesh_layout
from mimaface_jax.models.attention import AttentionConfig, describe_choice
from mimaface_jax.models.clip_vision import CLIPVisionConfig
from mimaface_jax.models.ica import ICAConfig
from mimaface_jax.models.mia import MIAConfig
from mimaface_jax.models.mimaface import MIMAFaceConfig
from mimaface_jax.models.space_to_depth import SpaceToDepthAutoencoder, SpaceToDepthConfig
from mimaface_jax.models.unet_config import UNetConfig
from mimaface_jax.models.vae import AutoencoderKL, VAEConfig


def dtype_of(name: str):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]


def motion_layout(config) -> MotionLayout:
    m = config.model.mia
    return synth_layout() if m.motion_layout == "synth-v1" else facemesh_layout(m.num_expression)


def latent_channels(config) -> int:
    ae = config.autoencoder
    if ae.kind == "space_to_depth":
        return 3 * ae.space_to_depth_factor ** 2
    return ae.latent_channels


def latent_downsample(config) -> int:
    ae = config.autoencoder
    if ae.kind == "space_to_depth":
        return ae.space_to_depth_factor
    return 2 ** (len(ae.vae_block_out_channels) - 1)


def attention_config(config) -> AttentionConfig:
    """The ``AttentionConfig`` of ``model.unet.attention_*`` (shared by U-Net, MIA and CLIP).

    The kernel it means on this backend (``"auto"`` resolved) is logged once per process, here
    where the model config is built, not per layer.
    """
    u = config.model.unet
    attention = AttentionConfig(
        implementation=u.attention_implementation, min_seq_len=u.attention_min_seq_len,
        chunk_q=u.attention_chunk_q, chunk_kv=u.attention_chunk_kv,
        splash_block_q=u.attention_splash_block_q, splash_block_kv=u.attention_splash_block_kv,
        splash_block_kv_compute=u.attention_splash_block_kv_compute,
    )
    line = describe_choice(attention, jax.default_backend(), dtype_of(config.precision.compute_dtype))
    if line not in _LOGGED_ATTENTION_CHOICES:
        _LOGGED_ATTENTION_CHOICES.add(line)
        logging.getLogger(__name__).info(line)
    return attention


_LOGGED_ATTENTION_CHOICES: set[str] = set()


def mimaface_config(config) -> MIMAFaceConfig:
    """The ``MIMAFaceConfig`` of a training config (raises ``ValueError`` naming the field)."""
    u, m, cl, ica = config.model.unet, config.model.mia, config.model.clip, config.model.ica
    attention = attention_config(config)
    lat = latent_channels(config)
    unet = UNetConfig(
        in_channels=3 * lat + 1, pretrained_in_channels=lat, out_channels=lat,
        block_out_channels=tuple(u.block_out_channels), down_block_types=tuple(u.down_block_types),
        up_block_types=tuple(u.up_block_types), layers_per_block=u.layers_per_block,
        num_attention_heads=u.num_attention_heads, cross_attention_dim=u.cross_attention_dim,
        transformer_layers_per_block=u.transformer_layers_per_block,
        use_linear_projection=u.use_linear_projection, norm_num_groups=u.norm_num_groups,
        use_motion_module=u.use_motion_module, motion_num_attention_heads=u.motion_num_attention_heads,
        motion_max_seq_length=u.motion_max_seq_length, motion_transformer_layers=u.motion_transformer_layers,
        motion_norm_num_groups=u.motion_norm_num_groups, remat_policy=u.remat_policy,
        remat_scope=u.remat_scope, attention=attention,
    )
    clip = None
    num_tokens, clip_width = cl.num_tokens, cl.hidden_size
    if cl.enabled:
        clip = CLIPVisionConfig(image_size=cl.image_size, patch_size=cl.patch_size, hidden_size=cl.hidden_size,
                                num_hidden_layers=cl.num_hidden_layers, num_attention_heads=cl.num_attention_heads,
                                intermediate_size=cl.intermediate_size, attention=attention)
        num_tokens = clip.num_positions
    mia = MIAConfig(
        clip_width=clip_width, num_clip_tokens=num_tokens, context_dim=u.cross_attention_dim,
        num_heads=m.num_heads, motion_layout=motion_layout(config), motion_hidden=m.motion_hidden,
        identity_dim=m.identity_dim, identity_hidden=m.identity_hidden,
        num_identity_tokens=m.num_identity_tokens, mapper_layers=m.mapper_layers,
        mapper_mlp_ratio=m.mapper_mlp_ratio, motion_modulation=m.motion_modulation,
        identity_modulation=m.identity_modulation, context=m.context, attention=attention,
    )
    return MIMAFaceConfig(
        unet=unet, mia=mia, clip=clip,
        ica=ICAConfig(k_max=ica.k_max, mode=ica.mode, p_no_context=ica.p_no_context,
                      context_noise_std=ica.context_noise_std, generation_k=ica.generation_k),
        num_frames=config.model.num_frames,
        schedule=ScheduleConfig(prediction_type=config.model.prediction_type),
        min_snr_gamma=config.model.min_snr_gamma if config.model.min_snr_gamma > 0 else None,
        cond_dropout=config.model.cond_dropout,
        train_timesteps=tuple(int(t) for t in config.model.train_timesteps),
        clip_trainable=cl.trainable,
    )


def make_autoencoder(config, rngs: nnx.Rngs | None = None):
    """The frozen autoencoder: ``SpaceToDepthAutoencoder`` (no params) or ``AutoencoderKL``."""
    ae = config.autoencoder
    if ae.kind == "space_to_depth":
        return SpaceToDepthAutoencoder(SpaceToDepthConfig(factor=ae.space_to_depth_factor,
                                                          scaling_factor=ae.scaling_factor))
    vae = VAEConfig(block_out_channels=tuple(ae.vae_block_out_channels), layers_per_block=ae.vae_layers_per_block,
                    latent_channels=ae.latent_channels, norm_num_groups=ae.vae_norm_num_groups,
                    scaling_factor=ae.scaling_factor)
    return AutoencoderKL(vae, dtype=dtype_of(config.precision.compute_dtype), rngs=rngs or nnx.Rngs(0))
