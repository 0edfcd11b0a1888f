"""`python -m mimaface_jax.convert`: imports, --verify against the PyTorch references, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from mimaface_jax.importers.pretrained_store import read_meta, restore_component
from mimaface_jax.importers.unet import import_unet_state
from mimaface_jax.importers.vae import load_vae
from mimaface_jax.importers.clip import load_clip_vision
from tiny_checkpoints import (edited_copy, make_tiny_clip_vision,
                              make_tiny_unet, make_tiny_vae, write_original_motion_file)

REPO = Path(__file__).resolve().parents[1]


def convert(*args, timeout=900):
    """Runs the CLI in a fresh process, as a user would."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    return subprocess.run([sys.executable, "-m", "mimaface_jax.convert", *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def last_line_diff(result) -> float:
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("max_abs_diff="), result.stdout + result.stderr
    return float(last.split("=", 1)[1])


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert_sources")
    unet_dir, motion_dir, _ = make_tiny_unet(root / "sd", layers_per_block=1, seed=3)
    assert unet_dir == root / "sd" / "unet"              # SD folder layout: sd/unet, sd/vae
    make_tiny_vae(root / "sd" / "vae", seed=4)
    make_tiny_clip_vision(root / "clip", seed=5)
    original = write_original_motion_file(motion_dir, root / "mm_v3_tiny.safetensors")
    return {"root": root, "sd": root / "sd", "unet": root / "sd" / "unet",
            "motion_dir": motion_dir, "motion_file": original, "vae": root / "sd" / "vae",
            "clip": root / "clip"}


