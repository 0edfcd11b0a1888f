#!/usr/bin/env bash
# Train on one GPU.
# usage: bash launch/single_gpu.sh CONFIG WORKDIR [--config.x=y ...]
#   e.g. bash launch/single_gpu.sh configs/sd15_stage1_image.py workdirs/s1 --config.data.global_batch_size=4
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n 2,4p "$0" >&2; exit 2
fi
config="$1"; workdir="$2"; shift 2
[ -f "${config%%:*}" ] || { echo "single_gpu.sh: config file '${config%%:*}' not found" >&2; exit 2; }
cd "$(dirname "$0")/.."
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}"
exec .venv/bin/python -m mimaface_jax.train --config "$config" --workdir "$workdir" \
  --config.mesh.data=1 --config.mesh.fsdp=1 --config.mesh.tensor=1 "$@"
