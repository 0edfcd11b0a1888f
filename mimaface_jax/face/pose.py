"""Head pose: a similarity fit (Umeyama, with scale) of FaceMesh landmarks to the template.

Landmarks are in pixels (x right, y down, z in the same pixel scale, away from the camera) and
are modelled as ``p = s * R @ q + t`` with ``q`` the canonical template point
(``canonical.template_points``, template units), ``s`` pixels per template unit, ``R`` a
proper rotation, ``t`` (3,) pixels. The fit uses the rigid upper-face points
(``canonical.rigid_indices``) so that the mouth does not move the pose.

Pose numbers (the ``pose`` group of ``motion_layout.facemesh_layout``):

- Euler angles in DEGREES with ``R = Rz(-roll) @ Ry(-yaw) @ Rx(-pitch)`` (Rx, Ry, Rz the usual
  right-handed rotations about the camera axes x right, y down, z away), so that
    * roll > 0: the face turns COUNTER-CLOCKWISE in the image (as seen on screen);
    * yaw > 0: the nose points to the image RIGHT (the subject turns to their left);
    * pitch > 0: the nose points UP.
  Roll is applied last, so an in-plane rotation of the image changes roll only. A horizontal
  flip of the image negates yaw and roll and keeps pitch.
- translation (x, y): the face centre (image of the template origin) relative to the image
  centre, in units of the image width (x) and height (y).
- log_scale: ``log(s / image_width)``: zooming the image content by a factor k adds log(k);
  resizing the whole image leaves it unchanged. The face's RMS radius is ``exp(log_scale)``
  image widths.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mimaface_jax.face import canonical


@dataclasses.dataclass(frozen=True)
class PoseFit:
    """Pose of T frames; every array has a leading T axis (NaN where landmarks were NaN)."""

    yaw: np.ndarray          # (T,) degrees
    pitch: np.ndarray        # (T,) degrees
    roll: np.ndarray         # (T,) degrees
    translation: np.ndarray  # (T, 2) image widths / heights from the image centre
    log_scale: np.ndarray    # (T,) log(pixels per template unit / image width)
    rotation: np.ndarray     # (T, 3, 3)
    scale: np.ndarray        # (T,) pixels per template unit
    offset: np.ndarray       # (T, 3) pixels: p = scale * rotation @ q + offset

    def fields(self) -> dict[str, np.ndarray]:
        """The layout's pose fields: yaw, pitch, roll (T, 1), translation (T, 2), log_scale."""
        return {"yaw": self.yaw[:, None], "pitch": self.pitch[:, None],
                "roll": self.roll[:, None], "translation": self.translation,
                "log_scale": self.log_scale[:, None]}


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1),
                     np.stack([z, s, c], -1)], -2)


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1),
                     np.stack([-s, z, c], -1)], -2)


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                     np.stack([z, z, o], -1)], -2)


def rotation_from_euler(yaw, pitch, roll) -> np.ndarray:
    """Degrees (broadcastable arrays) -> (..., 3, 3) rotation (convention in module doc)."""
    y, p, r = (np.radians(np.asarray(v, np.float64)) for v in (yaw, pitch, roll))
    y, p, r = np.broadcast_arrays(y, p, r)
    return _rz(-r) @ _ry(-y) @ _rx(-p)


