"""Animate a portrait with a driving video or motion file of any length.

    python -m mimaface_jax.animate --model BUNDLE|RUN --source IMAGE --driving VIDEO|MOTION.npz \
        --out OUT.mp4 [--motion relative|absolute] [--driving_reference first|closest]
        [--transfer pose,expression,gaze] [--smooth N] [--face_index I] [--no_paste_back]
        [--side_by_side] [--sampler ddim|euler] [--steps N] [--guidance_scale S] [--seed N]
        [--dtype float32|bfloat16] [--attention xla|chunked|splash|cudnn|auto] [--jobs FILE] [--overwrite]

``--model``: a bundle from ``python -m mimaface_jax.export`` or a training workdir. A
SynthFaces model (motion layout ``synth-v1``) takes a person file as ``--source`` and a motion
file as ``--driving`` (``SynthFaces.export_person`` / ``export_motion``).

The video is generated clip by clip (``inference/generator.py``: ICA context from the previous
clip, the last partial clip too), written as it is made, at the driving fps, with the driving
video's audio. With a source image larger than the model's crop the generated face is pasted
back into it (feathered); ``--no_paste_back`` writes the crop. ``--jobs FILE``: one
``SOURCE DRIVING OUT`` triple per line; one process, one compiled generation function.

Next to OUT.mp4 it writes OUT.json: the settings, the timings (compile, per clip) and the
motion used for every frame. Bad input (no face in the source, an unreadable or empty driving
video, a bundle of another format version, an output folder that cannot be written, an
existing output without ``--overwrite``) ends with one line on stderr naming the file and
exit status 1, leaving no output file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mimaface_jax.inference.errors import AnimateError
from mimaface_jax.models.attention import IMPLEMENTATIONS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mimaface_jax.animate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="inference bundle (export) or training workdir")
    p.add_argument("--source", help="source portrait image (SynthFaces models: a person .npz)")
    p.add_argument("--driving", help="driving video, a folder of frames, or a motion file (.npz)")
    p.add_argument("--out", help="output .mp4")
    p.add_argument("--jobs", help="file of 'SOURCE DRIVING OUT' lines, run in one process")
    p.add_argument("--face_index", type=int, default=None, help="face of the source (largest first; default largest)")
    p.add_argument("--identity_model", default=None,
                   help="ArcFace .onnx for the source's identity input (FaceMesh models; default zeros)")
    p.add_argument("--motion", default="relative", choices=("relative", "absolute"))
    p.add_argument("--driving_reference", default="first", choices=("first", "closest"))
    p.add_argument("--transfer", default="pose,expression,gaze", help="motion groups to transfer")
    p.add_argument("--smooth", type=int, default=1, help="moving average of the driving motion (frames)")
    p.add_argument("--max_missing", type=float, default=0.5,
                   help="largest fraction of driving frames without a face (interpolated)")
    p.add_argument("--no_paste_back", action="store_true", help="write the generated crop")
    p.add_argument("--side_by_side", action="store_true", help="write source | driving | result")
    p.add_argument("--feather", type=int, default=None, help="paste-back feather in crop pixels")
    p.add_argument("--sampler", choices=("ddim", "euler"), default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance_scale", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="compute dtype")
    p.add_argument("--attention", choices=IMPLEMENTATIONS, default=None, help="attention implementation")
    p.add_argument("--weights", choices=("ema", "raw"), default="ema", help="of a training workdir")
    p.add_argument("--step", type=int, default=None, help="checkpoint step of a training workdir")
    p.add_argument("--lossless", action="store_true", help="lossless RGB H.264 (exact pixels)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    if args.jobs is None and not (args.source and args.driving and args.out):
        p.error("give --source, --driving and --out, or --jobs FILE")
    if args.jobs is not None and (args.source or args.driving or args.out):
        p.error("--jobs replaces --source / --driving / --out")
    return args


def read_jobs(path: str) -> list[tuple[str, str, str]]:
    if not os.path.isfile(path):
        raise AnimateError(f"{path}: jobs file does not exist")
    jobs = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3:
            raise AnimateError(f"{path}:{n}: a job is 'SOURCE DRIVING OUT', got {line!r}")
        jobs.append(tuple(parts))
    if not jobs:
        raise AnimateError(f"{path}: no jobs in the file")
    return jobs


def check_output(out: str, overwrite: bool) -> None:
    """Before any work: an existing output needs --overwrite, the folder must be writable."""
    path = Path(out)
    if path.suffix.lower() != ".mp4":
        raise AnimateError(f"{out}: the output must be an .mp4 file")
    if path.exists() and not overwrite:
        raise AnimateError(f"{out}: exists; pass --overwrite to replace it")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise AnimateError(f"{folder}: the output folder does not exist (or is not a folder)")
    try:  # a real write, not permission bits (root, read-only mounts)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".animate-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise AnimateError(f"{folder}: the output folder is not writable ({err.strerror})") from None


class Progress:
    """One line per clip: clip i/N, frames/s (after the first, compiling, clip) and ETA."""

    def __init__(self, total_frames: int, clip_frames: int, quiet: bool):
        self.total, self.quiet = total_frames, quiet
        self.num_clips = -(-total_frames // clip_frames)
        self.done, self.steady_frames, self.steady_seconds = 0, 0, 0.0

    def update(self, clip) -> None:
        self.done += len(clip.frames)
        if not clip.compiled:
            self.steady_frames += len(clip.frames)
            self.steady_seconds += clip.seconds
        if self.quiet:
            return
        if self.steady_frames:
            rate = self.steady_frames / max(self.steady_seconds, 1e-9)
            speed = f"{rate:.2f} frames/s, ETA {(self.total - self.done) / rate:.0f}s"
        else:
            speed = f"compiled in {clip.seconds:.1f}s"
        print(f"animate: clip {clip.index + 1}/{self.num_clips} ({self.done}/{self.total} frames) {speed}",
              file=sys.stderr, flush=True)


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    import cv2

    if image.shape[0] == height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def compose(result: np.ndarray, source, driving_frame: np.ndarray | None, side_by_side: bool) -> np.ndarray:
    if not side_by_side:
        return result
    h = result.shape[0]
    panels = [_fit_height(source.image, h)]
    if driving_frame is not None:
        panels.append(_fit_height(driving_frame, h))
    return np.concatenate(panels + [result], axis=1)


@dataclasses.dataclass
class Job:
    """One source / driving / output triple, prepared for generation."""

    source: object            # inference.source.Source
    driving: object           # inference.driving.Driving
    transfer: object          # inference.motion_transfer.TransferSettings
    motion: np.ndarray        # (T, D) the motion of every generated frame
    reference: int            # the driving reference frame of relative transfer
    paste: bool               # paste the generated crop back into the source image
    out: Path
    prepare_s: float

    def render(self, a: int, b: int) -> np.ndarray:
        """Condition renders (b - a, r, r, 3) of frames a .. b - 1."""
        return np.stack([self.source.render(m) for m in self.motion[a:b]])


def prepare_job(loaded, resolution: int, source_path: str, driving_path: str, out: str, args) -> Job:
    from mimaface_jax.inference.driving import load_driving
    from mimaface_jax.inference.motion_transfer import TransferSettings, transfer
    from mimaface_jax.inference.source import load_source

    t0 = time.perf_counter()
    try:
        groups = tuple(g.strip() for g in args.transfer.split(",") if g.strip())
        ts = TransferSettings(args.motion, args.driving_reference, groups, args.smooth)
    except ValueError as err:
        raise AnimateError(str(err)) from None
    source = load_source(source_path, loaded, args.face_index, args.identity_model)
    driving = load_driving(driving_path, loaded, args.max_missing)
    motion, reference = transfer(source.motion, driving.motion, loaded.layout, ts)
    paste = source.transform is not None and not args.no_paste_back and max(source.image.shape[:2]) > resolution
    return Job(source, driving, ts, motion, reference, paste, Path(out), time.perf_counter() - t0)


def run_job(loaded, generator, job: Job, args, settings_json: dict) -> dict:
    """Generates, writes OUT.mp4 and OUT.json; returns the JSON document."""
    driving_frames = job.driving.frames() if args.side_by_side else None
    try:
        return _write(loaded, generator, job, driving_frames, args, settings_json)
    finally:
        if driving_frames is not None:
            driving_frames.close()  # the driving video's decoder, when the loop stopped early


def _write(loaded, generator, job: Job, driving_frames, args, settings_json: dict) -> dict:
    from mimaface_jax.face import align
    from mimaface_jax.inference.video_out import VideoOutput, temporary_path

    t_start = time.perf_counter()
    source, driving, motion, render, ts = job.source, job.driving, job.motion, job.render, job.transfer
    paste, reference, out_path = job.paste, job.reference, job.out
    progress = Progress(len(motion), generator.num_frames, args.quiet)
    clips = []
    json_path = out_path.with_suffix(".json")
    with VideoOutput(out_path, driving.fps, audio_from=driving.path if driving.kind == "video" else None,
                     lossless=args.lossless) as video:
        for clip in generator.clips(source.crop, source.identity, motion, render,
                                    source_motion=source.motion, source_condition=source.render(source.motion)):
            for i, frame in enumerate(clip.frames):
                result = align.paste_back(source.image, frame, source.transform, args.feather) if paste else frame
                shown = None
                if args.side_by_side:
                    shown = next(driving_frames) if driving_frames is not None else render(clip.start + i,
                                                                                           clip.start + i + 1)[0]
                video.write(compose(result, source, shown, args.side_by_side))
            clips.append({"index": clip.index, "start": clip.start, "frames": len(clip.frames),
                          "seconds": round(clip.seconds, 4), "compiled": clip.compiled})
            progress.update(clip)
        doc = {
            "output": str(out_path), "source": source.path, "driving": driving.path,
            "model": loaded.description, "generation": settings_json,
            "transfer": {"motion": ts.mode, "driving_reference": ts.reference, "reference_frame": reference,
                         "groups": list(ts.groups), "smooth": ts.smooth},
            "identity_input": f"arcface {args.identity_model}" if args.identity_model and source.transform is not None
            else ("synthfaces identity code" if source.transform is None else "zeros"),
            "paste_back": paste, "side_by_side": bool(args.side_by_side),
            "driving_kind": driving.kind, "driving_missing_frames": driving.num_missing,
            "fps": driving.fps, "frames": len(motion),
            "timings": {"prepare_s": round(job.prepare_s, 3),
                        "compile_s": round(sum(c["seconds"] for c in clips if c["compiled"]), 3),
                        "generate_s": round(sum(c["seconds"] for c in clips), 3),
                        "clips": clips},
            "motion_layout": json.loads(loaded.layout.to_json()),
            "crop_transform": None if source.transform is None else np.asarray(source.transform).tolist(),
            "source_motion": source.motion.tolist(),
            "motion": [[round(float(v), 6) for v in row] for row in motion],
            "driving_found": driving.found.tolist(),
        }
        tmp_json = temporary_path(json_path)
        try:
            written = video.finish()
            doc["audio"] = written["audio"]
            doc["timings"]["total_s"] = round(job.prepare_s + time.perf_counter() - t_start, 3)
            tmp_json.write_text(json.dumps(doc, indent=1))
            os.replace(tmp_json, json_path)
        except BaseException:
            tmp_json.unlink(missing_ok=True)
            if video.finished:  # the video was renamed: no output without its JSON
                out_path.unlink(missing_ok=True)
            raise
    return doc


def main(argv=None) -> int:
    args = parse_args(argv)
    from mimaface_jax.face.identity import IdentityModelError
    from mimaface_jax.face.landmarks import FaceNotFoundError
    from mimaface_jax.face.media_io import MediaReadError
    from mimaface_jax.inference.bundle import BundleError

    def log(msg):
        if not args.quiet:
            print(f"animate: {msg}", file=sys.stderr, flush=True)

    try:
        jobs = read_jobs(args.jobs) if args.jobs else [(args.source, args.driving, args.out)]
        for _, _, out in jobs:
            check_output(out, args.overwrite)
        from mimaface_jax.inference.bundle import load_model
        from mimaface_jax.inference.generator import ClipGenerator, GenerationSettings

        loaded = load_model(args.model, compute_dtype=args.dtype, attention=args.attention, weights=args.weights,
                            step=args.step, log=log)
        try:
            settings = GenerationSettings.from_config(loaded.config, sampler=args.sampler, num_steps=args.steps,
                                                      guidance_scale=args.guidance_scale, seed=args.seed)
        except ValueError as err:
            raise AnimateError(str(err)) from None
        generator = ClipGenerator(loaded.config, loaded.model, loaded.params, loaded.ae_params, loaded.mesh,
                                  loaded.rules, settings)
        settings_json = dict(settings.to_json(), compute_dtype=str(loaded.config.precision.compute_dtype),
                             attention=str(loaded.config.model.unet.attention_implementation),
                             clip_frames=generator.num_frames, context_frames=generator.num_context,
                             resolution=generator.resolution)
        for source, driving, out in jobs:
            job = prepare_job(loaded, generator.resolution, source, driving, out, args)
            doc = run_job(loaded, generator, job, args, settings_json)
            print(f"wrote {out} ({doc['frames']} frames at {doc['fps']:g} fps"
                  f"{', audio' if doc['audio'] else ''}; {doc['timings']['total_s']:.1f}s) and "
                  f"{Path(out).with_suffix('.json')}")
    except (AnimateError, BundleError, MediaReadError, FaceNotFoundError, IdentityModelError) as err:
        print(f"animate: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
