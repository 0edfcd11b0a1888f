"""Imports a diffusers ``AutoencoderKL`` folder (``config.json`` + ``diffusion_pytorch_model.safetensors``).

Key names are diffusers' current ones; the legacy attention names of older VAE files
(``query`` / ``key`` / ``value`` / ``proj_attn`` in the mid blocks) are renamed to
``to_q`` / ``to_k`` / ``to_v`` / ``to_out.0`` first, as diffusers itself does on load.
"""

from __future__ import annotations

import os
import re

import jax.numpy as jnp
from flax import nnx

from mimaface_jax.importers.common import (CheckpointConfigError, WeightImportError, apply_plan, build_default_plan,
                                           load_json, load_safetensors_folder)
from mimaface_jax.models.attention import AttentionConfig
from mimaface_jax.models.vae import AutoencoderKL, VAEConfig

# diffusers' AutoencoderKL defaults, used for fields a config.json omits.
_DIFFUSERS_DEFAULTS = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(64,),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=32,
    scaling_factor=0.18215,
    use_quant_conv=True,
    use_post_quant_conv=True,
    mid_block_add_attention=True,
)
_LEGACY_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_LEGACY_PATTERN = re.compile(r"^(.*mid_block\.attentions\.\d+\.)(query|key|value|proj_attn)(\.(?:weight|bias))$")


def vae_config_from_diffusers(
    cfg: dict, *, source: str = "config.json", attention: AttentionConfig = AttentionConfig()
) -> VAEConfig:
    """Our :class:`VAEConfig` from a diffusers ``AutoencoderKL`` config dict."""
    class_name = cfg.get("_class_name", "AutoencoderKL")
    if class_name != "AutoencoderKL":
        raise CheckpointConfigError(f"{source}: _class_name is {class_name!r}; expected 'AutoencoderKL'")
    problems = []
    n = len(cfg.get("block_out_channels", _DIFFUSERS_DEFAULTS["block_out_channels"]))
    for field, block in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")):
        types = tuple(cfg.get(field, (block,)))
        if types != (block,) * n:
            problems.append(f"{field} must be {n} x {block!r}, got {list(types)}")
    if cfg.get("act_fn", "silu") != "silu":
        problems.append(f"act_fn must be 'silu', got {cfg['act_fn']!r}")
    for field in ("shift_factor", "latents_mean", "latents_std"):
        if cfg.get(field) is not None:
            problems.append(f"{field}={cfg[field]!r} is not supported (SD-1.5 VAEs have none)")
    if problems:
        raise CheckpointConfigError(f"{source}: unsupported AutoencoderKL config: " + "; ".join(problems))
    fields = {name: cfg.get(name, default) for name, default in _DIFFUSERS_DEFAULTS.items()}
    fields["block_out_channels"] = tuple(fields["block_out_channels"])
    return VAEConfig(**fields, attention=attention)


def _to_diffusers_key(key: str) -> str:
    """Default torch key of one of our leaves -> the diffusers key."""
    key = key.replace(".downsample.", ".downsamplers.0.").replace(".upsample.", ".upsamplers.0.")
    key = key.replace(".mid_block.attention.", ".mid_block.attentions.0.")
    return key.replace(".to_out.", ".to_out.0.")


def _rename_legacy_attention(tensors: dict, source: str) -> dict:
    """Old diffusers names of the mid-block attention (query/key/value/proj_attn) -> current."""
    renamed = {}
    for key, value in tensors.items():
        match = _LEGACY_PATTERN.match(key)
        if match:
            key = match.group(1) + _LEGACY_ATTENTION[match.group(2)] + match.group(3)
        if key in renamed:
            raise WeightImportError(source, other=[f"both the legacy and the current name of {key} are in "
                                                   "the checkpoint"])
        renamed[key] = value
    return renamed


def import_vae_state(folder: str | os.PathLike, config: VAEConfig, *, param_dtype=jnp.float32) -> nnx.State:
    """The parameter state of :class:`AutoencoderKL` filled from ``folder``'s safetensors."""
    abstract = nnx.eval_shape(lambda: AutoencoderKL(config, param_dtype=param_dtype, rngs=nnx.Rngs(0)))
    abstract_state = nnx.state(abstract)
    tensors, source = load_safetensors_folder(folder, base_names=("diffusion_pytorch_model",))
    return apply_plan(
        abstract_state,
        build_default_plan(abstract_state, rename=_to_diffusers_key),
        _rename_legacy_attention(tensors, source),
        source=source,
        hint="expected a diffusers AutoencoderKL checkpoint whose config.json matches its weights",
    )


def load_vae(
    folder: str | os.PathLike,
    *,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    attention: AttentionConfig = AttentionConfig(),
) -> tuple[VAEConfig, AutoencoderKL]:
    """Reads ``folder/config.json`` and the weights; returns ``(config, model)``."""
    config_path = os.path.join(os.fspath(folder), "config.json")
    config = vae_config_from_diffusers(load_json(config_path), source=config_path, attention=attention)
    state = import_vae_state(folder, config, param_dtype=param_dtype)
    abstract = nnx.eval_shape(lambda: AutoencoderKL(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)))
    graphdef, _ = nnx.split(abstract)
    return config, nnx.merge(graphdef, state)
