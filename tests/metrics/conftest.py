"""Metric test fixtures: real faces shipped in installed packages, FaceMesh, tiny ONNX ArcFace."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())  # (512, 512, 3) RGB


@pytest.fixture(scope="session")
def group_photo() -> np.ndarray:
    import insightface.data

    return np.ascontiguousarray(insightface.data.get_image("t1")[:, :, ::-1])  # BGR -> RGB


@pytest.fixture(scope="session")
def landmarker():
    from mimaface_jax.face.landmarks import FaceLandmarker

    with FaceLandmarker() as fl:
        yield fl


@pytest.fixture(scope="session")
def onnx_models():
    """tests/face/onnx_models.py, loaded by path (tests are not a package)."""
    path = pathlib.Path(__file__).parents[1] / "face" / "onnx_models.py"
    spec = importlib.util.spec_from_file_location("metrics_test_onnx_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
