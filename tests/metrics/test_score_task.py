"""One task's metrics with the face scorers on (the FaceMesh-layout path of ``evaluate``): a
generated video equal to the driving one has zero motion errors and identity similarity 1; a
video rolled by a known angle has that roll error (APD averages yaw / pitch / roll)."""

import cv2
import numpy as np
import pytest
from face_video_fixtures import motion_for, warp_astronaut

from mimaface_jax.face.expression import EXPRESSION_DIM, ExpressionPCA
from mimaface_jax.face.identity import ArcFaceEmbedder
from mimaface_jax.face.motion import MotionExtractor
from mimaface_jax.metrics.identity import IdentityScorer
from mimaface_jax.metrics.score_task import FaceMetrics, expression_shape_error, score_task

SIZE, FRAMES, ROLL = 192, 6, 6.0


def rolled(frames: np.ndarray, degrees: float) -> np.ndarray:
    centre = (SIZE / 2, SIZE / 2)   # warp_astronaut puts the face centre here (plus a few pixels)
    m = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    return np.stack([cv2.warpAffine(f, m, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT) for f in frames])


@pytest.fixture(scope="module")
def faces(tmp_path_factory, onnx_models, landmarker):
    basis = ExpressionPCA.fit(0.01 * np.random.default_rng(0).standard_normal((16, EXPRESSION_DIM)), 4)
    path = onnx_models.tiny_arcface(str(tmp_path_factory.mktemp("arcface") / "tiny_arcface.onnx"))
    return FaceMetrics(identity=IdentityScorer(ArcFaceEmbedder(path), landmarker), landmarker=landmarker,
                       extractor=MotionExtractor(basis, num_expression=4))


def test_face_metrics_of_a_perfect_and_a_rolled_video(astronaut, faces):
    driving = warp_astronaut(astronaut, motion_for(0, FRAMES), size=SIZE)     # (T, 192, 192, 3)
    task = {"name": "astronaut", "kind": "self", "source": driving[0], "driving": driving, "truth": driving,
            "mask_threshold": 0}
    perfect = score_task(task, driving.copy(), clip_frames=4, faces=faces)["metrics"]
    assert perfect["aed"] == 0.0 and perfect["apd_degrees"] == 0.0 and perfect["gaze_error"] == 0.0
    assert perfect["frames_without_face_generated"] == 0 and perfect["frames_left_out"] == 0
    assert perfect["landmark_jitter"] == perfect["landmark_jitter_driving"] > 0
    assert perfect["identity_similarity"] > 0.9 and perfect["identity_frames_without_face"] == 0
    assert perfect["ssim"] == pytest.approx(1.0, abs=1e-5)

    off = score_task(task, rolled(driving, ROLL), clip_frames=4, faces=faces)["metrics"]
    # roll off by ROLL degrees, yaw and pitch unchanged up to FaceMesh noise: APD ~ ROLL / 3
    assert off["apd_degrees"] == pytest.approx(ROLL / 3, abs=0.6)
    assert off["psnr"] < perfect["psnr"]


def test_synthfaces_motion_against_the_ground_truth(landmarker):
    """SynthFaces-layout models: FaceMesh on generated, ground-truth and copied-source frames;
    a perfect video has zero errors, copying the source does not, a rolled one has its roll."""
    from mimaface_jax.data.synth_faces import SynthFaces, SynthFacesConfig

    video = SynthFaces(SynthFacesConfig(resolution=64, train_identities=2, num_frames=8)).generate_video(1, 0, "train")
    truth = video["frames"]                                                    # (8, 64, 64, 3)
    faces = FaceMetrics(landmarker=landmarker, extractor=MotionExtractor(None), against_truth=True)
    task = {"name": "synth", "kind": "cross", "source": truth[0], "driving": video["condition"], "truth": truth,
            "mask_threshold": 8}
    perfect = score_task(task, truth.copy(), clip_frames=4, faces=faces)["metrics"]
    assert perfect["apd_degrees"] == perfect["gaze_error"] == perfect["expression_shape_error"] == 0.0
    assert perfect["frames_without_face_generated"] == 0 and "aed" not in perfect
    assert perfect["landmark_jitter"] == perfect["landmark_jitter_ground_truth"]
    assert perfect["apd_degrees_copy_source"] > 0.5 and perfect["expression_shape_error_copy_source"] > 0
    big = np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) for f in truth])
    task_big = dict(task, source=big[0], truth=big, driving=big)
    off = score_task(task_big, rolled(big, ROLL), clip_frames=4, faces=faces)["metrics"]
    assert off["apd_degrees"] == pytest.approx(ROLL / 3, abs=0.6)


def test_expression_shape_error_by_hand():
    a = np.zeros((2, 468, 3))
    b = np.zeros((2, 468, 3))
    b[0, :, :2] = (3.0, 4.0)        # frame 0: every point 5 units away; frame 1: identical
    b[1, 0] = np.nan                # frame 1 lost a point: left out
    assert expression_shape_error(a, b) == pytest.approx(5.0)
    b[0, 0] = np.nan
    assert np.isnan(expression_shape_error(a, b))
