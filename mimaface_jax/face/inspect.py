"""Look at what the face pipeline measures on an image or a video.

    python -m mimaface_jax.face.inspect INPUT --out OUT.(png|mp4) [--face largest|N]
        [--expression-basis PCA.npz] [--render-size S]

Left panel: the input with its 478 landmarks, the head-pose axes (x red, y green, z blue, drawn
from the fitted pose) and gaze arrows (eye-corner midpoint -> iris, lengthened 3x). Right
panel: the motion condition render (``render.py``) of the same frame: without an expression
basis the frame's own pose-normalised shape posed by its measured pose and gaze; with one, the
clip's neutral shape driven by the motion vector (what the model is conditioned on).

Also writes ``OUT`` with suffix ``.npz`` (``motion`` (T, D) float32 NaN where no face,
``found`` (T,) bool, ``landmarks`` (T, 478, 3) pixels, ``fps``) and ``.json`` (the layout's
JSON and one dict per frame with every named field). Errors (unreadable input, no face) exit
with status 1 and one line on stderr naming the file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import cv2
import numpy as np

from mimaface_jax.face import gaze as gaze_lib
from mimaface_jax.face import pose as pose_lib
from mimaface_jax.face.landmarks import FaceLandmarker, FaceNotFoundError
from mimaface_jax.face.media_io import MediaReadError, is_video_path, read_media, write_image, \
    write_video

IMAGE_OUT = (".png", ".jpg", ".jpeg")
AXIS_COLOURS = ((255, 0, 0), (0, 200, 0), (40, 80, 255))  # RGB: x, y, z
GAZE_GAIN = 3.0


@contextlib.contextmanager
def quiet_native_stderr():
    """Send file descriptor 2 to /dev/null while MediaPipe imports and runs.

    MediaPipe's C++ side logs start-up lines (and a protobuf notice at import) straight to
    fd 2; the CLI's contract is one line on stderr on failure. Python exceptions are not
    lost: they propagate and are reported after the descriptor is restored.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class InspectError(RuntimeError):
    """A user-facing failure: printed as one line, exit status 1."""


def _parse_face(text: str) -> str | int:
    if text == "largest":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--face must be 'largest' or an integer index, "
                                         f"got {text!r}") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mimaface_jax.face.inspect",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="image or video file")
    p.add_argument("--out", required=True, help="OUT.png/.jpg for an image, OUT.mp4 for a video")
    p.add_argument("--face", type=_parse_face, default="largest",
                   help="'largest' or the index of the face (largest first)")
    p.add_argument("--expression-basis", default=None,
                   help="an ExpressionPCA .npz (expression.ExpressionPCA.save); optional")
    p.add_argument("--render-size", type=int, default=None,
                   help="side of the condition render (default: the frame height)")
    return p.parse_args(argv)


# -- measuring -------------------------------------------------------------------------------

def measure(frames: np.ndarray, which, source: str, is_video: bool):
    """(T, H, W, 3) -> (landmarks (T, 478, 3), found (T,))."""
    with quiet_native_stderr(), FaceLandmarker() as landmarker:
        if not is_video:
            face = landmarker.detect_one(frames[0], which, source=source)
            return face.landmarks[None], np.ones((1,), bool)
        track = landmarker.track_video(frames, which)
    if not track.found.any():
        raise InspectError(f"{source}: no face found in any of its {len(frames)} frames")
    return track.landmarks, track.found


# -- drawing ---------------------------------------------------------------------------------

def _pt(xy) -> tuple[int, int]:
    return int(round(float(xy[0]))), int(round(float(xy[1])))


