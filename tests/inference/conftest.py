"""A tiny random video model (``configs/tiny.py:video_min``, 32x32, F = 4, K = 2) shared by the
inference tests. Its motion modules' zero-initialised output projections are randomised, so
that frames really interact through the temporal attention (a test of masking would pass
trivially otherwise)."""

import pathlib
import sys

import jax
import numpy as np
import pytest

from face_video_fixtures import astronaut, face_videos, kit  # noqa: F401

REPO = pathlib.Path(__file__).resolve().parents[2]


def load_config(name, *args):
    """``configs/<name>.py``'s ``get_config(*args)``."""
    from mimaface_jax.config_files import load_config as load

    return load(REPO / "configs" / f"{name}.py", *args)


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


DRIVING_FRAMES = 10   # 2.5 clips of the tiny video model (F = 4)
DRIVING_FPS = 20.0


def write_video_with_audio(path, frames: np.ndarray, fps: float, seconds_of_audio: float) -> None:
    """An H.264 mp4 with an AAC sine tone track (PyAV)."""
    import fractions

    import av

    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1001))
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        a = c.add_stream("aac", rate=16000)
        for f in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        t = np.arange(int(16000 * seconds_of_audio)) / 16000.0
        tone = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                          format="fltp", layout="mono")
        tone.sample_rate = 16000
        for p in a.encode(tone):
            c.mux(p)
        for p in a.encode():
            c.mux(p)


@pytest.fixture(scope="session")
def facemesh_bundle(tmp_path_factory):
    """(bundle path, workdir) of a tiny FaceMesh-layout video model (random weights)."""
    from mimaface_jax.inference.bundle import export

    root = tmp_path_factory.mktemp("facemesh_model")
    fake_facemesh_dataset(root / "data")
    workdir = write_workdir(facemesh_config(root / "data"), root / "run", step=3)
    export(workdir, root / "bundle", log=lambda _: None)
    return root / "bundle", workdir


@pytest.fixture(scope="session")
def animate_inputs(tmp_path_factory, astronaut, kit):
    """The astronaut as the source image; a warped-astronaut driving video (known trajectory,
    ``DRIVING_FRAMES`` frames at ``DRIVING_FPS``) with an audio track; bad inputs."""
    from mimaface_jax.face.media_io import write_image, write_video

    root = tmp_path_factory.mktemp("animate_inputs")
    write_image(root / "astronaut.png", astronaut)
    frames = kit.warp_astronaut(astronaut, kit.motion_for(0, DRIVING_FRAMES))
    write_video_with_audio(root / "driving.mp4", frames, DRIVING_FPS, DRIVING_FRAMES / DRIVING_FPS)
    write_image(root / "no_face.png", kit.faceless_frames(1)[0])
    write_video(root / "no_face.mp4", kit.faceless_frames(8), 25.0)
    (root / "empty.mp4").write_bytes(b"")
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(3000))
    return {"source": root / "astronaut.png", "driving": root / "driving.mp4", "frames": frames,
            "num_frames": DRIVING_FRAMES, "fps": DRIVING_FPS,
            "no_face_image": root / "no_face.png", "no_face_video": root / "no_face.mp4",
            "empty_video": root / "empty.mp4", "corrupt_video": root / "corrupt.mp4"}


@pytest.fixture(scope="session")
def synth_workdir(tmp_path_factory):
    """A training workdir of the tiny SynthFaces video model (``tiny.py:video_min``, random weights)."""
    return write_workdir(load_config("tiny", "video_min"), tmp_path_factory.mktemp("synth_run") / "run")


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    """A SynthFaces TFDS set at the tiny model's 32^2 with a 2-person validation split
    (cross-identity tasks need >= 2 people; evaluate's tests). -> the dataset's version folder."""
    import tensorflow_datasets as tfds

    from data_pipelines.synth_faces.builder import SynthFacesBuilder, SynthFacesBuilderConfig

    data_dir = tmp_path_factory.mktemp("eval_tfds")
    config = SynthFacesBuilderConfig(name="eval32", resolution=32, num_frames=10, train_identities=1,
                                     validation_identities=2, test_identities=0, videos_per_identity=1)
    builder = SynthFacesBuilder(config=config, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig())
    return builder.data_dir
