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


def write_workdir(config, workdir: pathlib.Path, params: dict | None = None, step: int = 0) -> pathlib.Path:
    """A training workdir as the trainer leaves it (config.json + an Orbax checkpoint of the
    train state at ``step``), without training: the state of freshly initialised (or the given)
    parameters, EMA = those parameters."""
    import json

    from mimaface_jax.config_validation import to_json_dict
    from mimaface_jax.training import checkpointing, mesh_and_model, optimizer, train_step

    workdir.mkdir(parents=True, exist_ok=True)
    config_json = to_json_dict(config)
    (workdir / "config.json").write_text(json.dumps(config_json))
    mesh, rules = mesh_and_model.build_mesh(config)
    model = mesh_and_model.abstract_model(config, mesh, rules)
    if params is None:
        params, _ = mesh_and_model.init_params(config, model, mesh, rules)
        params = live_motion_modules(params)
    params = {n: jax.device_put(np.asarray(v), model.shardings[n]) for n, v in params.items()}
    trainable, frozen = optimizer.split_trainable(model.spec.names, config)
    tx = optimizer.make_optimizer(config)
    state_abs = train_step.abstract_state(config, model, trainable, frozen, tx, mesh)
    state = train_step.initial_state(config, params, trainable, frozen, tx, state_abs)
    if step:
        state["step"] = jax.device_put(np.int32(step), state["step"].sharding)
    config.checkpoint.async_save = False
    with checkpointing.make_manager(checkpointing.checkpoint_dir(workdir), config) as manager:
        checkpointing.save(manager, step, state, {}, config_json, force=True)
        manager.wait_until_finished()
    return workdir


def fake_facemesh_dataset(root: pathlib.Path, num_expression: int = 4) -> pathlib.Path:
    """A folder that looks like a built FaceMesh dataset to ``export`` (dataset_info.json,
    metadata.json naming an expression basis fitted on random offsets)."""
    import json

    from mimaface_jax.face.expression import EXPRESSION_DIM, ExpressionPCA

    folder = root / "faces" / "1.0.0"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_info.json").write_text("{}")
    rng = np.random.default_rng(0)
    ExpressionPCA.fit(0.01 * rng.standard_normal((16, EXPRESSION_DIM)), num_expression).save(folder / "basis.npz")
    (folder / "metadata.json").write_text(json.dumps({"expression_basis": "basis.npz",
                                                      "num_expression": num_expression}))
    return folder


def facemesh_config(data_root: pathlib.Path, num_expression: int = 4):
    """``tiny.py:video_min`` with the FaceMesh motion layout over ``fake_facemesh_dataset``."""
    c = load_config("tiny", "video_min")
    c.data.source = "tfds"
    c.data.tfds_data_dir = str(data_root)
    c.data.mixture = "faces=1"
    c.model.mia.motion_layout = "facemesh"
    c.model.mia.num_expression = num_expression
    return c
