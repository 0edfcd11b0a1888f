#!/usr/bin/env bash
# Run the same training command on every worker of a TPU pod slice.
# usage: bash launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.x=y ...]
#   WORKDIR should be a gs:// bucket path (checkpoints are written by every worker).
#   The repository and .venv must exist at the same path on every worker (e.g. ~/mimaface_jax).
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n 2,5p "$0" >&2; exit 2
fi
tpu="$1"; zone="$2"; config="$3"; workdir="$4"; shift 4
command -v gcloud >/dev/null || { echo "tpu_pod.sh: gcloud not found" >&2; exit 2; }
repo="${REPO_ON_WORKERS:-~/mimaface_jax}"
extra=$(printf ' %q' "$@")
# jax.distributed.initialize() discovers the pod's workers itself (mimaface_jax/training/multihost.py).
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd $repo && .venv/bin/python -m mimaface_jax.train --config $(printf %q "$config") --workdir $(printf %q "$workdir")$extra"