def draw_annotations(frame: np.ndarray, landmarks: np.ndarray, motion: np.ndarray,
                     layout) -> np.ndarray:
    """Landmarks, pose axes and gaze arrows on a copy of ``frame`` (RGB uint8)."""
    out = frame.copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    for x, y in landmarks[:, :2]:
        cv2.circle(out, _pt((x, y)), max(1, thick // 2), (0, 255, 255), -1, cv2.LINE_AA)

    parts = layout.split(motion)
    scale, rotation, offset = pose_lib.similarity_from_pose(
        parts["yaw"][0], parts["pitch"][0], parts["roll"][0], parts["translation"],
        parts["log_scale"][0], (w, h))
    length = 1.5 * scale  # template units -> pixels; the face RMS radius is one unit
    origin = offset[:2]
    for axis, colour in enumerate(AXIS_COLOURS):
        tip = origin + length * rotation[:2, axis]
        cv2.arrowedLine(out, _pt(origin), _pt(tip), colour, 2 * thick, cv2.LINE_AA,
                        tipLength=0.15)

    gaze = parts["gaze"].reshape(2, 2)
    for k, (name, _, _, _) in enumerate(gaze_lib.EYES):
        centre, x_axis, y_axis, width = gaze_lib.eye_frame(landmarks.astype(np.float64), name)
        tip = centre + GAZE_GAIN * width * (gaze[k, 0] * x_axis + gaze[k, 1] * y_axis)
        cv2.arrowedLine(out, _pt(centre), _pt(tip), (255, 0, 255), thick, cv2.LINE_AA,
                        tipLength=0.3)
    return out


def render_panel(result, t: int, size: int, basis) -> np.ndarray:
    from mimaface_jax.face import render

    if not result.valid[t]:
        return _no_face_panel(size)
    motion = result.vectors[t]
    if basis is not None:
        return render.render_from_motion(result.neutral_shape, motion, result.layout, basis,
                                         size=size)
    parts = result.layout.split(motion)
    return render.render_condition(result.shapes[t], pose=render.pose_from_motion(
        motion, result.layout), gaze=parts["gaze"], size=size)


def _no_face_panel(size: int) -> np.ndarray:
    panel = np.zeros((size, size, 3), np.uint8)
    cv2.putText(panel, "no face", (size // 10, size // 2), cv2.FONT_HERSHEY_SIMPLEX,
                size / 300, (255, 80, 80), max(1, size // 200), cv2.LINE_AA)
    return panel


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    h = left.shape[0]
    if right.shape[0] != h:
        right = cv2.resize(right, (round(right.shape[1] * h / right.shape[0]), h),
                           interpolation=cv2.INTER_AREA)
    return np.concatenate([left, right], axis=1)


# -- outputs ---------------------------------------------------------------------------------

def per_frame_records(result, found: np.ndarray) -> list[dict]:
    records = []
    for t in range(len(found)):
        rec = {"frame": t, "found": bool(found[t])}
        for name, values in result.fields.items():
            vals = [None if not np.isfinite(v) else float(v) for v in values[t]]
            rec[name] = vals[0] if len(vals) == 1 else vals
        records.append(rec)
    return records


def write_motion_files(out: str, result, found, landmarks, fps) -> tuple[str, str]:
    stem = os.path.splitext(out)[0]
    npz_path, json_path = stem + ".npz", stem + ".json"
    np.savez(npz_path, motion=result.vectors.astype(np.float32), found=found,
             landmarks=landmarks.astype(np.float32),
             fps=np.float32(np.nan if fps is None else fps))
    doc = {"layout": json.loads(result.layout.to_json()), "fps": fps,
           "frames": per_frame_records(result, found)}
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
    return npz_path, json_path


def run(args: argparse.Namespace) -> list[str]:
    from mimaface_jax.face.motion import MotionExtractor

    video = is_video_path(args.input)
    suffix = os.path.splitext(args.out)[1].lower()
    if video and suffix != ".mp4":
        raise InspectError(f"{args.out}: a video input needs an .mp4 output, got {suffix!r}")
    if not video and suffix not in IMAGE_OUT:
        raise InspectError(f"{args.out}: an image input needs a {'/'.join(IMAGE_OUT)} output, "
                           f"got {suffix!r}")
    basis = None
    if args.expression_basis is not None:
        from mimaface_jax.face.expression import ExpressionPCA

        if not os.path.isfile(args.expression_basis):
            raise InspectError(f"{args.expression_basis}: expression basis file does not exist")
        basis = ExpressionPCA.load(args.expression_basis)

    frames, fps = read_media(args.input)                     # (T, H, W, 3)
    landmarks, found = measure(frames, args.face, args.input, video)
    h, w = frames.shape[1:3]
    extractor = (MotionExtractor() if basis is None
                 else MotionExtractor(basis, num_expression=basis.num_components))
    result = extractor.extract(landmarks, (w, h))
    size = args.render_size or h

    panels = []
    for t in range(len(frames)):
        left = (draw_annotations(frames[t], landmarks[t], result.vectors[t], result.layout)
                if found[t] else frames[t])
        panels.append(side_by_side(left, render_panel(result, t, size, basis)))
    if video:
        write_video(args.out, panels, fps)
    else:
        write_image(args.out, panels[0])
    return [args.out, *write_motion_files(args.out, result, found, landmarks, fps)]


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        written = run(args)
    except (MediaReadError, FaceNotFoundError, InspectError) as err:
        print(f"inspect: error: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
