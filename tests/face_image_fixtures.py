"""Real face images that ship inside installed packages (no network) and one FaceMesh
landmarker per session, shared by the conftest.py of tests/face and tests/metrics
(``from face_image_fixtures import ...``; tests/ is on sys.path)."""

from __future__ import annotations

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
