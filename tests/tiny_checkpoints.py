"""Tiny random checkpoints written by the reference libraries, shared by importer/convert tests.

Each factory builds a small torch model with diffusers / transformers, randomises what their
initialisers leave at a constant (norms, biases, zero-initialised projections) so that a
swapped or mis-mapped tensor cannot go unnoticed, and saves it with ``save_pretrained``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from safetensors.numpy import load_file, save_file

DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
CTX_DIM = 32


def _randomise(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            if "motion_modules" in name and "proj_out" in name:
                p.normal_(0.0, 0.2)


def make_tiny_unet(path: Path, *, layers_per_block: int, seed: int):
    """A tiny ``UNet2DConditionModel`` + ``MotionAdapter`` under ``path``.

    Returns (unet_dir, motion_dir, reference ``UNetMotionModel``).
    """
    torch.manual_seed(seed)
    unet2d = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64),
        layers_per_block=layers_per_block, norm_num_groups=8, cross_attention_dim=CTX_DIM,
        attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    adapter = MotionAdapter(
        block_out_channels=(32, 64), motion_layers_per_block=layers_per_block,
        motion_num_attention_heads=4, motion_norm_num_groups=8, motion_max_seq_length=32,
        use_motion_mid_block=False)
    _randomise(unet2d)
    _randomise(adapter)
    unet_dir, motion_dir = Path(path) / "unet", Path(path) / "motion_adapter"
    unet2d.save_pretrained(unet_dir, safe_serialization=True)
    adapter.save_pretrained(motion_dir, safe_serialization=True)
    return unet_dir, motion_dir, UNetMotionModel.from_unet2d(unet2d, adapter).eval()


def to_original_animatediff_layout(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """MotionAdapter keys -> original AnimateDiff keys (written independently of the importer).

    ``motion_modules.J.X`` -> ``motion_modules.J.temporal_transformer.X``; ``attn1/2`` ->
    ``attention_blocks.0/1``; ``norm1/2/3`` -> ``norms.0/1`` / ``ff_norm``; the block's one
    ``pos_embed.pe`` -> a ``pos_encoder.pe`` in each attention block.
    """
    out = {}
    for key, value in tensors.items():
        parts = key.split(".")
        i = parts.index("motion_modules") + 2
        head = ".".join(parts[:i] + ["temporal_transformer"])
        tail = ".".join(parts[i:])
        if tail.endswith("pos_embed.pe"):
            block = tail[: -len("pos_embed.pe")]
            for a in (0, 1):
                out[f"{head}.{block}attention_blocks.{a}.pos_encoder.pe"] = value
            continue
        for ours, theirs in (("attn1.", "attention_blocks.0."), ("attn2.", "attention_blocks.1."),
                             ("norm1.", "norms.0."), ("norm2.", "norms.1."), ("norm3.", "ff_norm.")):
            tail = tail.replace(ours, theirs)
        out[f"{head}.{tail}"] = value
    return out


def write_original_motion_file(motion_dir: Path, out_file: Path) -> Path:
    """The MotionAdapter folder's weights re-saved in the original single-file layout."""
    tensors = load_file(str(Path(motion_dir) / DIFFUSERS_WEIGHTS))
    save_file(to_original_animatediff_layout(tensors), str(out_file))
    return out_file


def make_tiny_vae(folder: Path, *, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                          up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1,
                          norm_num_groups=4)
    _randomise(model)
    model.save_pretrained(folder, safe_serialization=True)
    return Path(folder)


TINY_CLIP_VISION = dict(image_size=28, patch_size=7, hidden_size=32, intermediate_size=64,
                        num_hidden_layers=2, num_attention_heads=4)


def make_tiny_clip_vision(folder: Path, *, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**TINY_CLIP_VISION))
    _randomise(model)
    model.save_pretrained(folder, safe_serialization=True)
    return Path(folder)


def edited_copy(src: Path, dst: Path, *, weights: str = DIFFUSERS_WEIGHTS,
                edit_weights=None, edit_config=None) -> Path:
    """Copies a checkpoint folder with ``edit_weights(tensors)`` / ``edit_config(cfg)`` applied."""
    shutil.copytree(src, dst)
    if edit_config is not None:
        config = json.loads((dst / "config.json").read_text())
        edit_config(config)
        (dst / "config.json").write_text(json.dumps(config))
    if edit_weights is not None:
        tensors = load_file(str(dst / weights))
        edit_weights(tensors)
        save_file(tensors, str(dst / weights), metadata={"format": "pt"})
    return dst
