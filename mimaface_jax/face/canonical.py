"""The canonical 3-D face template of the 478-point MediaPipe FaceMesh, its mesh and index sets.

Template coordinates (the "canonical frame"): right-handed, x to the image RIGHT (the subject's
LEFT for a non-mirrored photo), y DOWN, z AWAY from the camera (a frontal face's nose tip has
negative z). Units: the 468 face points are centred on their centroid and scaled to unit RMS
radius, so a point's coordinates are in "template units" (the face's RMS radius is 1). The
template is exactly mirror-symmetric about the plane x = 0 (``mirror_permutation`` maps each
point to its mirror twin).

Where the template comes from: mediapipe 0.10.21's wheel does not ship its canonical face model
(``modules/face_geometry/data`` holds no ``canonical_face_model.obj`` / geometry metadata), so
the project DERIVES one from a real face: FaceMesh landmarks of ``skimage.data.astronaut()``
(``derive_template``), made symmetric by averaging each point with its mirrored twin. Its
x axis is the normal of the face's symmetry plane; pitch zero is the head pitch of that photo
(the astronaut looks at the camera). The result is stored in ``assets/facemesh_template_v1.npy``
(a measurement of ours, 478 x 3 floats) so that motion vectors do not change when mediapipe
does; ``tests/face/test_pose.py`` re-derives it and compares.

The mesh triangles and the eye / iris / lip index sets are read at run time from mediapipe's
``face_mesh_connections`` (edge sets); triangles are recovered from the tesselation edges.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict

import numpy as np

TEMPLATE_VERSION = "facemesh-template-v1"
TEMPLATE_PATH = os.path.join(os.path.dirname(__file__), "assets", "facemesh_template_v1.npy")

NUM_FACE_POINTS = 468
NUM_POINTS = 478  # with refine_landmarks=True: 468 face points + 2 x (iris centre + 4 ring)

# Anatomical landmarks (subject's left/right; "left" lies on the image right of a photo).
NOSE_TIP = 1
SUBNASALE = 2
FOREHEAD = 10
CHIN = 152
RIGHT_IRIS_CENTRE = 468
RIGHT_IRIS = (468, 469, 470, 471, 472)
LEFT_IRIS_CENTRE = 473
LEFT_IRIS = (473, 474, 475, 476, 477)
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133   # image-left eye of a photo
LEFT_EYE_INNER, LEFT_EYE_OUTER = 362, 263    # image-right eye of a photo

# Pairs used to seed the mirror search in ``derive_template`` (eye corners, mouth corners,
# cheeks, brows) and points known to lie on the midline.
_SEED_PAIRS = ((33, 263), (133, 362), (61, 291), (234, 454), (70, 300))
_SEED_MIDLINE = (1, 4, 10, 152, 0, 17, 168, 6, 2, 164, 9, 151)


def _connections():
    from mimaface_jax.face.mediapipe_import import restore_get_prototype

    restore_get_prototype()
    from mediapipe.python.solutions import face_mesh_connections  # heavy import, kept local

    return face_mesh_connections


def _points_of(edges) -> np.ndarray:
    return np.array(sorted({i for e in edges for i in e}), np.int64)


@functools.lru_cache(maxsize=None)
def index_sets() -> dict[str, np.ndarray]:
    """Named landmark index sets from mediapipe's connection sets (sorted int64 arrays)."""
    c = _connections()
    return {
        "left_eye": _points_of(c.FACEMESH_LEFT_EYE),
        "right_eye": _points_of(c.FACEMESH_RIGHT_EYE),
        "left_iris": np.array(LEFT_IRIS, np.int64),
        "right_iris": np.array(RIGHT_IRIS, np.int64),
        "left_eyebrow": _points_of(c.FACEMESH_LEFT_EYEBROW),
        "right_eyebrow": _points_of(c.FACEMESH_RIGHT_EYEBROW),
        "lips": _points_of(c.FACEMESH_LIPS),
        "face_oval": _points_of(c.FACEMESH_FACE_OVAL),
        "nose": _points_of(c.FACEMESH_NOSE),
    }


def _ordered_loop(edges) -> np.ndarray:
    """A closed edge set -> its vertices in walking order."""
    adj = defaultdict(list)
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    start = min(adj)
    loop, prev, cur = [start], None, start
    while True:
        nxt = [v for v in adj[cur] if v != prev]
        if not nxt or nxt[0] == start:
            break
        prev, cur = cur, nxt[0]
        loop.append(cur)
    return np.array(loop, np.int64)


@functools.lru_cache(maxsize=None)
def eye_contours() -> dict[str, np.ndarray]:
    """{"left": (16,), "right": (16,)}: the eyelid contour of each eye in walking order."""
    c = _connections()
    return {"left": _ordered_loop(c.FACEMESH_LEFT_EYE),
            "right": _ordered_loop(c.FACEMESH_RIGHT_EYE)}


