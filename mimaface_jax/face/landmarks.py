"""MediaPipe face detection, 478-point FaceMesh landmarks and video tracking.

Uses the legacy ``mediapipe.solutions`` graphs of mediapipe 0.10.21, whose wheel ships the
models (no network). Landmarks are returned in PIXELS of the input image: ``(x, y, z)`` with
z = MediaPipe's normalised depth times the width of the image FaceMesh saw, converted to pixels
of the input image like x (so z has the same pixel scale as x; smaller z = nearer the camera).

Detection of several (possibly small) faces: FaceMesh's own short-range detector finds few
faces in group photos, so faces are found with the full-range ``FaceDetection`` model and
FaceMesh then runs on a square crop around each box (resized to ``crop_size``), whose
landmarks are mapped back to the full image.

Tracking: the chosen face is followed from frame to frame with a square crop centred on the
previous frame's landmarks, fed to a video-mode FaceMesh (it reuses its previous landmarks
instead of re-detecting). When the face is lost the next frame is re-detected on the full
image; frames without a face are reported (``found`` False, NaN landmarks), never dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import cv2
import numpy as np

NUM_LANDMARKS = 478
# Iris centres of the refined mesh: 468 is the subject's right iris (image-left on a
# non-mirrored photo), 473 the subject's left iris.
RIGHT_IRIS_CENTRE = 468
LEFT_IRIS_CENTRE = 473
NOSE_TIP = 1
MOUTH_CORNER_IMAGE_LEFT = 61    # subject's right mouth corner
MOUTH_CORNER_IMAGE_RIGHT = 291  # subject's left mouth corner


class FaceNotFoundError(ValueError):
    """No face, or not the requested one, in an image."""


@dataclasses.dataclass
class DetectedFace:
    """One face: ``bbox`` (x0, y0, x1, y1) pixels, detector ``score``, ``landmarks`` (478, 3)."""

    bbox: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray  # (478, 3) float32, pixels

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.bbox
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


@dataclasses.dataclass
class TrackResult:
    """Per-frame tracking of one face through a clip of T frames."""

    landmarks: np.ndarray  # (T, 478, 3) float32, NaN where not found
    found: np.ndarray      # (T,) bool
    boxes: np.ndarray      # (T, 4) float32 (x0, y0, x1, y1) of the landmarks, NaN where not found

    @property
    def missing_frames(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.found)]


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got dtype {image.dtype}")
    return np.ascontiguousarray(image)


def landmarks_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """(478, 3) -> (x0, y0, x1, y1) of the x, y coordinates."""
    xy = landmarks[:, :2]
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def select(faces: Sequence[DetectedFace], which: str | int = "largest",
           source: str = "image") -> DetectedFace:
    """Pick one face: ``"largest"`` (by box area) or an index into ``faces`` (area-sorted)."""
    if not faces:
        raise FaceNotFoundError(f"no face found in {source}")
    if which == "largest":
        return max(faces, key=lambda f: f.area)
    if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
        if not -len(faces) <= which < len(faces):
            raise FaceNotFoundError(
                f"face index {which} does not exist in {source}: {len(faces)} face(s) found "
                f"(valid indices 0..{len(faces) - 1}, sorted by area, largest first)")
        return faces[int(which)]
    raise ValueError(f"which must be 'largest' or an int face index, got {which!r}")


def five_keypoints(landmarks: np.ndarray) -> np.ndarray:
    """(478, 3) -> (5, 2) keypoints in insightface's ``arcface_dst`` order.

    Order: image-left eye centre, image-right eye centre, nose tip, image-left mouth corner,
    image-right mouth corner (for an upright, non-mirrored face that is the subject's right
    eye first). Eye centres are the iris centres of the refined mesh.
    """
    lm = np.asarray(landmarks, np.float32)
    if lm.shape != (NUM_LANDMARKS, 3) and lm.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected landmarks of shape (478, 3), got {lm.shape}")
    idx = [RIGHT_IRIS_CENTRE, LEFT_IRIS_CENTRE, NOSE_TIP, MOUTH_CORNER_IMAGE_LEFT,
           MOUTH_CORNER_IMAGE_RIGHT]
    return lm[idx, :2].copy()


def _square_around(box: Sequence[float], scale: float) -> tuple[float, float, float]:
    """(x0, y0, x1, y1) -> (cx, cy, side) of a square ``scale`` times the longer box side."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * scale
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, max(side, 8.0)


