"""CLI of the encoder cache pass (``data_pipelines/common/cache_pass.py`` says what it stores).

    python -m data_pipelines.cache_pass --data_dir DIR --dataset NAME[/CONFIG] --split train \\
        --pretrained CKPT_DIR [--batch 16] [--moments_dtype float16|float32]
        [--tokens_dtype float16|float32] [--resolution R] [--no_condition] [--version X.Y.Z]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import sys

from data_pipelines.common.cache_pass import (STORAGE_DTYPES, CachePassConfig,
                                              resolve_dataset_path, run_cache_pass)
from mimaface_jax.data.encoder_cache import EncoderCacheError
from mimaface_jax.importers.pretrained_store import PretrainedStoreError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data_pipelines.cache_pass",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="the TFDS data_dir of the build")
    parser.add_argument("--dataset", required=True, help="NAME or NAME/CONFIG, e.g. "
                        "voxceleb2/crop512")
    parser.add_argument("--version", help="version folder (default: the highest built)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--pretrained", required=True,
                        help="pretrained Orbax checkpoint with components vae and clip "
                        "(python -m mimaface_jax.convert all ...)")
    parser.add_argument("--batch", type=int, default=16, help="frames per encoder call")
    parser.add_argument("--moments_dtype", choices=STORAGE_DTYPES, default="float16")
    parser.add_argument("--tokens_dtype", choices=STORAGE_DTYPES, default="float16")
    parser.add_argument("--resolution", type=int,
                        help="frame side the pipeline will yield (default: the crop size)")
    parser.add_argument("--no_condition", action="store_true",
                        help="do not cache the condition images' moments")
    parser.add_argument("--records_per_shard", type=int, default=64)
    parser.add_argument("--out", help="cache folder (default: <dataset>/encoder_cache/<split>)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        path = resolve_dataset_path(args.data_dir, args.dataset, args.version)
        config = CachePassConfig(batch=args.batch, moments_dtype=args.moments_dtype,
                                 tokens_dtype=args.tokens_dtype, resolution=args.resolution,
                                 condition=not args.no_condition,
                                 records_per_shard=args.records_per_shard)
        run_cache_pass(path, args.split, args.pretrained, out=args.out, config=config)
    except (EncoderCacheError, PretrainedStoreError, FileNotFoundError, ValueError) as e:
        print(f"cache_pass: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
