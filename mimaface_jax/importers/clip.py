"""Imports the vision tower of an HF CLIP folder (``config.json`` + ``model.safetensors``).

Accepted folders: ``CLIPVisionModel`` / ``CLIPVisionModelWithProjection`` (model_type
``clip_vision_model``) and ``CLIPModel`` (model_type ``clip``: the vision settings are its
``vision_config``). Only ``vision_model.*`` tensors are used. The text tower (``text_model.*``),
the projections (``visual_projection``, ``text_projection``), ``logit_scale`` and the
``position_ids`` buffers that older checkpoints store are ignored on purpose; any other key,
including an unknown ``vision_model.*`` key, is an error.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
from flax import nnx

from mimaface_jax.importers.common import (CheckpointConfigError, apply_plan, build_default_plan, load_json,
                                           load_safetensors_folder)
from mimaface_jax.models.attention import AttentionConfig
from mimaface_jax.models.clip_vision import CLIPVisionConfig, CLIPVisionModel

PREFIX = "vision_model."

# transformers' CLIPVisionConfig defaults (ViT-B/32), used for fields a config.json omits.
_HF_VISION_DEFAULTS = dict(
    image_size=224,
    patch_size=32,
    num_channels=3,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
)
_IGNORED_PREFIXES = ("text_model.",)
_IGNORED_KEYS = ("text_projection.weight", "visual_projection.weight", "logit_scale")


def clip_vision_config_from_hf(
    hf_config: dict, *, source: str = "config.json", attention: AttentionConfig = AttentionConfig()
) -> CLIPVisionConfig:
    """Our :class:`CLIPVisionConfig` from an HF ``config.json`` dict."""
    model_type = hf_config.get("model_type")
    if model_type == "clip":
        vision = hf_config.get("vision_config") or {}
    elif model_type == "clip_vision_model":
        vision = hf_config
    else:
        raise CheckpointConfigError(
            f"{source}: model_type {model_type!r} is not a CLIP model; expected 'clip' (CLIPModel) or "
            "'clip_vision_model' (CLIPVisionModel)"
        )
    fields = {name: vision.get(name, default) for name, default in _HF_VISION_DEFAULTS.items()}
    try:
        return CLIPVisionConfig(**fields, attention=attention)
    except ValueError as e:
        raise CheckpointConfigError(f"{source}: {e}") from e


def _to_hf_key(key: str) -> str:
    """Default torch key of one of our leaves -> the HF key (``vision_model.`` prefixed)."""
    if key.startswith("layers."):
        key = "encoder." + key
    if key == "embeddings.position_embedding":
        key += ".weight"  # an nn.Embedding in HF, a plain table here
    return PREFIX + key


def _ignored_keys(tensors) -> list[str]:
    return [
        k
        for k in tensors
        if k.startswith(_IGNORED_PREFIXES) or k in _IGNORED_KEYS or k.endswith("embeddings.position_ids")
    ]


def import_clip_vision_state(
    folder: str | os.PathLike, config: CLIPVisionConfig, *, param_dtype=jnp.float32
) -> nnx.State:
    """The parameter state of :class:`CLIPVisionModel` filled from ``folder``'s safetensors."""
    abstract = nnx.eval_shape(lambda: CLIPVisionModel(config, param_dtype=param_dtype, rngs=nnx.Rngs(0)))
    abstract_state = nnx.state(abstract)
    tensors, source = load_safetensors_folder(folder, base_names=("model",))
    return apply_plan(
        abstract_state,
        build_default_plan(abstract_state, rename=_to_hf_key),
        tensors,
        source=source,
        ignored_keys=_ignored_keys(tensors),
        hint="expected an HF CLIPVisionModel / CLIPModel checkpoint whose config.json matches its weights",
    )


def load_clip_vision(
    folder: str | os.PathLike,
    *,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    attention: AttentionConfig = AttentionConfig(),
) -> tuple[CLIPVisionConfig, CLIPVisionModel]:
    """Reads ``folder/config.json`` and the weights; returns ``(config, model)``."""
    config_path = os.path.join(os.fspath(folder), "config.json")
    config = clip_vision_config_from_hf(load_json(config_path), source=config_path, attention=attention)
    state = import_clip_vision_state(folder, config, param_dtype=param_dtype)
    abstract = nnx.eval_shape(
        lambda: CLIPVisionModel(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0))
    )
    graphdef, _ = nnx.split(abstract)
    return config, nnx.merge(graphdef, state)
