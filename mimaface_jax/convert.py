"""Pretrained imports into an Orbax "pretrained" checkpoint.

  python -m mimaface_jax.convert unet --unet DIR [--motion-module PATH] --out DIR [--verify]
  python -m mimaface_jax.convert vae  --vae DIR  --out DIR [--verify]
  python -m mimaface_jax.convert clip --clip DIR --out DIR [--verify]
  python -m mimaface_jax.convert all  --sd DIR --motion-module PATH --clip DIR --out DIR [--verify]

``all`` reads an SD-1.5 folder (its ``unet/`` and ``vae/`` sub-folders), an AnimateDiff
motion-module file or MotionAdapter folder and an HF CLIP folder, and writes one checkpoint
with the components ``unet``, ``vae`` and ``clip`` that the training program loads.
``--verify`` (needs the ``parity`` extra: torch + diffusers) runs the PyTorch reference built
from the same files and the imported model on the same random inputs and prints
``max_abs_diff=<float>`` as the last line; above 1e-4 the exit status is 1 and nothing is
written. Every import and check happens before anything is written; an existing ``--out`` is
never overwritten. Bad input (a missing folder, a folder without safetensors weights, a config
setting the importers do not support, weights that do not fit the model) ends with a message on
stderr naming the file and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from mimaface_jax.importers.common import CheckpointConfigError, CheckpointFileError, WeightImportError

VERIFY_TOLERANCE = 1e-4


class ConvertError(RuntimeError):
    pass


def _existing_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise ConvertError(f"{what} folder not found: {path}")
    return path


def _existing_path(path: str, what: str) -> str:
    if not os.path.exists(path):
        raise ConvertError(f"{what} not found: {path}")
    return path


def _import_unet(unet_dir: str, motion_path: str | None):
    from mimaface_jax.importers.unet import import_unet_state
    from flax import nnx
    config, graphdef, state = import_unet_state(unet_dir, motion_path)
    return config, nnx.merge(graphdef, state), state


def _import_vae(vae_dir: str):
    from flax import nnx
    from mimaface_jax.importers.vae import load_vae
    config, model = load_vae(vae_dir)
    return config, model, nnx.state(model, nnx.Param)


def _import_clip(clip_dir: str):
    from flax import nnx
    from mimaface_jax.importers.clip import load_clip_vision
    config, model = load_clip_vision(clip_dir)
    return config, model, nnx.state(model, nnx.Param)


def _plan(args) -> dict[str, dict]:
    """Which components to import, from where (paths checked first)."""
    if args.command == "unet":
        motion = _existing_path(args.motion_module, "motion-module file") if args.motion_module else None
        return {"unet": {"unet_dir": _existing_dir(args.unet, "--unet"), "motion_path": motion}}
    if args.command == "vae":
        return {"vae": {"vae_dir": _existing_dir(args.vae, "--vae")}}
    if args.command == "clip":
        return {"clip": {"clip_dir": _existing_dir(args.clip, "--clip")}}
    sd = _existing_dir(args.sd, "--sd (SD-1.5)")
    return {
        "unet": {"unet_dir": _existing_dir(os.path.join(sd, "unet"), "SD-1.5 unet"),
                 "motion_path": _existing_path(args.motion_module, "motion-module file")},
        "vae": {"vae_dir": _existing_dir(os.path.join(sd, "vae"), "SD-1.5 vae")},
        "clip": {"clip_dir": _existing_dir(args.clip, "--clip")},
    }


def _verify(name: str, sources: dict, config, model) -> float:
    from mimaface_jax.importers import reference
    reference.highest_precision()
    if name == "unet":
        frames = 2 if sources["motion_path"] else 1
        return reference.compare_unet(sources["unet_dir"], sources["motion_path"], config, model,
                                      num_frames=frames)
    if name == "vae":
        return reference.compare_vae(sources["vae_dir"], model)
    return reference.compare_clip(sources["clip_dir"], model, config)


def run(args) -> int:
    from mimaface_jax.importers.pretrained_store import write_pretrained
    if os.path.exists(args.out):
        raise ConvertError(f"--out {args.out} already exists; refusing to overwrite it")
    importers = {"unet": _import_unet, "vae": _import_vae, "clip": _import_clip}
    plan = _plan(args)
    imported = {}
    for name, sources in plan.items():
        print(f"importing {name} from {', '.join(str(v) for v in sources.values() if v)}", flush=True)
        imported[name] = importers[name](**sources)
    worst = None
    if args.verify:
        diffs = {}
        for name, (config, model, _) in imported.items():
            diffs[name] = _verify(name, plan[name], config, model)
            print(f"{name} max_abs_diff={diffs[name]:.3e}", flush=True)
        worst = max(diffs.values())
        if worst > VERIFY_TOLERANCE:
            print(f"verification failed: max_abs_diff {worst:.3e} > {VERIFY_TOLERANCE}; "
                  f"nothing written to {args.out}", file=sys.stderr)
            print(f"max_abs_diff={worst:.6e}")
            return 1
    meta = {"configs": {n: dataclasses.asdict(c) for n, (c, _, _) in imported.items()},
            "sources": {n: {k: v for k, v in s.items()} for n, s in plan.items()}}
    out = write_pretrained(args.out, {n: state for n, (_, _, state) in imported.items()}, meta)
    print(f"wrote {sorted(imported)} to {out}", flush=True)
    if worst is not None:
        print(f"max_abs_diff={worst:.6e}")
    return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mimaface_jax.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    unet = sub.add_parser("unet", help="diffusers U-Net folder (+ motion modules)")
    unet.add_argument("--unet", required=True, help="diffusers UNet2DConditionModel folder")
    unet.add_argument("--motion-module", help="MotionAdapter folder or AnimateDiff .safetensors")
    vae = sub.add_parser("vae", help="diffusers AutoencoderKL folder")
    vae.add_argument("--vae", required=True)
    clip = sub.add_parser("clip", help="HF CLIPModel / CLIPVisionModel folder")
    clip.add_argument("--clip", required=True)
    everything = sub.add_parser("all", help="SD-1.5 folder + motion modules + CLIP folder")
    everything.add_argument("--sd", required=True, help="SD-1.5 folder with unet/ and vae/")
    everything.add_argument("--motion-module", required=True)
    everything.add_argument("--clip", required=True)
    for p in (unet, vae, clip, everything):
        p.add_argument("--out", required=True, help="new folder for the Orbax checkpoint")
        p.add_argument("--verify", action="store_true",
                       help="compare with the PyTorch reference (needs torch + diffusers)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mimaface_jax.importers.reference import ReferenceUnavailableError
    try:
        return run(args)
    except (ConvertError, WeightImportError, CheckpointFileError, CheckpointConfigError,
            ReferenceUnavailableError) as e:
        print(f"convert {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
