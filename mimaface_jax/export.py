"""Export a training run as an inference bundle.

    python -m mimaface_jax.export --workdir RUN --out BUNDLE [--weights ema|raw] [--step N]

The bundle (``inference/bundle.py``) holds the model weights (EMA by default), the frozen
autoencoder, the CLIP tower (part of the model), the expression basis and motion layout, the
resolved config and a format version; no optimizer or data-iterator state. Errors: one line on
stderr naming the file, exit status 1, nothing written.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mimaface_jax.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="training run directory (config.json + checkpoints/)")
    p.add_argument("--out", required=True, help="bundle folder to create (must not exist or be empty)")
    p.add_argument("--weights", choices=("ema", "raw"), default="ema")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    args = p.parse_args(argv)
    from mimaface_jax.inference.bundle import BundleError, export

    try:
        export(args.workdir, args.out, args.weights, args.step, log=lambda m: print(m, flush=True))
    except BundleError as err:
        print(f"export: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