def euler_from_rotation(rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., 3, 3) -> (yaw, pitch, roll) in degrees, each (...)."""
    m = np.asarray(rotation, np.float64)
    yaw = np.degrees(np.arcsin(np.clip(m[..., 2, 0], -1.0, 1.0)))
    pitch = -np.degrees(np.arctan2(m[..., 2, 1], m[..., 2, 2]))
    roll = -np.degrees(np.arctan2(m[..., 1, 0], m[..., 0, 0]))
    return yaw, pitch, roll


def fit_similarity(src: np.ndarray, dst: np.ndarray):
    """Least-squares ``dst ~ s * R @ src + t`` (Umeyama 1991), batched.

    src, dst: (..., N, 3). Returns scale (...), rotation (..., 3, 3), offset (..., 3).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(-2), dst.mean(-2)
    cs, cd = src - mu_s[..., None, :], dst - mu_d[..., None, :]
    cov = np.swapaxes(cd, -1, -2) @ cs / src.shape[-2]  # (..., 3, 3)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(sig.shape)
    d[..., 2] = np.sign(np.linalg.det(u @ vt))
    rotation = u @ (d[..., :, None] * vt)
    var_s = (cs ** 2).sum((-1, -2)) / src.shape[-2]
    scale = (sig * d).sum(-1) / var_s
    offset = mu_d - scale[..., None] * (rotation @ mu_s[..., None])[..., 0]
    return scale, rotation, offset


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[-1] != 3 or lm.shape[1] < canonical.NUM_FACE_POINTS:
        raise ValueError("expected FaceMesh landmarks of shape (T, 478, 3) or (T, 468, 3) in "
                         f"pixels, got {np.shape(landmarks)}")
    return lm


def _check_size(image_size) -> tuple[float, float]:
    if len(image_size) != 2 or min(image_size) <= 0:
        raise ValueError(f"image_size must be (width, height) > 0, got {image_size}")
    return float(image_size[0]), float(image_size[1])


def estimate_pose(landmarks: np.ndarray, image_size: tuple[int, int]) -> PoseFit:
    """(T, 478|468, 3) pixel landmarks of an image of ``image_size`` = (width, height) -> pose.

    A (478, 3) array is treated as T = 1. Frames with any non-finite landmark get NaN pose.
    """
    lm = _check_landmarks(landmarks)
    w, h = _check_size(image_size)
    idx = canonical.rigid_indices()
    tmpl = canonical.template_points()[idx]
    obs = lm[:, idx]
    ok = np.isfinite(obs).all((1, 2))
    safe = np.where(ok[:, None, None], obs, tmpl[None])
    scale, rotation, offset = fit_similarity(np.broadcast_to(tmpl, safe.shape), safe)
    yaw, pitch, roll = euler_from_rotation(rotation)
    translation = np.stack([(offset[:, 0] - w / 2) / w, (offset[:, 1] - h / 2) / h], -1)
    log_scale = np.log(np.maximum(scale, 1e-12) / w)
    nan = np.where(ok, 0.0, np.nan)
    return PoseFit(yaw=yaw + nan, pitch=pitch + nan, roll=roll + nan,
                   translation=translation + nan[:, None], log_scale=log_scale + nan,
                   rotation=rotation + nan[:, None, None], scale=scale + nan,
                   offset=offset + nan[:, None])


def similarity_from_pose(yaw, pitch, roll, translation, log_scale, image_size):
    """Inverse of ``estimate_pose``: pose numbers -> (scale, rotation (3, 3), offset (3,)).

    ``p = scale * rotation @ q + offset`` maps template-frame points q to pixels of an image of
    ``image_size`` = (width, height); the offset's depth is 0.
    """
    w, h = _check_size(image_size)
    rotation = rotation_from_euler(float(yaw), float(pitch), float(roll))
    tx, ty = np.asarray(translation, np.float64).reshape(2)
    scale = float(np.exp(float(log_scale))) * w
    offset = np.array([(tx + 0.5) * w, (ty + 0.5) * h, 0.0])
    return scale, rotation, offset


def normalize_landmarks(landmarks: np.ndarray, fit: PoseFit) -> np.ndarray:
    """Bring (T, N, 3) pixel landmarks into the template frame: q = R^T (p - t) / s."""
    lm = _check_landmarks(landmarks)
    local = lm - fit.offset[:, None, :]
    rotated = local @ fit.rotation  # row-vector form of R^T (p - t)
    return rotated / fit.scale[:, None, None]