@functools.lru_cache(maxsize=None)
def lip_contours() -> dict[str, np.ndarray]:
    """{"outer": (20,), "inner": (20,)}: the lips' outer and inner (mouth opening) loops."""
    edges = list(_connections().FACEMESH_LIPS)
    loops, left = [], set(map(tuple, edges))
    while left:  # split the edge set into its closed loops
        first = next(iter(left))
        comp, grow = {first}, True
        while grow:
            pts = {i for e in comp for i in e}
            new = {e for e in left - comp if e[0] in pts or e[1] in pts}
            grow = bool(new)
            comp |= new
        left -= comp
        loops.append(_ordered_loop(comp))
    if len(loops) != 2:
        raise ValueError(f"mediapipe FACEMESH_LIPS has {len(loops)} loops, expected 2")
    pts = template_points()

    def area(loop):
        x, y = pts[loop, 0], pts[loop, 1]
        return abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2

    outer, inner = sorted(loops, key=area, reverse=True)
    return {"outer": outer, "inner": inner}


@functools.lru_cache(maxsize=None)
def triangles() -> np.ndarray:
    """(852, 3) int64 triangles of the FaceMesh surface, from the tesselation edge set.

    Every 3-cycle of the edge graph is a candidate; the few that are not faces are the
    "separating" ones whose three edges all already bound two other triangles (a surface edge
    bounds at most two faces). Orientation: consistent over the surface (neighbours walk their
    shared edge in opposite directions), chosen so that ``cross(b - a, c - a)`` points toward
    the camera (-z) for the front-facing template: counter-clockwise on screen (x right, y down).
    """
    edges = {tuple(sorted(e)) for e in _connections().FACEMESH_TESSELATION}
    adj = defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    cand = sorted({tuple(sorted((a, b, w))) for a, b in edges for w in adj[a] & adj[b]})
    count = defaultdict(int)
    for a, b, w in cand:
        for e in ((a, b), (a, w), (b, w)):
            count[e] += 1
    tris = [t for t in cand
            if not all(count[e] > 2 for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2])))]
    tris = _orient_consistently(np.array(tris, np.int64))
    pts = template_points()
    normal_z = np.cross(pts[tris[:, 1]] - pts[tris[:, 0]], pts[tris[:, 2]] - pts[tris[:, 0]])[:, 2]
    if (normal_z > 0).sum() > (normal_z < 0).sum():
        tris = tris[:, [0, 2, 1]]
    return tris


def _orient_consistently(tris: np.ndarray) -> np.ndarray:
    """Reorder vertices so that neighbouring triangles walk their shared edge in opposite
    directions (a consistently oriented surface), by a breadth-first walk over neighbours."""
    by_edge = defaultdict(list)
    for i, t in enumerate(tris):
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            by_edge[(min(a, b), max(a, b))].append(i)
    out = tris.copy()
    done = np.zeros(len(tris), bool)
    for seed in range(len(tris)):
        if done[seed]:
            continue
        done[seed] = True
        queue = [seed]
        while queue:
            i = queue.pop(0)
            t = out[i]
            for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
                for j in by_edge[(min(a, b), max(a, b))]:
                    if done[j]:
                        continue
                    u = out[j]
                    walks_same = any((u[k], u[(k + 1) % 3]) == (a, b) for k in range(3))
                    if walks_same:
                        out[j] = u[[0, 2, 1]]
                    done[j] = True
                    queue.append(j)
    return out


@functools.lru_cache(maxsize=None)
def template_points() -> np.ndarray:
    """(478, 3) float64 canonical template (see module docstring for the frame)."""
    if not os.path.exists(TEMPLATE_PATH):
        raise FileNotFoundError(
            f"canonical face template {TEMPLATE_PATH} is missing; it ships with the package "
            "(mimaface_jax/face/assets). Re-create it with canonical.write_template().")
    pts = np.load(TEMPLATE_PATH)
    if pts.shape != (NUM_POINTS, 3):
        raise ValueError(f"{TEMPLATE_PATH}: expected shape (478, 3), got {pts.shape}")
    return pts.astype(np.float64)


@functools.lru_cache(maxsize=None)
def mirror_permutation() -> np.ndarray:
    """(478,) int64: index of each point's mirror twin (midline points map to themselves).

    Flipping landmarks horizontally (x -> W - x) gives a valid FaceMesh labelling only after
    re-indexing with this permutation: ``flipped[mirror_permutation()]``.
    """
    pts = template_points()
    mirrored = pts * np.array([-1.0, 1.0, 1.0])
    perm = np.empty(NUM_POINTS, np.int64)
    for group in (np.arange(NUM_FACE_POINTS), np.arange(NUM_FACE_POINTS, NUM_POINTS)):
        d = np.linalg.norm(pts[group][:, None] - mirrored[group][None], axis=-1)
        perm[group] = group[np.argmin(d, axis=1)]
    if not np.array_equal(perm[perm], np.arange(NUM_POINTS)):
        raise ValueError(f"{TEMPLATE_PATH}: template is not mirror-symmetric (mirror map is "
                         "not an involution); re-create it with canonical.write_template()")
    return perm