@pytest.mark.parametrize("motion", ["motion_dir", "motion_file"])
def test_unet_verify_passes_and_checkpoint_restores_bit_identical(sources, tmp_path, motion):
    out = tmp_path / "unet_ckpt"
    result = convert("unet", "--unet", sources["unet"], "--motion-module", sources[motion],
                     "--out", out, "--verify")
    assert result.returncode == 0, result.stderr
    assert last_line_diff(result) <= 1e-4
    assert read_meta(out)["components"] == ["unet"]
    _, _, state = import_unet_state(sources["unet"], sources[motion])
    restored = restore_component(out, "unet", state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_unet_with_renamed_key_names_it_and_writes_nothing(sources, tmp_path):
    key = "down_blocks.0.attentions.0.proj_in.weight"

    def rename(tensors):
        tensors["down_blocks.0.attentions.0.proj_inn.weight"] = tensors.pop(key)

    bad = edited_copy(sources["unet"], tmp_path / "bad_unet", edit_weights=rename)
    out = tmp_path / "out"
    result = convert("unet", "--unet", bad, "--motion-module", sources["motion_dir"], "--out", out)
    assert result.returncode != 0
    assert key in result.stderr and "proj_inn" in result.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad_unet"]


def test_unet_with_misshaped_key_names_it_and_writes_nothing(sources, tmp_path):
    key = "up_blocks.1.resnets.0.conv1.bias"

    def widen(tensors):
        tensors[key] = np.concatenate([tensors[key], tensors[key]])

    bad = edited_copy(sources["unet"], tmp_path / "bad_unet", edit_weights=widen)
    result = convert("unet", "--unet", bad, "--out", tmp_path / "out")
    assert result.returncode != 0 and key in result.stderr
    assert not (tmp_path / "out").exists()


def test_all_verify_every_component_and_restore_bit_identical(sources, tmp_path):
    out = tmp_path / "pretrained"
    result = convert("all", "--sd", sources["sd"], "--motion-module", sources["motion_file"],
                     "--clip", sources["clip"], "--out", out, "--verify")
    assert result.returncode == 0, result.stderr
    per_component = {line.split()[0]: float(line.split("=")[1])
                     for line in result.stdout.splitlines() if " max_abs_diff=" in line}
    assert sorted(per_component) == ["clip", "unet", "vae"]
    assert all(d <= 1e-4 for d in per_component.values()), per_component
    assert last_line_diff(result) == pytest.approx(max(per_component.values()), rel=1e-3)
    assert read_meta(out)["components"] == ["clip", "unet", "vae"]
    expected = {"vae": nnx.state(load_vae(sources["vae"])[1], nnx.Param),
                "clip": nnx.state(load_clip_vision(sources["clip"])[1], nnx.Param),
                "unet": import_unet_state(sources["unet"], sources["motion_file"])[2]}
    for name, state in expected.items():
        restored = restore_component(out, name, state)
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_all_with_missing_component_folder_names_it(sources, tmp_path):
    sd = tmp_path / "sd_without_vae"
    sd.mkdir()
    os.symlink(sources["unet"], sd / "unet")
    result = convert("all", "--sd", sd, "--motion-module", sources["motion_file"],
                     "--clip", sources["clip"], "--out", tmp_path / "out")
    assert result.returncode != 0
    assert "SD-1.5 vae folder not found" in result.stderr and str(sd / "vae") in result.stderr
    assert not (tmp_path / "out").exists()


def test_all_with_wrong_shaped_clip_tensor_names_it(sources, tmp_path):
    key = "vision_model.encoder.layers.1.mlp.fc1.weight"

    def truncate(tensors):
        tensors[key] = tensors[key][:-1]

    bad = edited_copy(sources["clip"], tmp_path / "clip", weights="model.safetensors",
                      edit_weights=truncate)
    result = convert("all", "--sd", sources["sd"], "--motion-module", sources["motion_file"],
                     "--clip", bad, "--out", tmp_path / "out")
    assert result.returncode != 0 and key in result.stderr
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_and_kept(sources, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result = convert("vae", "--vae", sources["vae"], "--out", out)
    assert result.returncode != 0 and "already exists" in result.stderr
    assert (out / "mine.txt").read_text() == "keep"


def _one_line_error(result, command: str) -> str:
    """The CLI's bad-input contract: exit 2, one stderr line 'convert <command>: ...', no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"convert {command}: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_weights_folder_without_safetensors_is_one_line_error(sources, tmp_path):
    vae = Path(shutil.copytree(sources["vae"], tmp_path / "vae"))
    (vae / "diffusion_pytorch_model.safetensors").rename(vae / "diffusion_pytorch_model.bin")
    out = tmp_path / "out"
    line = _one_line_error(convert("vae", "--vae", vae, "--out", out), "vae")
    assert f"{vae} has no diffusion_pytorch_model.safetensors" in line
    assert "diffusion_pytorch_model.bin" in line                      # says what is there
    assert not out.exists()


@pytest.mark.parametrize("component, field, value, expected", [
    ("unet", "upcast_attention", True, "unsupported U-Net setting upcast_attention=True"),
    ("vae", "act_fn", "gelu", "unsupported AutoencoderKL config: act_fn must be 'silu', got 'gelu'"),
])
def test_unsupported_config_field_is_one_line_error(sources, tmp_path, component, field, value, expected):
    bad = edited_copy(sources[component], tmp_path / component,
                      edit_config=lambda cfg: cfg.__setitem__(field, value))
    out = tmp_path / "out"
    line = _one_line_error(convert(component, f"--{component}", bad, "--out", out), component)
    assert str(bad / "config.json") in line and expected in line
    assert not out.exists()


@pytest.mark.parametrize("component, perturbed_tensor, shift", [
    ("vae", "decoder.conv_out.bias", 0.05),                          # moves every decoded pixel
    ("clip", "vision_model.encoder.layers.1.mlp.fc2.bias", 0.03),    # moves every output token
])
def test_failed_verify_exits_1_and_writes_nothing(sources, tmp_path, monkeypatch, capsys,
                                                  component, perturbed_tensor, shift):
    """--verify against a reference whose one tensor is shifted by ``shift``: the real verify
    path (reference built from the files, compared on random inputs) reports a diff of about
    ``shift``, exits 1 and writes nothing. The reference class's loader is patched in-process."""
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionModel

    from mimaface_jax import convert as convert_module

    cls = {"vae": AutoencoderKL, "clip": CLIPVisionModel}[component]
    load = cls.from_pretrained.__func__

    def perturbed(klass, *args, **kwargs):
        model = load(klass, *args, **kwargs)
        with torch.no_grad():
            model.get_parameter(perturbed_tensor).add_(shift)
        return model

    monkeypatch.setattr(cls, "from_pretrained", classmethod(perturbed))
    out = tmp_path / "out"
    status = convert_module.main([component, f"--{component}", str(sources[component]),
                                  "--out", str(out), "--verify"])
    captured = capsys.readouterr()
    assert status == 1, captured.out + captured.err
    diff = float(captured.out.strip().splitlines()[-1].split("max_abs_diff=", 1)[1])
    assert shift * 0.8 < diff < shift * 1.2, diff
    assert "verification failed" in captured.err and "nothing written" in captured.err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_vae_with_legacy_and_current_attention_names_is_reported_without_traceback(sources, tmp_path):
    current = "decoder.mid_block.attentions.0.to_q.weight"

    def duplicate(tensors):
        tensors["decoder.mid_block.attentions.0.query.weight"] = tensors[current].copy()

    bad = edited_copy(sources["vae"], tmp_path / "vae", edit_weights=duplicate)
    result = convert("vae", "--vae", bad, "--out", tmp_path / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("convert vae: cannot import weights from ")
    assert f"both the legacy and the current name of {current}" in result.stderr
    assert not (tmp_path / "out").exists()
