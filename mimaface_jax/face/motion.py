"""Landmarks -> motion vectors in the ``facemesh_layout`` (pose, expression, gaze)."""

from __future__ import annotations

import dataclasses

import numpy as np

from mimaface_jax.face import canonical
from mimaface_jax.face import expression as expression_lib
from mimaface_jax.face import gaze as gaze_lib
from mimaface_jax.face import pose as pose_lib
from mimaface_jax.face.motion_layout import MotionLayout, facemesh_layout


@dataclasses.dataclass
class MotionResult:
    """Motion of one face through T frames."""

    vectors: np.ndarray          # (T, layout.size) float32, NaN rows where no landmarks
    fields: dict[str, np.ndarray]  # {field name: (T, field size)} float32
    valid: np.ndarray            # (T,) bool: the frame had finite landmarks
    shapes: np.ndarray           # (T, 468, 3) canonical-frame shapes (template units)
    neutral_shape: np.ndarray    # (468, 3) the reference the expression is measured from
    layout: MotionLayout

    @property
    def missing_frames(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.valid)]


class MotionExtractor:
    """Computes motion vectors from FaceMesh landmarks.

    Args:
      expression_basis: a fitted ``ExpressionPCA`` (or None). WITHOUT a basis the expression
        field is all zeros (pose and gaze are still measured); with one, its number of
        components must equal ``num_expression``.
      num_expression: size of the layout's expression field.
      neutral: the identity's reference shape for the expression: ``"mean"`` over the
        sequence (default), ``"first"`` valid frame, or a frame index; ``extract`` may be given
        an explicit ``neutral_shape`` instead (e.g. of the same person from another video).
    """

    def __init__(self, expression_basis: expression_lib.ExpressionPCA | None = None,
                 num_expression: int = 64, neutral: str | int = "mean"):
        if expression_basis is not None:
            if expression_basis.num_components != num_expression:
                raise ValueError(f"expression basis has {expression_basis.num_components} "
                                 f"components but num_expression={num_expression}; pass "
                                 f"num_expression={expression_basis.num_components}")
            if expression_basis.dim != expression_lib.EXPRESSION_DIM:
                raise ValueError(f"expression basis dimension {expression_basis.dim} != "
                                 f"{expression_lib.EXPRESSION_DIM} (468 points x 3)")
        self.basis = expression_basis
        self.layout = facemesh_layout(num_expression)
        self.neutral = neutral

    def extract(self, landmarks: np.ndarray, image_size: tuple[int, int],
                neutral_shape: np.ndarray | None = None) -> MotionResult:
        """(T, 478, 3) pixel landmarks (NaN where no face) of (width, height) images -> motion."""
        lm = np.asarray(landmarks, np.float64)
        if lm.ndim == 2:
            lm = lm[None]
        if lm.ndim != 3 or lm.shape[1:] != (canonical.NUM_POINTS, 3):
            raise ValueError("MotionExtractor needs (T, 478, 3) landmarks from "
                             f"FaceMesh(refine_landmarks=True), got {np.shape(landmarks)}")
        valid = np.isfinite(lm).all((1, 2))
        fit = pose_lib.estimate_pose(lm, image_size)
        shapes = expression_lib.canonical_shapes(lm, fit)
        t = lm.shape[0]
        if neutral_shape is None:
            if valid.any():
                neutral_shape = expression_lib.neutral_shape(shapes, self.neutral)
            else:
                neutral_shape = np.full((canonical.NUM_FACE_POINTS, 3), np.nan)
        neutral_shape = np.asarray(neutral_shape, np.float64)
        if neutral_shape.shape != (canonical.NUM_FACE_POINTS, 3):
            raise ValueError(f"neutral_shape must be (468, 3), got {neutral_shape.shape}")
        k = self.layout.field("expression").size
        if self.basis is None:
            expr = np.zeros((t, k))
        else:
            expr = self.basis.project(expression_lib.expression_offsets(shapes, neutral_shape))
        fields = dict(fit.fields())
        fields["expression"] = expr
        fields["gaze"] = gaze_lib.compute_gaze(lm)
        nan = np.where(valid, 0.0, np.nan)[:, None]
        fields = {name: (np.asarray(v, np.float64) + nan).astype(np.float32)
                  for name, v in fields.items()}
        vectors = self.layout.join(fields)
        return MotionResult(vectors=vectors, fields=fields, valid=valid, shapes=shapes,
                            neutral_shape=neutral_shape, layout=self.layout)
