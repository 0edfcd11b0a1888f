"""All metrics of one generated reenactment video against its task (``training/sample_tasks.py``).

A task carries the source frame, the driving frames, the ground truth (T, H, W, 3) uint8 and the
motion-mask threshold. ``score_task`` returns one row: scalar metrics, their copy-the-source
baselines (the source frame repeated: what a model that ignores the motion would score) and
per-frame curves for the plots. Metrics that need a face detector or an identity model are
computed only when the caller passes a ``FaceMetrics`` (FaceMesh data / an ArcFace file).

A task without ground truth (``truth`` None: a pair of user files, ``inference/pair_tasks.py``)
gets only what needs none: the inter-clip discontinuity, the flicker over the pixels its
condition renders never change (where the driven face never goes), the identity similarity and
the FaceMesh motion metrics; a task without ``driving`` frames gets no FaceMesh motion metrics.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mimaface_jax.data.synth_faces import motion_mask
from mimaface_jax.metrics import temporal
from mimaface_jax.metrics.image_quality import l1, psnr
from mimaface_jax.metrics.motion_errors import motion_errors
from mimaface_jax.metrics.ssim import ssim_per_frame


@dataclasses.dataclass
class FaceMetrics:
    """Optional face-based scorers: ``identity`` (``metrics.identity.IdentityScorer``) and
    ``landmarker`` + ``extractor`` (``face.motion.MotionExtractor``) for the motion metrics.

    ``against_truth``: measure the generated motion against the GROUND TRUTH's (FaceMesh on
    both) instead of the driving video's. For models whose motion is not FaceMesh's (SynthFaces'
    renders, which FaceMesh does track): their extractor has no expression basis, so AED is
    replaced by the expression-shape error, and each error gets its copy-the-source baseline."""

    identity: object | None = None
    landmarker: object | None = None
    extractor: object | None = None
    against_truth: bool = False


def _per_frame(fn, a, b, mask=None) -> list[float]:
    return [fn(a[i], b[i], None if mask is None else mask[i]) for i in range(len(a))]


def _motion_metrics(generated, driving, faces: FaceMetrics) -> dict:
    """FaceMesh-measured AED / APD / gaze error and landmark jitter (generated vs driving)."""
    h, w = generated.shape[1:3]
    gen_track = faces.landmarker.track_video(generated)
    drv_track = faces.landmarker.track_video(driving)
    gen_motion = faces.extractor.extract(gen_track.landmarks, (w, h)).vectors
    drv_motion = faces.extractor.extract(drv_track.landmarks, (w, h)).vectors
    out = motion_errors(gen_motion, drv_motion, faces.extractor.layout)
    out["frames_without_face_generated"] = int((~gen_track.found).sum())
    if len(generated) >= 3:
        out["landmark_jitter"] = temporal.landmark_jitter(gen_track.landmarks[..., :2])
        out["landmark_jitter_driving"] = temporal.landmark_jitter(drv_track.landmarks[..., :2])
    return out


def expression_shape_error(shapes_a: np.ndarray, shapes_b: np.ndarray) -> float:
    """Mean distance between corresponding points of two (T, 468, 3) pose-normalised FaceMesh
    shapes (template units: the face's RMS radius is 1) over the frames where both exist: the
    expression (and face-shape) error when there is no expression basis to project on."""
    dist = np.linalg.norm(np.asarray(shapes_a, np.float64) - np.asarray(shapes_b, np.float64), axis=-1)
    ok = np.isfinite(dist).all(axis=1)
    return float(dist[ok].mean()) if ok.any() else float("nan")


def _motion_vs_truth(generated, truth, source, faces: FaceMetrics) -> dict:
    """APD / gaze error / expression-shape error / landmark jitter of the generated frames
    against the ground truth, each next to copying the source (FaceMesh on all three)."""
    h, w = generated.shape[1:3]
    measured = {}
    for name, frames in (("generated", generated), ("truth", truth),
                         ("copy", np.broadcast_to(source, truth.shape))):
        track = faces.landmarker.track_video(frames)
        measured[name] = (track, faces.extractor.extract(track.landmarks, (w, h)))
    layout = faces.extractor.layout
    out = {"frames_without_face_generated": int((~measured["generated"][0].found).sum())}
    for name, suffix in (("generated", ""), ("copy", "_copy_source")):
        errors = motion_errors(measured[name][1].vectors, measured["truth"][1].vectors, layout)
        out["apd_degrees" + suffix] = errors["apd_degrees"]
        out["gaze_error" + suffix] = errors["gaze_error"]
        out["expression_shape_error" + suffix] = expression_shape_error(measured[name][1].shapes,
                                                                       measured["truth"][1].shapes)
    if len(generated) >= 3:
        out["landmark_jitter"] = temporal.landmark_jitter(measured["generated"][0].landmarks[..., :2])
        out["landmark_jitter_ground_truth"] = temporal.landmark_jitter(measured["truth"][0].landmarks[..., :2])
    return out


def _face_metrics(task: dict, generated: np.ndarray, faces: FaceMetrics | None) -> dict:
    m = {}
    if faces is not None and faces.identity is not None:
        ident = faces.identity.score(task["source"], generated)
        m["identity_similarity"] = ident["identity_similarity"]
        m["identity_frames_without_face"] = ident["frames_without_face"]
    if faces is None or faces.landmarker is None or faces.extractor is None:
        return m
    n = len(generated)
    if faces.against_truth:
        if task.get("truth") is not None:
            m.update(_motion_vs_truth(generated, np.asarray(task["truth"][:n]), task["source"], faces))
    elif task.get("driving") is not None:
        m.update(_motion_metrics(generated, np.asarray(task["driving"][:n]), faces))
    return m


def _score_without_truth(task: dict, generated: np.ndarray, clip_frames: int, faces: FaceMetrics | None) -> dict:
    n = len(generated)
    condition = np.asarray(task["condition"][:n])
    if condition.shape != generated.shape:
        raise ValueError(f"task {task['name']!r}: generated {generated.shape} vs condition {condition.shape}")
    m, starts, curves = {}, list(range(0, n, clip_frames)), {"frame_change": []}
    if n >= 2:
        m["flicker"] = temporal.flicker(generated, temporal.static_mask(condition, threshold=task["mask_threshold"]))
        m["interclip_discontinuity"] = temporal.interclip_discontinuity(generated, starts)["discontinuity"]
        curves["frame_change"] = [float("nan")] + [float(v) for v in temporal.frame_changes(generated)]
    m.update(_face_metrics(task, generated, faces))
    return {"task": task["name"], "kind": task["kind"], "frames": n, "clip_starts": starts,
            "metrics": {k: float(v) for k, v in m.items()}, "curves": curves}


def score_task(task: dict, generated: np.ndarray, clip_frames: int, faces: FaceMetrics | None = None) -> dict:
    """task (see the module docstring), generated (T, H, W, 3) uint8 frames made in clips of
    ``clip_frames`` -> {"metrics": {name: float}, "curves": {name: [T floats]}, ...}."""
    n = len(generated)
    if task.get("truth") is None:
        return _score_without_truth(task, generated, clip_frames, faces)
    truth = np.asarray(task["truth"][:n])
    if truth.shape != generated.shape:
        raise ValueError(f"task {task['name']!r}: generated {generated.shape} vs ground truth {truth.shape}")
    copy = np.broadcast_to(task["source"], truth.shape)
    mask = motion_mask(truth, copy, threshold=task["mask_threshold"])                 # (T, H, W)
    ssim_gen, ssim_copy = ssim_per_frame(generated, truth), ssim_per_frame(copy, truth)
    m = {
        "psnr": psnr(generated, truth), "psnr_copy_source": psnr(copy, truth),
        "ssim": float(ssim_gen.mean()), "ssim_copy_source": float(ssim_copy.mean()),
        "l1": l1(generated, truth), "l1_copy_source": l1(copy, truth),
        "psnr_motion_mask": psnr(generated, truth, mask), "psnr_motion_mask_copy_source": psnr(copy, truth, mask),
        "l1_motion_mask": l1(generated, truth, mask), "l1_motion_mask_copy_source": l1(copy, truth, mask),
        "motion_mask_fraction": float(mask.mean()),
    }
    starts = list(range(0, n, clip_frames))
    if n >= 2:
        background = temporal.static_mask(truth, threshold=task["mask_threshold"])
        m["flicker"] = temporal.flicker(generated, background)
        m["flicker_ground_truth"] = temporal.flicker(truth, background)
        gen_d = temporal.interclip_discontinuity(generated, starts)
        m["interclip_discontinuity"] = gen_d["discontinuity"]
        m["interclip_discontinuity_ground_truth"] = temporal.interclip_discontinuity(truth, starts)["discontinuity"]
    m.update(_face_metrics(task, generated, faces))
    curves = {
        "psnr_motion_mask": _per_frame(psnr, generated, truth, mask),
        "psnr_motion_mask_copy_source": _per_frame(psnr, copy, truth, mask),
        "ssim": [float(v) for v in ssim_gen],
        "frame_change": [float("nan")] + [float(v) for v in temporal.frame_changes(generated)] if n >= 2 else [],
        "frame_change_ground_truth": ([float("nan")] + [float(v) for v in temporal.frame_changes(truth)]
                                      if n >= 2 else []),
    }
    return {"task": task["name"], "kind": task["kind"], "frames": n, "clip_starts": starts,
            "metrics": {k: float(v) for k, v in m.items()}, "curves": curves}
