"""PyTorch reference models built from the same files an importer read (for ``--verify``).

Needs the optional ``parity`` extra (torch + diffusers). Each ``compare_*`` builds the
reference with the reference library's own loading code, runs it and the imported NNX model
on the same random inputs (fp32, CPU) and returns the max absolute difference of the outputs.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from mimaface_jax.importers.common import load_safetensors


class ReferenceUnavailableError(RuntimeError):
    pass


def _torch():
    try:
        import torch
    except ModuleNotFoundError as e:
        raise ReferenceUnavailableError(
            "--verify needs the PyTorch references: install the parity extra "
            "(pip install -e '.[parity]' or bash scripts/install.sh test)") from e
    return torch


def _nchw(x: np.ndarray):
    return _torch().from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def _max_abs_diff(ours, ref) -> float:
    return float(np.max(np.abs(np.asarray(ours, np.float64) - np.asarray(ref, np.float64))))


def _reference_motion_adapter(motion_path: str, config):
    """diffusers' MotionAdapter from a MotionAdapter folder or an AnimateDiff single file."""
    from diffusers import MotionAdapter
    if os.path.isdir(motion_path):
        return MotionAdapter.from_pretrained(motion_path)
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers
    tensors = {k: _torch().from_numpy(np.array(v)) for k, v in load_safetensors(motion_path).items()}
    converted = convert_animatediff_checkpoint_to_diffusers(tensors)
    adapter = MotionAdapter(
        block_out_channels=tuple(config.block_out_channels),
        motion_layers_per_block=config.layers_per_block,
        motion_mid_block_layers_per_block=1,
        motion_num_attention_heads=config.motion_num_attention_heads,
        motion_norm_num_groups=config.motion_norm_num_groups,
        motion_max_seq_length=config.motion_max_seq_length,
        use_motion_mid_block=config.use_motion_mid_block,
    )
    # diffusers' converter drops the positional tables, which the adapter computes itself.
    result = adapter.load_state_dict(converted, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("pos_embed.pe")]
    if missing or result.unexpected_keys:
        raise ReferenceUnavailableError(
            f"diffusers cannot build a MotionAdapter from {motion_path}: missing {missing}, "
            f"unexpected {result.unexpected_keys}")
    return adapter


def compare_unet(unet_dir: str, motion_path: str | None, config, model, *, num_frames: int,
                 size: int = 16, seed: int = 0) -> float:
    """diffusers UNet2DConditionModel (+ MotionAdapter -> UNetMotionModel) vs ``model``."""
    torch = _torch()
    from diffusers import UNet2DConditionModel, UNetMotionModel
    reference = UNet2DConditionModel.from_pretrained(unet_dir)
    if motion_path is not None:
        reference = UNetMotionModel.from_unet2d(reference, _reference_motion_adapter(motion_path, config))
    reference = reference.eval().float()
    rng = np.random.default_rng(seed)
    pretrained_in = reference.config.in_channels
    sample = rng.standard_normal((num_frames, size, size, pretrained_in)).astype(np.float32)
    context = rng.standard_normal((1, 7, config.cross_attention_dim)).astype(np.float32)
    t = np.array([int(rng.integers(0, 1000))])
    with torch.no_grad():
        if motion_path is not None:   # (B, C, F, H, W); diffusers takes the context per frame
            x = _nchw(sample).permute(1, 0, 2, 3).unsqueeze(0)
            ref = reference(x, torch.from_numpy(t),
                            torch.from_numpy(context).repeat(num_frames, 1, 1)).sample
            ref = ref[0].permute(1, 2, 3, 0).numpy()               # (F, H, W, C)
        else:
            ref = reference(_nchw(sample), torch.from_numpy(t).repeat(num_frames),
                            torch.from_numpy(context).repeat(num_frames, 1, 1)).sample
            ref = ref.permute(0, 2, 3, 1).numpy()
    padded = np.zeros((num_frames, size, size, config.in_channels), np.float32)
    padded[..., :pretrained_in] = sample                              # extra channels zero
    ours = model(jnp.asarray(padded), jnp.asarray(np.repeat(t, num_frames)),
                 jnp.asarray(np.repeat(context, num_frames, axis=0)), num_frames=num_frames)
    return _max_abs_diff(ours, ref)


def compare_vae(vae_dir: str, model, *, size: int = 64, seed: int = 0) -> float:
    """diffusers AutoencoderKL vs ``model``: moments of encode, and decode of the mean."""
    torch = _torch()
    from diffusers import AutoencoderKL
    reference = AutoencoderKL.from_pretrained(vae_dir).eval().float()
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (1, size, size, reference.config.in_channels)).astype(np.float32)
    with torch.no_grad():
        dist = reference.encode(_nchw(x)).latent_dist
        decoded = reference.decode(dist.mean).sample
    mean, logvar = model.encode(jnp.asarray(x))
    ours_decoded = model.decode(mean)
    nhwc = lambda t: t.permute(0, 2, 3, 1).numpy()
    return max(_max_abs_diff(mean, nhwc(dist.mean)), _max_abs_diff(logvar, nhwc(dist.logvar)),
               _max_abs_diff(ours_decoded, nhwc(decoded)))


def compare_clip(clip_dir: str, model, config, *, seed: int = 0) -> float:
    """transformers CLIPVisionModel (read from a CLIPModel or CLIPVisionModel folder) vs ``model``."""
    torch = _torch()
    from transformers import CLIPVisionModel
    reference = CLIPVisionModel.from_pretrained(clip_dir).eval().float()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, config.image_size, config.image_size, 3)).astype(np.float32)
    with torch.no_grad():
        ref = reference(pixel_values=_nchw(x)).last_hidden_state.numpy()
    return _max_abs_diff(model(jnp.asarray(x)), ref)


def highest_precision():
    """fp32 matmuls on every backend while verifying."""
    jax.config.update("jax_default_matmul_precision", "highest")
