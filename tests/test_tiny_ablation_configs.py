"""configs/tiny.py's training-time ablations (scripts/ablate.sh): each is the demo's config with
exactly the component it ablates removed, and each builds a valid model."""

from __future__ import annotations

from pathlib import Path

import jax
import pytest

from mimaface_jax.config_files import load_config
from mimaface_jax.config_validation import validate
from mimaface_jax.training.mesh_and_model import abstract_model, build_mesh

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.py"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _changed(variant: str, reference: str) -> dict:
    a, b = _flat(load_config(TINY, variant).to_dict()), _flat(load_config(TINY, reference).to_dict())
    return {k: (b[k], a[k]) for k in a if a[k] != b[k] and k != "name"}


def test_ablations_change_only_what_they_ablate():
    assert _changed("video_no_ica", "video") == {
        "model.ica.k_max": (2, 0), "model.ica.generation_k": (2, 0), "sample.source_as_context": (True, False)}
    mia_off = {"model.mia.motion_modulation": (True, False), "model.mia.identity_modulation": (True, False)}
    assert _changed("video_no_mia", "video") == mia_off
    assert _changed("image_no_mia", "image") == mia_off


def _param_names(variant: str, stage1_dir: Path) -> set[str]:
    config = load_config(TINY, variant)
    config.data.global_batch_size = 8                       # the suite's 8 fake devices
    if config.stage == "video":
        config.init.stage1_checkpoint = str(stage1_dir)     # required by stage 2, not read here
    validate(config, jax.device_count())
    mesh, rules = build_mesh(config)
    return set(abstract_model(config, mesh, rules).abstract_params)


@pytest.mark.parametrize("variant,reference", [("video_no_mia", "video"), ("image_no_mia", "image")])
def test_no_mia_model_has_no_motion_or_identity_modulation(variant, reference, tmp_path):
    full, ablated = _param_names(reference, tmp_path), _param_names(variant, tmp_path)
    removed = full - ablated
    assert ablated < full
    assert removed and all(".mia." in f".{name}." or name.startswith("mia") for name in removed), sorted(removed)[:5]
    assert any("motion" in name for name in removed) and any("identity" in name for name in removed)


def test_no_ica_model_has_the_full_stage_2_parameters(tmp_path):
    # same parameters: the stage-2 init from a stage-1 checkpoint and the U-Net's conv_in are unchanged
    assert _param_names("video_no_ica", tmp_path) == _param_names("video", tmp_path)
