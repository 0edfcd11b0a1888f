"""Import SD-1.5 U-Net + AnimateDiff motion modules into the NNX :class:`UNet3D`.

Sources:
* the 2-D U-Net: a diffusers ``UNet2DConditionModel`` folder (``config.json`` +
  ``diffusion_pytorch_model.safetensors``);
* the motion modules, either a diffusers ``MotionAdapter`` folder (same two files; keys
  ``down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.weight``, ``...norm1``,
  ``...pos_embed.pe``) or an original AnimateDiff single ``.safetensors`` file (keys
  ``down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight``,
  ``...norms.0``, ``...ff_norm``, ``...attention_blocks.0.pos_encoder.pe``).

The pretrained ``conv_in`` (4 input channels) is extended to the config's ``in_channels``
(13) with zero weights for the extra channels, so the extended model computes exactly what
the pretrained one does on its first 4 channels.

Positional-encoding buffers (``pe``) are not parameters here (they are computed from
the frame count); the file's tables are checked against the computed ones (same length
as ``motion_max_seq_length``, max |diff| <= 1e-4) and otherwise rejected.

Every key of both files must be used (or be such a checked ``pe`` buffer); missing,
unexpected and mis-shaped keys are reported together in one ``WeightImportError``.
"""

from __future__ import annotations

import os
import re

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mimaface_jax.importers.common import (
    CheckpointConfigError,
    PlanEntry,
    WeightImportError,
    apply_plan,
    build_default_plan,
    load_json,
    load_safetensors,
    load_safetensors_folder,
    torch_conv_to_flax,
)
from mimaface_jax.models.embeddings import sinusoidal_positions
from mimaface_jax.models.unet import UNet3D
from mimaface_jax.models.unet_config import UNetConfig

# our module names -> diffusers' (applied to dotted keys)
_OUR_TO_DIFFUSERS = (
    (".ff.proj_in.", ".ff.net.0.proj."),
    (".ff.proj_out.", ".ff.net.2."),
    (".to_out.", ".to_out.0."),
)

# original AnimateDiff motion-module names -> diffusers' MotionAdapter names
_ORIGINAL_TO_DIFFUSERS = (
    (".temporal_transformer.", "."),
    (".attention_blocks.0.", ".attn1."),
    (".attention_blocks.1.", ".attn2."),
    (".norms.0.", ".norm1."),
    (".norms.1.", ".norm2."),
    (".ff_norm.", ".norm3."),
)

_PE_KEY = re.compile(r"\.(pos_embed|pos_encoder)\.pe$")
PE_ATOL = 1e-4


def _rename(key: str, table) -> str:
    for old, new in table:
        key = key.replace(old, new)
    return key


def is_original_animatediff_layout(tensors) -> bool:
    return any(".temporal_transformer." in k for k in tensors)


