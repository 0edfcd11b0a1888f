"""Metric test fixtures: real faces shipped in installed packages, FaceMesh, tiny ONNX ArcFace."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest
from face_image_fixtures import astronaut, group_photo, landmarker  # noqa: F401


@pytest.fixture(scope="session")
def onnx_models():
    """tests/face/onnx_models.py, loaded by path (tests are not a package)."""
    path = pathlib.Path(__file__).parents[1] / "face" / "onnx_models.py"
    spec = importlib.util.spec_from_file_location("metrics_test_onnx_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