@functools.lru_cache(maxsize=None)
def rigid_indices() -> np.ndarray:
    """Face points that barely move with expression, used for the pose fit.

    The points above the subnasale (upper face: forehead, nose, upper cheeks, temples) minus
    the eyelids and eyebrows; the jaw, lips and lower cheeks move with the mouth and would leak
    expression into pitch and scale.
    """
    pts = template_points()[:NUM_FACE_POINTS]
    sets = index_sets()
    moving = np.concatenate([sets["left_eye"], sets["right_eye"], sets["left_eyebrow"],
                             sets["right_eyebrow"]])
    keep = pts[:, 1] <= pts[SUBNASALE, 1]
    keep[moving] = False
    return np.flatnonzero(keep)


# -- derivation -------------------------------------------------------------------------------

def _fit_rotation(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Proper rotation r and translation t minimising |a @ r.T + t - b|^2 ((N, 3) each)."""
    ma, mb = a.mean(0), b.mean(0)
    u, _, vt = np.linalg.svd((a - ma).T @ (b - mb))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))])
    r = vt.T @ d @ u.T
    return r, mb - r @ ma


def _mirror_search(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) landmarks -> (perm (N,), reflection matrix (3, 3)) of the face's mirror symmetry.

    Aligns the x-mirrored cloud to the original (seeded by known pairs), then re-assigns every
    point to its nearest mirrored twin by optimal matching, a few rounds.
    """
    from scipy.optimize import linear_sum_assignment

    n = points.shape[0]
    flip = np.diag([-1.0, 1.0, 1.0])
    mirrored = points @ flip.T
    perm = np.arange(n)
    for a, b in _SEED_PAIRS:
        perm[a], perm[b] = b, a
    seed = np.array([i for p in _SEED_PAIRS for i in p] + list(_SEED_MIDLINE))
    r, t = _fit_rotation(mirrored[perm[seed]], points[seed])
    for _ in range(4):
        aligned = mirrored @ r.T + t
        cost = np.linalg.norm(points[:, None] - aligned[None], axis=-1)
        perm = linear_sum_assignment(cost)[1]
        r, t = _fit_rotation(mirrored[perm], points)
    return perm, r @ flip


def derive_template(landmarks: np.ndarray) -> np.ndarray:
    """(478, 3) pixel-scale FaceMesh landmarks of a near-frontal face -> (478, 3) template."""
    from scipy.optimize import linear_sum_assignment

    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (NUM_POINTS, 3) or not np.isfinite(lm).all():
        raise ValueError(f"derive_template needs finite (478, 3) landmarks, got {lm.shape}")
    perm_face, reflection = _mirror_search(lm[:NUM_FACE_POINTS])
    # The reflection is I - 2 n n^T: n (eigenvalue -1) is the symmetry plane's normal.
    w, v = np.linalg.eigh((reflection + reflection.T) / 2)
    x_axis = v[:, np.argmin(w)]
    if x_axis @ (lm[LEFT_EYE_OUTER] - lm[RIGHT_EYE_OUTER]) < 0:
        x_axis = -x_axis
    y_axis = np.array([0.0, 1.0, 0.0]) - x_axis[1] * x_axis  # camera "down", in the plane
    y_axis /= np.linalg.norm(y_axis)
    z_axis = np.cross(x_axis, y_axis)
    basis = np.stack([x_axis, y_axis, z_axis])  # rows
    centred = (lm - lm[:NUM_FACE_POINTS].mean(0)) @ basis.T
    # iris twins: nearest mirrored point among the 10 iris points
    iris = centred[NUM_FACE_POINTS:]
    d = np.linalg.norm(iris[:, None] - (iris * [-1, 1, 1])[None], axis=-1)
    perm = np.concatenate([perm_face, NUM_FACE_POINTS + linear_sum_assignment(d)[1]])
    sym = (centred + centred[perm] * np.array([-1.0, 1.0, 1.0])) / 2
    sym -= sym[:NUM_FACE_POINTS].mean(0)
    rms = np.sqrt((sym[:NUM_FACE_POINTS] ** 2).sum(1).mean())
    out = sym / rms
    if out[NOSE_TIP, 2] >= 0:
        raise ValueError("derive_template: the face does not face the camera (nose tip z >= 0)")
    return out


def write_template(landmarks: np.ndarray, path: str = TEMPLATE_PATH) -> np.ndarray:
    """Derive the template from ``landmarks`` and store it at ``path`` (maintainers only)."""
    pts = derive_template(landmarks)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, pts.astype(np.float64))
    for fn in (template_points, mirror_permutation, rigid_indices, triangles, lip_contours):
        fn.cache_clear()
    return pts
