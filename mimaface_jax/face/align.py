"""Similarity alignment of faces to a square crop, clip-level smoothing, paste-back.

Crop template (``crop_template``): five keypoints in ``five_keypoints`` order (image-left eye
centre, image-right eye centre, nose tip, image-left / image-right mouth corner). Their
positions are insightface's ArcFace template (``arcface_dst``, 112 px) normalised to the unit
square, shrunk by ``FACE_FRACTION`` around their mean and centred in the crop, so the crop
shows the whole head with some hair and neck rather than ArcFace's tight face box. At the
default fraction the eyes sit at 37.5% of the height, the mouth corners at 63% and the eye
centres are 22% of the crop width apart. Every size uses the same unit template scaled by the
output size.

A transform ``M`` (2, 3) maps IMAGE pixels -> CROP pixels (the OpenCV ``warpAffine`` direction).
"""

from __future__ import annotations

import cv2
import numpy as np

from mimaface_jax.face.landmarks import NUM_LANDMARKS, five_keypoints

# insightface.utils.face_align.arcface_dst, the ArcFace 112x112 template (x, y).
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
FACE_FRACTION = 0.7


def crop_template(size: int, face_fraction: float = FACE_FRACTION) -> np.ndarray:
    """(5, 2) template keypoints in pixels of a ``size`` x ``size`` crop."""
    unit = ARCFACE_TEMPLATE_112 / 112.0
    unit = (unit - unit.mean(axis=0)) * face_fraction + 0.5
    return (unit * size).astype(np.float32)


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) src -> dst; (2, 3).

    Closed form of Umeyama (1991) for 2-D points (N >= 2), no reflection.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("point sets contain NaN/inf (a frame without a face?)")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("source points are all identical; cannot fit a similarity")
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1.0
    rot = u @ fix @ vt
    scale = float((sig * np.diag(fix)).sum() / var_s)
    m = np.zeros((2, 3), np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def estimate_crop_transform(landmarks: np.ndarray, size: int,
                            face_fraction: float = FACE_FRACTION) -> np.ndarray:
    """Landmarks (478, 3) or five keypoints (5, 2) -> M (2, 3) image -> crop of ``size``."""
    pts = np.asarray(landmarks, np.float32)
    if pts.shape[0] == NUM_LANDMARKS:
        pts = five_keypoints(pts)
    if pts.shape != (5, 2):
        raise ValueError(f"expected (478, 3) landmarks or (5, 2) keypoints, got {pts.shape}")
    return umeyama_similarity(pts, crop_template(size, face_fraction))


def apply_transform(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(2, 3) transform applied to (..., 2) points (extra columns such as z are dropped)."""
    pts = np.asarray(points, np.float64)[..., :2]
    return pts @ np.asarray(m, np.float64)[:, :2].T + np.asarray(m, np.float64)[:, 2]


def invert_transform(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


# -- clip smoothing ---------------------------------------------------------------------------

def _to_params(m: np.ndarray, size: int) -> np.ndarray:
    """(T, 2, 3) -> (T, 4): log-scale, rotation angle, and the image point under the crop centre.

    The crop centre's image position decouples translation from rotation and scale.
    """
    a, b = m[:, 0, 0], m[:, 1, 0]
    scale = np.hypot(a, b)
    angle = np.arctan2(b, a)
    centre = np.full((2,), size / 2.0)
    inv = np.stack([invert_transform(x) for x in m])
    c_img = inv[:, :, :2] @ centre + inv[:, :, 2]
    return np.stack([np.log(scale), angle, c_img[:, 0], c_img[:, 1]], axis=1)


def _from_params(p: np.ndarray, size: int) -> np.ndarray:
    scale, angle = np.exp(p[:, 0]), p[:, 1]
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    lin = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], axis=1)  # (T, 2, 2)
    trans = size / 2.0 - np.einsum("tij,tj->ti", lin, p[:, 2:])
    return np.concatenate([lin, trans[:, :, None]], axis=2)


def smooth_transforms(transforms: np.ndarray, size: int, window: int = 9,
                      method: str = "savgol", polyorder: int = 2) -> np.ndarray:
    """Smooth a clip's per-frame similarity transforms so the crop does not jitter.

    Each (2, 3) transform is split into (log scale, unwrapped rotation angle, image position of
    the crop centre); each parameter track is smoothed over time with a centred window
    (``"savgol"``: Savitzky-Golay of ``polyorder``, keeps slow motion; ``"mean"``: moving
    average) with edge-mirrored ends, and the transforms are rebuilt. Frames whose transform
    is NaN (no face) get parameters interpolated linearly from the valid frames (nearest at the
    ends) before smoothing. A single transform for the whole clip is ``window >= T`` with
    ``method="mean"``.

    (T, 2, 3) -> (T, 2, 3).
    """
    m = np.asarray(transforms, np.float64)
    if m.ndim != 3 or m.shape[1:] != (2, 3):
        raise ValueError(f"expected transforms of shape (T, 2, 3), got {m.shape}")
    valid = np.isfinite(m).all(axis=(1, 2))
    if not valid.any():
        raise ValueError("every transform is NaN: no frame of the clip has a face")
    t = np.arange(len(m))
    params = np.full((len(m), 4), np.nan)
    params[valid] = _to_params(m[valid], size)
    params[valid, 1] = np.unwrap(params[valid, 1])
    for k in range(4):
        params[:, k] = np.interp(t, t[valid], params[valid, k])
    n = len(m)
    win = min(int(window), n if n % 2 == 1 else n - 1)
    if win >= 2:
        if method == "savgol":
            from scipy.signal import savgol_filter

            if polyorder < win:
                params = savgol_filter(params, win, polyorder, axis=0, mode="mirror")
        elif method == "mean":
            pad = win // 2
            padded = np.pad(params, ((pad, pad), (0, 0)), mode="reflect" if n > pad else "edge")
            kernel = np.ones(win) / win
            params = np.stack([np.convolve(padded[:, k], kernel, mode="valid")
                               for k in range(4)], axis=1)
        else:
            raise ValueError(f"method must be 'savgol' or 'mean', got {method!r}")
    return _from_params(params, size)


# -- warping -----------------------------------------------------------------------------------

def warp_crop(image: np.ndarray, m: np.ndarray, size: int, border: str = "constant",
              ) -> np.ndarray:
    """(H, W, C) image -> (size, size, C) crop through M (image -> crop)."""
    modes = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT101,
             "replicate": cv2.BORDER_REPLICATE}
    if border not in modes:
        raise ValueError(f"border must be one of {sorted(modes)}, got {border!r}")
    return cv2.warpAffine(np.asarray(image), np.asarray(m, np.float64), (size, size),
                          flags=cv2.INTER_LINEAR, borderMode=modes[border], borderValue=0)


def feather_mask(size: int, feather: int) -> np.ndarray:
    """(size, size) float32 mask: 1 inside, ramping to 0 over ``feather`` px at the edges."""
    mask = np.ones((size, size), np.float32)
    if feather <= 0:
        return mask
    ramp = np.clip((np.arange(size) + 0.5) / feather, 0.0, 1.0)
    ramp = np.minimum(ramp, ramp[::-1])
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


def paste_back(frame: np.ndarray, crop: np.ndarray, m: np.ndarray,
               feather: int | None = None) -> np.ndarray:
    """Blend ``crop`` (made with M from ``frame``) back into ``frame`` through M's inverse.

    The crop is weighted by a mask that fades to zero over ``feather`` crop pixels at its
    border (default size // 16) so no seam shows. Returns a new uint8 frame.
    """
    size = crop.shape[0]
    if crop.shape[1] != size:
        raise ValueError(f"crop must be square, got {crop.shape}")
    feather = max(1, size // 16) if feather is None else int(feather)
    h, w = frame.shape[:2]
    inv = invert_transform(m)
    back = cv2.warpAffine(np.asarray(crop), inv, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = cv2.warpAffine(feather_mask(size, feather), inv, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    out = frame.astype(np.float32) * (1.0 - mask) + back.astype(np.float32) * mask
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def arcface_crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W, 3) image + (478, 3) landmarks -> (112, 112, 3) ArcFace crop (same channel order).

    Uses insightface's ``norm_crop`` on the five keypoints.
    """
    import warnings

    from insightface.utils import face_align

    with warnings.catch_warnings():  # skimage's notice about insightface's estimate() call
        warnings.filterwarnings("ignore", message=".*estimate.*deprecated", category=FutureWarning)
        return face_align.norm_crop(np.asarray(image), five_keypoints(landmarks), image_size=112)