def original_to_diffusers_keys(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Renames an original AnimateDiff motion-module state dict to diffusers' layout."""
    out = {}
    for key, value in tensors.items():
        new = _rename(key, _ORIGINAL_TO_DIFFUSERS)
        if new in out:
            raise WeightImportError("motion modules", other=[f"keys collide after renaming: {new}"])
        out[new] = value
    return out


def read_motion_modules(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict | None, str]:
    """Reads motion-module weights in diffusers' key layout.

    ``path``: a diffusers ``MotionAdapter`` folder, or a single ``.safetensors`` file in the
    original AnimateDiff or diffusers layout. Returns ``(tensors, adapter config or None,
    description of the source)``.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        tensors, source = load_safetensors_folder(path)
        config_path = os.path.join(path, "config.json")
        config = load_json(config_path) if os.path.isfile(config_path) else None
    else:
        tensors, source, config = load_safetensors(path), path, None
    if is_original_animatediff_layout(tensors):
        tensors = original_to_diffusers_keys(tensors)
    return tensors, config, source


def _infer_motion_settings(motion: dict[str, np.ndarray]) -> dict:
    """Motion settings readable from the weights of a config-less motion file."""
    settings: dict = {"use_motion_module": True}
    settings["use_motion_mid_block"] = any(k.startswith("mid_block.motion_modules.") for k in motion)
    layers = {int(m.group(1)) for k in motion if (m := re.search(r"\.transformer_blocks\.(\d+)\.", k))}
    if layers:
        settings["motion_transformer_layers"] = max(layers) + 1
    pe_lengths = {v.shape[-2] for k, v in motion.items() if _PE_KEY.search(k)}
    if len(pe_lengths) == 1:
        settings["motion_max_seq_length"] = pe_lengths.pop()
    return settings


def unet_config_from_checkpoint(
    unet_dir: str | os.PathLike, motion_path: str | os.PathLike | None = None, **overrides
) -> UNetConfig:
    """The :class:`UNetConfig` of a diffusers U-Net folder (+ motion modules).

    Motion heads cannot be read from weights; a config-less original AnimateDiff file gets the
    AnimateDiff default (8) unless overridden.
    """
    config_path = os.path.join(os.fspath(unet_dir), "config.json")
    unet_cfg = load_json(config_path)
    if motion_path is None:
        return _from_diffusers(config_path, unet_cfg, None, {"use_motion_module": False, **overrides})
    motion, adapter_cfg, _ = read_motion_modules(motion_path)
    if adapter_cfg is not None:
        return _from_diffusers(f"{config_path} + {motion_path}", unet_cfg, adapter_cfg, overrides)
    return _from_diffusers(config_path, unet_cfg, None, {**_infer_motion_settings(motion), **overrides})


def _from_diffusers(source: str, unet_cfg: dict, adapter_cfg: dict | None, overrides: dict) -> UNetConfig:
    """``UNetConfig.from_diffusers``, whose unsupported-setting ValueError names ``source``."""
    try:
        return UNetConfig.from_diffusers(unet_cfg, adapter_cfg, **overrides)
    except ValueError as e:
        raise CheckpointConfigError(f"{source}: {e}") from e


def _conv_in_transform(in_channels: int):
    """torch conv_in (O, I0, 3, 3) -> (3, 3, in_channels, O), input channels >= I0 zero."""

    def transform(w: np.ndarray) -> np.ndarray:
        k = torch_conv_to_flax(w)
        if k.ndim != 4 or k.shape[2] > in_channels:
            raise ValueError(f"conv_in weight {w.shape} cannot be extended to {in_channels} input channels")
        pad = np.zeros(k.shape[:2] + (in_channels - k.shape[2], k.shape[3]), k.dtype)
        return np.concatenate([k, pad], axis=2)

    return transform


def _check_positional_tables(motion: dict[str, np.ndarray], config: UNetConfig) -> tuple[list[str], list[str]]:
    """Compares the file's ``pe`` buffers with the computed tables. Returns (keys, problems)."""
    keys, problems = [], []
    for key, value in motion.items():
        if not _PE_KEY.search(key):
            continue
        keys.append(key)
        table = np.asarray(value, np.float32).reshape(value.shape[-2:])
        length, dim = table.shape
        if length != config.motion_max_seq_length:
            problems.append(
                f"{key}: positional table of length {length}, config motion_max_seq_length="
                f"{config.motion_max_seq_length}"
            )
            continue
        diff = float(np.max(np.abs(table - sinusoidal_positions(length, dim))))
        if diff > PE_ATOL:
            problems.append(f"{key}: differs from the sinusoidal table by {diff:.3g} (not a sinusoidal encoding)")
    return keys, problems


def import_unet_state(
    unet_dir: str | os.PathLike,
    motion_path: str | os.PathLike | None = None,
    *,
    config: UNetConfig | None = None,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
):
    """Reads the checkpoints into an NNX state. Returns ``(config, graphdef, state)``.

    ``config`` defaults to :func:`unet_config_from_checkpoint`. Raises
    :class:`WeightImportError` (listing every bad key) if the files do not fit the model.
    """
    unet_dir = os.fspath(unet_dir)
    if config is None:
        config = unet_config_from_checkpoint(unet_dir, motion_path)
    tensors, source = load_safetensors_folder(unet_dir)
    sources = [source]
    pe_keys: list[str] = []
    problems: list[str] = []
    if motion_path is not None:
        motion, _, motion_source = read_motion_modules(motion_path)
        sources.append(motion_source)
        pe_keys, problems = _check_positional_tables(motion, config)
        clash = sorted(set(motion) & set(tensors))
        problems += [f"{k} is in both the U-Net and the motion-module file" for k in clash]
        tensors = {**tensors, **motion}

    abstract = nnx.eval_shape(lambda: UNet3D(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    plan = build_default_plan(abstract_state, rename=lambda k: _rename(k, _OUR_TO_DIFFUSERS))
    conv_in = ("conv_in", "kernel")
    plan[conv_in] = PlanEntry(plan[conv_in].source_key, _conv_in_transform(config.in_channels))
    state = apply_plan(
        abstract_state,
        plan,
        tensors,
        source=" + ".join(sources),
        ignored_keys=pe_keys,
        extra_problems=problems,
        hint="the U-Net folder must be a diffusers UNet2DConditionModel and the motion file a "
        "MotionAdapter / AnimateDiff motion-module checkpoint of the same widths and depths",
    )
    return config, graphdef, state


def import_unet(
    unet_dir: str | os.PathLike,
    motion_path: str | os.PathLike | None = None,
    *,
    config: UNetConfig | None = None,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
) -> UNet3D:
    """:func:`import_unet_state` merged into a :class:`UNet3D` module."""
    _, graphdef, state = import_unet_state(
        unet_dir, motion_path, config=config, dtype=dtype, param_dtype=param_dtype
    )
    return nnx.merge(graphdef, state)
