"""Evaluate a model on the held-out split of a built dataset, as face-animation papers do, or
over a folder of (source, driving) file pairs.

    python -m mimaface_jax.evaluate --model BUNDLE|RUN (--data DATASET[:split] | --pairs DIR) --out DIR
        [--ablate ica=off] [--ablate motion_tokens=off] [--ablate identity=off] [--ablate guidance=S]
        [--num_videos N] [--frames T] [--identity_model ARCFACE.onnx] [--sampler ddim|euler]
        [--steps N] [--seed N] [--quiet]

``--data``: a built TFDS dataset folder (the version folder, or a folder holding exactly one),
or a dataset name under the model config's ``data.tfds_data_dir``; ``:split`` picks the split
(default: the first of validation / test / val / eval it has).

``--pairs DIR`` (instead of ``--data``): one subfolder per pair with one ``source.*`` (a portrait
image; a SynthFaces person .npz for a synth-v1 model) and one ``driving.*`` (a video, a
``driving/`` folder of frames, or a motion .npz), or a ``DIR/pairs.csv`` of ``name,source,driving``
lines (paths relative to DIR). The tasks are made as ``animate`` makes its inputs, with its
defaults (``inference/pair_tasks.py``; ``--identity_model`` also gives FaceMesh sources their
ArcFace identity input, as in animate). SynthFaces pairs get the exact ground truth (the person
rendered under the transferred motion); portrait pairs have none, so only the identity
similarity, the FaceMesh motion metrics, the inter-clip discontinuity and the flicker are scored
(the rest is listed as not computed). All pairs are evaluated unless ``--num_videos`` is given.

Tasks (``training/sample_tasks.py``, the trainer's sample videos): on SynthFaces,
CROSS-identity reenactment with the exact ground truth (person A driven by person B's motion);
on FaceMesh data, SELF-reenactment (a clip's first frame driven by the clip). Generation is
the shared clip-by-clip generator (``inference/generator.py``) with the model's sample
settings; video i uses seed ``seed + i``. Data parallel (``inference/task_batches.py``): videos
of one length are generated ``jax.device_count()`` at a time in lockstep, split over the
devices (the last batch padded by repeating a video, the copy dropped); one compile per video
length. A video's frames do not depend on its batch, so the rows do not depend on the device
count (up to float rounding).

Metrics (``mimaface_jax/metrics``): PSNR / SSIM / L1 against the ground truth (whole frame and
inside the motion mask) next to the copy-the-source baseline; the inter-clip discontinuity and
background flicker next to the ground truth's; with ``--identity_model`` the ArcFace similarity
to the source; on FaceMesh-layout models AED / APD / gaze error and landmark jitter measured by
FaceMesh on the generated and the driving frames. LPIPS / FID / FVD are not computed (the
reason is written into the outputs).

Ablations at inference (same weights): ``ica=off`` generates every clip without context frames
(no previous frames, no source anchor; the same initial noise as with ICA); ``motion_tokens=off``
cuts MIA's motion path (no motion tokens, no motion cross-attention) and ``identity=off`` its
identity path (no identity FiLM, no identity tokens), computing what a MIA built without that
path computes from the same parameters (``models/mia.py``; the U-Net's cross-attention sees the
shorter context); ``guidance=S`` sets the CFG scale. They are recorded in metrics.json's
settings (``ablation``; ``generation``: ``mia_motion`` / ``mia_identity``). A path the model was
trained without (``model.mia.*_modulation`` off) cannot be cut: one-line error.

Writes into DIR: metrics.json (per sample, mean, settings), metrics.md (tables),
curves_<i>.png (per-frame PSNR / SSIM / frame change, clip boundaries marked) and
worst_best.png. Progress (one line per batch) with ETA on stderr. Bad input: one line on stderr, exit status 1.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

ABLATIONS = ("ica", "guidance", "motion_tokens", "identity")
SWITCHES = ("ica", "motion_tokens", "identity")   # take on / off


class EvaluateError(ValueError):
    """Bad input to ``evaluate`` (one line for the user)."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mimaface_jax.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="inference bundle (export) or training workdir")
    inputs = p.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--data", help="DATASET[:split]: a built TFDS dataset folder or name")
    inputs.add_argument("--pairs", help="folder of (source, driving) pairs: subfolders or pairs.csv")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--ablate", action="append", default=[],
                   help="ica=off | motion_tokens=off | identity=off | guidance=S (repeatable)")
    p.add_argument("--num_videos", type=int, default=None,
                   help="held-out videos to evaluate (default 8; with --pairs: every pair)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames per video (default: sample.num_clips clips of the model)")
    p.add_argument("--identity_model", default=None, help="ArcFace .onnx for the identity similarity")
    p.add_argument("--sampler", choices=("ddim", "euler"), default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--weights", choices=("ema", "raw"), default="ema", help="of a training workdir")
    p.add_argument("--step", type=int, default=None, help="checkpoint step of a training workdir")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p.parse_args(argv)


def parse_ablations(items: list[str]) -> dict:
    """["ica=off", "motion_tokens=off", "guidance=2"] -> {"ica": False, "motion_tokens": False,
    "guidance": 2.0}: ``ica`` / ``motion_tokens`` / ``identity`` take on / off, ``guidance`` a
    scale >= 0 (EvaluateError naming the bad item)."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in ABLATIONS:
            raise EvaluateError(f"--ablate {item!r}: expected one of ica=off, motion_tokens=off, identity=off, "
                                "guidance=S")
        if key in SWITCHES:
            if value not in ("on", "off"):
                raise EvaluateError(f"--ablate {item!r}: {key} takes 'on' or 'off'")
            out[key] = value == "on"
        else:
            try:
                out["guidance"] = float(value)
            except ValueError:
                raise EvaluateError(f"--ablate {item!r}: guidance takes a number (the CFG scale)") from None
            if out["guidance"] < 0:
                raise EvaluateError(f"--ablate {item!r}: the guidance scale must be >= 0")
    return out


def check_mia_switches(ablation: dict, mia_config) -> None:
    """``motion_tokens=off`` / ``identity=off`` need the model to have that MIA path
    (``models.mia.MIAConfig``: ``motion_modulation`` / ``identity_modulation``)."""
    for key, path in (("motion_tokens", "motion"), ("identity", "identity")):
        if ablation.get(key) is False and not getattr(mia_config, f"{path}_modulation"):
            raise EvaluateError(f"--ablate {key}=off: the model has no MIA {path} path to cut "
                                f"(trained with model.mia.{path}_modulation off)")


def names_a_path(spec: str) -> bool:
    """Whether ``--data`` names a folder (resolved before the model loads, so that a bad one fails
    fast) rather than a dataset name under the model's ``data.tfds_data_dir``."""
    name = spec.rpartition(":")[0] if ":" in spec else spec
    return Path(name).expanduser().is_absolute() or Path(name).expanduser().exists()


def resolve_data(spec: str, config) -> tuple[str, str, dict]:
    """'DATASET[:split]' -> (dataset folder, split, its metadata); ``config`` (the model's, for
    ``data.tfds_data_dir``) may be None when ``spec`` names a folder."""
    from mimaface_jax.training.data_source import DataConfigError, resolve_dataset_dir
    from mimaface_jax.training.sample_tasks import HELD_OUT_PREFERENCE, dataset_splits

    name, _, split = spec.rpartition(":") if ":" in spec else (spec, "", "")
    name = name or spec
    candidate = Path(name).expanduser()
    root = str(config.data.tfds_data_dir or ".") if config is not None else "."
    try:
        path = resolve_dataset_dir(root, str(candidate.absolute()) if candidate.exists() else name)
    except DataConfigError:
        raise EvaluateError(f"--data {spec!r}: {name} is not a built dataset (no dataset_info.json in it or "
                            f"below it, nor under the model's data.tfds_data_dir {root!r})") from None
    meta_path = Path(path) / "metadata.json"
    if not meta_path.is_file():
        raise EvaluateError(f"--data {spec!r}: {path} has no metadata.json (not built by data_pipelines)")
    metadata = json.loads(meta_path.read_text())
    splits = dataset_splits(path)
    if split:
        if split not in splits:
            raise EvaluateError(f"--data {spec!r}: {path} has no split {split!r} (it has {splits})")
    else:
        held_out = [s for s in HELD_OUT_PREFERENCE if s in splits]
        if not held_out:
            raise EvaluateError(f"--data {spec!r}: {path} has no held-out split (it has {splits}); name one "
                                "as DATASET:split")
        split = held_out[0]
    return path, split, metadata


def check_layout(metadata: dict, layout, path: str) -> None:
    """The dataset's motion layout must be the model's."""
    from mimaface_jax.data import records
    from mimaface_jax.face.motion_layout import MotionLayout

    text = metadata.get(records.META_LAYOUT)
    if text is None:
        raise EvaluateError(f"{path}: metadata.json names no motion layout")
    data_layout = MotionLayout.from_json(text if isinstance(text, str) else json.dumps(text))
    if data_layout.version != layout.version or data_layout.size != layout.size:
        raise EvaluateError(f"{path}: the data's motion layout {data_layout.version!r} ({data_layout.size} values) "
                            f"does not match the model's {layout.version!r} ({layout.size} values)")


def eval_config(config, path: str, split: str):
    """The model's config reading ``path`` / ``split`` as its held-out data (a copy)."""
    c = copy.deepcopy(config)
    c.data.source = "tfds"
    c.data.tfds_data_dir = str(Path(path).parent)
    c.data.mixture = f"{path}=1"
    c.sample.split = split
    return c


def face_metrics(loaded, identity_model: str | None, skipped: dict, log):
    """The optional face scorers this model / these flags allow; reasons for the rest go to ``skipped``."""
    from mimaface_jax.face.landmarks import FaceLandmarker
    from mimaface_jax.face.motion import MotionExtractor
    from mimaface_jax.metrics.score_task import FaceMetrics

    faces = FaceMetrics()
    faces.landmarker = FaceLandmarker()
    if identity_model is not None:
        from mimaface_jax.face.identity import ArcFaceEmbedder
        from mimaface_jax.metrics.identity import IdentityScorer

        faces.identity = IdentityScorer(ArcFaceEmbedder(identity_model), faces.landmarker)
    else:
        skipped["identity_similarity"] = "no --identity_model (an ArcFace .onnx) given"
    if loaded.basis is not None:
        faces.extractor = MotionExtractor(loaded.basis, num_expression=loaded.basis.num_components)
    else:
        # SynthFaces' motion is not FaceMesh's, but FaceMesh tracks its renders: pose, gaze and
        # the pose-normalised shape of the generated frames are compared with the ground truth's
        faces.extractor = MotionExtractor(None)
        faces.against_truth = True
        skipped["aed"] = (f"the model's motion layout {loaded.layout.version!r} has no FaceMesh expression "
                          "basis; expression_shape_error (FaceMesh shapes vs the ground truth's) stands in")
    for name, reason in skipped.items():
        log(f"not computed: {name} ({reason})")
    return faces


class Progress:
    """One line per generated batch with the time it took and the ETA (from the batches after
    the first, which includes compilation)."""

    def __init__(self, total: int, log):
        self.total, self.log, self.times = total, log, []

    def update(self, index: int, names: list[str], seconds: float, rows: list[dict]) -> None:
        self.times.append(seconds)
        steady = self.times[1:] or self.times
        eta = (self.total - index - 1) * float(np.mean(steady))
        psnr = float(np.mean([r["metrics"].get("psnr_motion_mask", float("nan")) for r in rows]))
        self.log(f"batch {index + 1}/{self.total} ({', '.join(names)}): {seconds:.1f}s, PSNR in motion mask "
                 f"{psnr:.2f} dB; ETA {eta:.0f}s")


def evaluate(args, log) -> dict:
    import jax

    from mimaface_jax.inference import pair_tasks, task_batches
    from mimaface_jax.inference.bundle import load_model
    from mimaface_jax.inference.generator import ClipGenerator, GenerationSettings
    from mimaface_jax.metrics.report import write_report
    from mimaface_jax.metrics.score_task import score_task
    from mimaface_jax.metrics.unavailable import SKIPPED
    from mimaface_jax.training import sample_tasks

    ablation = parse_ablations(args.ablate)
    if args.num_videos is not None and args.num_videos < 1:
        raise EvaluateError(f"--num_videos must be >= 1, got {args.num_videos}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EvaluateError(f"--out {out}: exists and is not a folder")
    pairs = pair_tasks.find_pairs(args.pairs) if args.pairs else None   # a bad folder fails before the model loads
    early = resolve_data(args.data, None) if args.data and names_a_path(args.data) else None
    loaded = load_model(args.model, weights=args.weights, step=args.step, log=log)
    if pairs is None:
        path, split, metadata = early or resolve_data(args.data, loaded.config)
        check_layout(metadata, loaded.layout, path)
        config = eval_config(loaded.config, path, split)
    else:
        path, split, config = str(Path(args.pairs).absolute()), None, copy.deepcopy(loaded.config)
    f = int(loaded.model.config.num_frames)
    frames = args.frames if args.frames is not None else (int(config.sample.num_clips) * f if f > 1 else 8)
    if frames < 1:
        raise EvaluateError(f"--frames must be >= 1, got {frames}")
    use_context = ablation.get("ica", True)
    try:
        # ica=off keeps the settings (and so the compiled clip function): the generator's
        # context=False passes no context at all, the source anchor included
        settings = GenerationSettings.from_config(config, sampler=args.sampler, num_steps=args.steps,
                                                  guidance_scale=ablation.get("guidance"), seed=args.seed,
                                                  mia_motion=ablation.get("motion_tokens"),
                                                  mia_identity=ablation.get("identity"))
    except ValueError as err:
        raise EvaluateError(str(err)) from None
    check_mia_switches(ablation, loaded.model.config.mia)
    skipped = dict(SKIPPED)
    if pairs is None:
        tasks, where = sample_tasks.held_out_tasks(config, out, args.num_videos or 8, frames)
    else:
        tasks, notes = pair_tasks.pair_tasks(pairs[:args.num_videos], loaded, frames, args.identity_model, log)
        where = path
        skipped.update(notes)
    faces = face_metrics(loaded, args.identity_model, skipped, log)
    generator = ClipGenerator(config, loaded.model, loaded.params, loaded.ae_params, loaded.mesh, loaded.rules,
                              settings)
    log(f"{len(tasks)} {tasks[0]['kind']}-reenactment videos of {frames} frames from {where}"
        + (f" split {split!r}" if split else " (pairs)"))
    # data parallel: tasks of one length in batches of one video per device (padded)
    batch_size = jax.device_count()
    batches = task_batches.task_batches([len(t["motion"]) for t in tasks], batch_size)
    seeds = [settings.seed + i for i in range(len(tasks))]
    progress = Progress(len(batches), log)
    rows, videos = [None] * len(tasks), [None] * len(tasks)
    for b, (indices, batch_frames, seconds) in enumerate(task_batches.generate(
            generator, tasks, seeds, batches, batch_size, context=use_context)):
        for i, generated in zip(indices, batch_frames):
            task = tasks[i]
            rows[i] = score_task(task, generated, generator.num_frames, faces)
            rows[i]["seed"] = seeds[i]
            videos[i] = (task["source"], generated,
                         None if task["truth"] is None else task["truth"][:len(generated)])
        progress.update(b, [tasks[i]["name"] for i in indices], seconds, [rows[i] for i in indices])
    if faces.landmarker is not None:
        faces.landmarker.close()
    settings_doc = {
        "model": loaded.description, "data": path, "split": split, "task_kind": tasks[0]["kind"],
        "pairs": None if pairs is None else [[t["name"], t["source_path"], t["driving_path"]] for t in tasks],
        "num_videos": len(tasks), "frames": frames, "clip_frames": generator.num_frames,
        # a driving video shorter than --frames gives a shorter task
        "frames_generated": sorted({r["frames"] for r in rows}),
        "context_frames": generator.num_context if use_context else 0,
        "devices": jax.device_count(), "batch_size": batch_size,
        "ablation": ", ".join(args.ablate),
        "generation": dict(settings.to_json(), **({} if use_context else {"source_as_context": False})),
        "resolution": generator.resolution, "identity_model": args.identity_model,
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    doc = write_report(out, settings_doc, rows, skipped, videos)
    return doc


def main(argv=None) -> int:
    args = parse_args(argv)
    from mimaface_jax.config_validation import ConfigError
    from mimaface_jax.face.identity import IdentityModelError
    from mimaface_jax.face.media_io import MediaReadError
    from mimaface_jax.inference.bundle import BundleError
    from mimaface_jax.inference.pair_tasks import PairError

    def log(msg):
        if not args.quiet:
            print(f"evaluate: {msg}", file=sys.stderr, flush=True)

    try:
        doc = evaluate(args, log)
    except (EvaluateError, BundleError, ConfigError, IdentityModelError, MediaReadError, PairError) as err:
        print(f"evaluate: error: {err}", file=sys.stderr)
        return 1
    m = doc["mean"]
    if "psnr_motion_mask" not in m:   # pairs without ground truth
        print(f"wrote {Path(args.out) / 'metrics.json'}, metrics.md and plots (no ground truth): inter-clip "
              f"discontinuity {m.get('interclip_discontinuity', float('nan')):.3f}, flicker "
              f"{m.get('flicker', float('nan')):.4f}")
        return 0
    print(f"wrote {Path(args.out) / 'metrics.json'}, metrics.md and plots: PSNR in motion mask "
          f"{m.get('psnr_motion_mask', float('nan')):.2f} dB (copy the source "
          f"{m.get('psnr_motion_mask_copy_source', float('nan')):.2f}), SSIM {m.get('ssim', float('nan')):.4f}, "
          f"inter-clip discontinuity {m.get('interclip_discontinuity', float('nan')):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