class FaceLandmarker:
    """Holds the MediaPipe graphs; use as a context manager (or call ``close``).

    Args:
      static_image_mode: accepted for MediaPipe-style call sites; ``detect`` always treats
        its input as an independent image and ``track_video`` always uses a video-mode graph.
      min_detection_confidence: score threshold of the full-range face detector.
      crop_size: side in pixels of the square crop given to FaceMesh.
      detect_margin: crop side as a multiple of the detector box side.
      track_margin: crop side as a multiple of the previous landmarks' box side.
    """

    def __init__(self, static_image_mode: bool = True, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, crop_size: int = 256,
                 detect_margin: float = 2.0, track_margin: float = 1.6):
        from mimaface_jax.face.mediapipe_import import import_mediapipe

        mp = import_mediapipe()  # heavy import, kept local

        self.static_image_mode = static_image_mode
        self.crop_size = int(crop_size)
        self.detect_margin = float(detect_margin)
        self.track_margin = float(track_margin)
        self.min_tracking_confidence = float(min_tracking_confidence)
        self._mp = mp
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_detection_confidence)
        self._mesh_static = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=2, refine_landmarks=True,
            min_detection_confidence=0.5)
        self._mesh_video = None

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        for graph in (self._detector, self._mesh_static, self._mesh_video):
            if graph is not None:
                graph.close()
        self._detector = self._mesh_static = self._mesh_video = None

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _new_video_mesh(self):
        if self._mesh_video is not None:
            self._mesh_video.close()
        self._mesh_video = self._mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=0.5,
            min_tracking_confidence=self.min_tracking_confidence)
        return self._mesh_video

    # -- building blocks -----------------------------------------------------------------
    def detect_boxes(self, image_rgb: np.ndarray) -> list[tuple[tuple[float, ...], float]]:
        """Full-range detector: [((x0, y0, x1, y1), score)] in pixels."""
        image = _check_image(image_rgb)
        h, w = image.shape[:2]
        result = self._detector.process(image)
        out = []
        for det in result.detections or []:
            rb = det.location_data.relative_bounding_box
            box = (rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w,
                   (rb.ymin + rb.height) * h)
            out.append((tuple(float(v) for v in box), float(det.score[0])))
        return out

    def _mesh_in_square(self, image: np.ndarray, cx: float, cy: float, side: float,
                        mesh) -> np.ndarray | None:
        """FaceMesh on the square (cx, cy, side) resized to crop_size; -> (478, 3) pixels."""
        s = self.crop_size / side
        x0, y0 = cx - side / 2.0, cy - side / 2.0
        m = np.array([[s, 0.0, -s * x0], [0.0, s, -s * y0]], np.float64)
        crop = cv2.warpAffine(image, m, (self.crop_size, self.crop_size),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
        result = mesh.process(crop)
        faces = result.multi_face_landmarks or []
        if not faces:
            return None
        best, best_d = None, np.inf
        for face in faces:  # the one nearest the crop centre
            pts = np.array([(p.x, p.y, p.z) for p in face.landmark], np.float32)
            d = float(np.linalg.norm(pts[:, :2].mean(axis=0) - 0.5))
            if d < best_d:
                best, best_d = pts, d
        pts = best * self.crop_size  # crop pixels; z scaled by crop width
        pts[:, 0] = pts[:, 0] / s + x0
        pts[:, 1] = pts[:, 1] / s + y0
        pts[:, 2] = pts[:, 2] / s
        return pts.astype(np.float32)

    # -- public API ----------------------------------------------------------------------
    def detect(self, image_rgb: np.ndarray) -> list[DetectedFace]:
        """All faces of an RGB uint8 image, sorted by box area, largest first."""
        image = _check_image(image_rgb)
        faces = []
        for box, score in self.detect_boxes(image):
            cx, cy, side = _square_around(box, self.detect_margin)
            lm = self._mesh_in_square(image, cx, cy, side, self._mesh_static)
            if lm is None:
                continue
            faces.append(DetectedFace(bbox=landmarks_box(lm), score=score, landmarks=lm))
        faces = _drop_duplicates(faces)
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    def detect_one(self, image_rgb: np.ndarray, which: str | int = "largest",
                   source: str = "image") -> DetectedFace:
        return select(self.detect(image_rgb), which, source=source)

    def track_video(self, frames: Iterable[np.ndarray], which: str | int = "largest",
                    ) -> TrackResult:
        """Follow one face through ``frames`` ((T, H, W, 3) uint8 RGB, or an iterable).

        ``which`` chooses the face at the first acquisition (as in ``select``). On
        re-acquisition after a loss, ``"largest"`` takes the largest face again and an index
        takes the detected face nearest to the last known position.
        """
        mesh = self._new_video_mesh()
        all_lm, found, boxes = [], [], []
        prev: np.ndarray | None = None       # landmarks of the previous frame
        last_centre: np.ndarray | None = None
        for frame in frames:
            image = _check_image(frame)
            lm = None
            if prev is not None:
                cx, cy, side = _square_around(landmarks_box(prev), self.track_margin)
                lm = self._mesh_in_square(image, cx, cy, side, mesh)
            if lm is None:
                lm = self._acquire(image, which, last_centre)
                if lm is not None:
                    # start the video graph on this face so the next frame tracks from it
                    mesh = self._new_video_mesh()
                    cx, cy, side = _square_around(landmarks_box(lm), self.track_margin)
                    tracked = self._mesh_in_square(image, cx, cy, side, mesh)
                    lm = tracked if tracked is not None else lm
            if lm is None:
                all_lm.append(np.full((NUM_LANDMARKS, 3), np.nan, np.float32))
                boxes.append(np.full((4,), np.nan, np.float32))
                found.append(False)
                prev = None
            else:
                all_lm.append(lm)
                boxes.append(np.asarray(landmarks_box(lm), np.float32))
                found.append(True)
                prev = lm
                last_centre = lm[:, :2].mean(axis=0)
        if not all_lm:
            raise ValueError("track_video got no frames")
        return TrackResult(landmarks=np.stack(all_lm).astype(np.float32),
                           found=np.asarray(found, bool), boxes=np.stack(boxes))

    def _acquire(self, image: np.ndarray, which: str | int,
                 last_centre: np.ndarray | None) -> np.ndarray | None:
        faces = self.detect(image)
        if not faces:
            return None
        if last_centre is not None and which != "largest":
            face = min(faces, key=lambda f: float(np.linalg.norm(
                f.landmarks[:, :2].mean(axis=0) - last_centre)))
            return face.landmarks
        return select(faces, which).landmarks


def _drop_duplicates(faces: list[DetectedFace], iou: float = 0.5) -> list[DetectedFace]:
    """Two detector boxes may land on one face; keep the higher-scoring of overlapping ones."""
    kept: list[DetectedFace] = []
    for face in sorted(faces, key=lambda f: f.score, reverse=True):
        if all(_iou(face.bbox, k.bbox) < iou for k in kept):
            kept.append(face)
    return kept


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
