"""A tiny random video model (``configs/tiny.py:video_min``, 32x32, F = 4, K = 2) shared by the
inference tests. Its motion modules' zero-initialised output projections are randomised, so
that frames really interact through the temporal attention (a test of masking would pass
trivially otherwise)."""

import importlib.util
import pathlib
import sys

import jax
import numpy as np
import pytest

from face_video_fixtures import astronaut, face_videos, kit  # noqa: F401

REPO = pathlib.Path(__file__).resolve().parents[2]


def load_config(name, *args):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(*args)


def live_motion_modules(params: dict, seed: int = 0) -> dict:
    """``params`` with every motion module's ``proj_out`` set to N(0, 0.2^2) (numpy)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, value in params.items():
        value = np.asarray(value)
        if "motion_modules" in name and "proj_out" in name:
            value = (0.2 * rng.standard_normal(value.shape)).astype(value.dtype)
        out[name] = value
    return out


class TinyModel:
    def __init__(self, config):
        from mimaface_jax.training import mesh_and_model

        self.config = config
        self.mesh, self.rules = mesh_and_model.build_mesh(config)
        self.model = mesh_and_model.abstract_model(config, self.mesh, self.rules)
        params, self.ae_params = mesh_and_model.init_params(config, self.model, self.mesh, self.rules)
        self.params = {n: jax.device_put(v, self.model.shardings[n])
                       for n, v in live_motion_modules(params).items()}

    def generator(self, **overrides):
        from mimaface_jax.inference.generator import ClipGenerator, GenerationSettings

        settings = GenerationSettings.from_config(self.config, **overrides)
        return ClipGenerator(self.config, self.model, self.params, self.ae_params, self.mesh, self.rules, settings)


@pytest.fixture(scope="session")
def tiny_video():
    return TinyModel(load_config("tiny", "video_min"))
