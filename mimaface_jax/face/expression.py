"""Expression: pose-normalised landmarks minus the identity's neutral shape, on a PCA basis.

1. ``canonical_shapes``: pixel landmarks -> the 468 face points in the template frame (the
   inverse of each frame's similarity fit, see ``pose.py``), template units.
2. ``neutral_shape``: the identity's reference shape, taken from a sequence of canonical shapes
   of ONE identity (a video): ``"mean"`` (default: the mean over the valid frames, which averages
   out blinks and speech) , ``"first"`` (the first valid frame) or an int frame index.
3. ``expression_offsets``: canonical shapes minus the neutral shape, flattened to (T, 1404).
4. ``ExpressionPCA``: a linear basis fitted on offsets of many videos; coefficients are
   whitened by default (unit variance per component on the fitting set).
"""

from __future__ import annotations

import os

import numpy as np

from mimaface_jax.face import canonical
from mimaface_jax.face import pose as pose_lib
from mimaface_jax.face.motion_layout import facemesh_layout

EXPRESSION_DIM = canonical.NUM_FACE_POINTS * 3  # 1404
BASIS_FORMAT = "mimaface-expression-pca-v1"


def canonical_shapes(landmarks: np.ndarray, fit: pose_lib.PoseFit | None = None) -> np.ndarray:
    """(T, 478|468, 3) pixel landmarks -> (T, 468, 3) template-frame shapes (NaN if missing)."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    if fit is None:
        fit = pose_lib.estimate_pose(lm, (1, 1))  # image size does not enter R, s, t
    return pose_lib.normalize_landmarks(lm[:, :canonical.NUM_FACE_POINTS], fit)


def neutral_shape(shapes: np.ndarray, reference: str | int = "mean") -> np.ndarray:
    """(T, 468, 3) canonical shapes of one identity -> (468, 3) neutral shape."""
    shapes = np.asarray(shapes, np.float64)
    valid = np.isfinite(shapes).all((1, 2))
    if not valid.any():
        raise ValueError("neutral_shape: no frame has finite landmarks (no face found in any "
                         "frame of this sequence)")
    if reference == "mean":
        return shapes[valid].mean(0)
    if reference == "first":
        return shapes[np.flatnonzero(valid)[0]]
    if isinstance(reference, (int, np.integer)) and not isinstance(reference, bool):
        if not -len(shapes) <= reference < len(shapes):
            raise ValueError(f"neutral reference frame {reference} outside 0..{len(shapes) - 1}")
        if not valid[reference]:
            raise ValueError(f"neutral reference frame {reference} has no landmarks (no face)")
        return shapes[reference]
    raise ValueError(f"reference must be 'mean', 'first' or a frame index, got {reference!r}")


def expression_offsets(shapes: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """(T, 468, 3) shapes, (468, 3) neutral -> (T, 1404) offsets (NaN rows stay NaN)."""
    shapes = np.asarray(shapes, np.float64)
    return (shapes - np.asarray(neutral, np.float64)[None]).reshape(len(shapes), -1)


class ExpressionPCA:
    """A PCA basis of expression offsets.

    ``coefficients = ((x - mean) @ components.T) / scales`` with ``scales`` the per-component
    standard deviation on the fitting set (1 when ``whiten`` is False);
    ``reconstruct(c) = mean + (c * scales) @ components``.
    """

    def __init__(self, mean: np.ndarray, components: np.ndarray, scales: np.ndarray,
                 whiten: bool = True):
        self.mean = np.asarray(mean, np.float64)           # (D,)
        self.components = np.asarray(components, np.float64)  # (K, D), orthonormal rows
        self.stddev = np.asarray(scales, np.float64)       # (K,) std of each component
        self.whiten = bool(whiten)
        if self.components.ndim != 2 or self.components.shape[1] != self.mean.shape[0]:
            raise ValueError(f"components {self.components.shape} do not match mean "
                             f"{self.mean.shape}")
        if self.stddev.shape != (self.components.shape[0],):
            raise ValueError(f"scales {self.stddev.shape} do not match "
                             f"{self.components.shape[0]} components")

    @property
    def num_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def _scales(self) -> np.ndarray:
        return self.stddev if self.whiten else np.ones_like(self.stddev)

    @classmethod
    def fit(cls, offsets: np.ndarray, num_components: int = 64,
            whiten: bool = True) -> "ExpressionPCA":
        """(N, D) offsets (NaN rows are dropped) -> basis of ``num_components``."""
        x = np.asarray(offsets, np.float64)
        if x.ndim != 2:
            raise ValueError(f"ExpressionPCA.fit expects (N, D) offsets, got {x.shape}")
        x = x[np.isfinite(x).all(1)]
        n = x.shape[0]
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        if n < num_components + 1:
            raise ValueError(
                f"ExpressionPCA.fit: {n} valid samples cannot define {num_components} "
                f"components (centred data of N samples has rank <= N - 1); give at least "
                f"{num_components + 1} frames or ask for at most {max(n - 1, 0)} components")
        if num_components > x.shape[1]:
            raise ValueError(f"num_components {num_components} > data dimension {x.shape[1]}")
        mean = x.mean(0)
        centred = x - mean
        k = num_components
        # eigen-decomposition of the smaller Gram / covariance matrix (cheaper than an SVD)
        if n <= centred.shape[1]:
            evals, evecs = np.linalg.eigh(centred @ centred.T)
            evals, evecs = evals[::-1][:k], evecs[:, ::-1][:, :k]
            ok = evals > 1e-12 * max(evals[0], 1e-300)
            comps = (centred.T @ evecs[:, ok] / np.sqrt(evals[ok])).T if ok.all() else None
        else:
            evals, evecs = np.linalg.eigh(centred.T @ centred)
            evals, comps = evals[::-1][:k], evecs[:, ::-1][:, :k].T
            ok = evals > 1e-12 * max(evals[0], 1e-300)
        if not ok.all():
            raise ValueError(f"ExpressionPCA.fit: the data spans fewer than {num_components} "
                             "directions (rank-deficient); ask for fewer components")
        std = np.sqrt(evals / (n - 1))
        # deterministic sign: the largest-magnitude entry of each component is positive
        signs = np.sign(comps[np.arange(num_components), np.abs(comps).argmax(1)])
        return cls(mean, comps * signs[:, None], std, whiten=whiten)

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if x.shape[-1] != self.dim:
            raise ValueError(f"expression basis has dimension {self.dim}, got input of shape "
                             f"{x.shape}")
        return x

    def project(self, offsets: np.ndarray, num_components: int | None = None) -> np.ndarray:
        """(..., D) -> (..., K) coefficients (the first ``num_components`` if given)."""
        k = self.num_components if num_components is None else int(num_components)
        x = self._check(offsets)
        return ((x - self.mean) @ self.components[:k].T) / self._scales[:k]

    def reconstruct(self, coefficients: np.ndarray) -> np.ndarray:
        """(..., k) with k <= K -> (..., D) offsets."""
        c = np.asarray(coefficients, np.float64)
        k = c.shape[-1]
        if k > self.num_components:
            raise ValueError(f"{k} coefficients for a basis of {self.num_components}")
        return self.mean + (c * self._scales[:k]) @ self.components[:k]

    def reconstruction_error(self, offsets: np.ndarray,
                             num_components: int | None = None) -> np.ndarray:
        """(N, D) -> (N,) RMS per-point distance (template units) of the k-component fit."""
        x = self._check(offsets)
        rec = self.reconstruct(self.project(x, num_components))
        diff = (x - rec).reshape(*x.shape[:-1], -1, 3)
        return np.sqrt((diff ** 2).sum(-1).mean(-1))

    @property
    def layout_version(self) -> str:
        """Version of the motion layout whose ``expression`` field this basis fills."""
        return facemesh_layout(self.num_components).version

    def save(self, path: str | os.PathLike) -> None:
        """npz with the basis, the template version and the motion layout version."""
        np.savez(path, format=np.array(BASIS_FORMAT),
                 layout=np.array(self.layout_version), template=np.array(
            canonical.TEMPLATE_VERSION), mean=self.mean, components=self.components,
            stddev=self.stddev, whiten=np.array(self.whiten))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ExpressionPCA":
        path = str(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"expression basis {path} does not exist")
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("format", "layout", "template", "mean", "components", "stddev",
                                   "whiten") if k not in data]
            if missing:
                raise ValueError(f"{path}: not an expression basis, missing keys {missing}")
            if str(data["format"]) != BASIS_FORMAT:
                raise ValueError(f"{path}: format {str(data['format'])!r}, expected "
                                 f"{BASIS_FORMAT!r}")
            if str(data["template"]) != canonical.TEMPLATE_VERSION:
                raise ValueError(f"{path}: fitted on template {str(data['template'])!r}, this "
                                 f"code uses {canonical.TEMPLATE_VERSION!r}; refit the basis")
            basis = cls(data["mean"], data["components"], data["stddev"],
                        whiten=bool(data["whiten"]))
            if str(data["layout"]) != basis.layout_version:
                raise ValueError(f"{path}: layout {str(data['layout'])!r} does not match its "
                                 f"{basis.num_components} components ({basis.layout_version!r})")
            return basis
