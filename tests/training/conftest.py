import importlib.util
import pathlib
import sys

import pytest
from face_video_fixtures import (  # noqa: F401  (FaceMesh records for the sample tasks)
    astronaut,
    face_videos,
    kit,
    video_folder_dataset,
    video_folder_layout,
)


def _load_runner():
    """tests/training/runner.py, loaded by path (tests are not a package) and registered as
    ``runner`` so that the test modules can ``import runner``."""
    if "runner" not in sys.modules:
        path = pathlib.Path(__file__).with_name("runner.py")
        spec = importlib.util.spec_from_file_location("runner", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["runner"] = module
    return sys.modules["runner"]


runner = _load_runner()


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory):
    """One persistent XLA cache for every training subprocess of the session (the same step
    compiles once, later runs load it)."""
    return tmp_path_factory.mktemp("xla_cache")


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """The in-memory source's SynthFaces videos of ``tiny.py:image_min`` (built once)."""
    from mimaface_jax.training import synth_source

    out = tmp_path_factory.mktemp("synth") / "videos"
    config = runner.load_config("tiny", "image_min")
    synth_source.build_synth_videos(out, synth_source.synth_faces_config(config), log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def synth_tfds(tmp_path_factory):
    """A TFDS ``synth_faces`` dataset (ArrayRecord) like ``image_min``'s: 4 + 2 people, 8 frames, 32^2.
    Returns the data_dir."""
    import tensorflow_datasets as tfds

    from data_pipelines.synth_faces.builder import SynthFacesBuilder, SynthFacesBuilderConfig

    data_dir = tmp_path_factory.mktemp("tfds")
    config = SynthFacesBuilderConfig(name="tiny32", resolution=32, num_frames=8, train_identities=4,
                                     validation_identities=2, test_identities=0, videos_per_identity=1)
    SynthFacesBuilder(config=config, data_dir=str(data_dir), file_format="array_record").download_and_prepare(
        download_config=tfds.download.DownloadConfig())
    return data_dir
