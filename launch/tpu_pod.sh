#!/usr/bin/env bash
# usage: bash launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.x=y ...]   (train on every worker)
#        bash launch/tpu_pod.sh setup TPU_NAME ZONE [GIT_URL [REF]]             (install on every worker)
# A TPU pod slice goes from bare workers to training with `setup`, then the training command.
# setup: on every worker, clones the repository (or fetches into an existing clone), checks out
#   REF detached and runs `bash scripts/install.sh tpu`. GIT_URL defaults to this checkout's
#   `origin`, REF to this checkout's HEAD commit (push it first), so every worker runs the commit
#   you have; a branch name means origin's tip of it. The workers need python3.11 (or set
#   PYTHON_ON_WORKERS=/path/to/python3.11).
# training: WORKDIR should be a gs:// bucket path (checkpoints are written by every worker).
# The repository lives at the same path on every worker: REPO_ON_WORKERS (default ~/mimaface_jax).
set -euo pipefail
usage() { sed -n 2,3p "$0" >&2; exit 2; }
repo="${REPO_ON_WORKERS:-~/mimaface_jax}"
case "$repo" in
  *[!A-Za-z0-9_./~-]*) echo "tpu_pod.sh: REPO_ON_WORKERS='$repo' must be a plain path ([A-Za-z0-9_./~-])" >&2; exit 2 ;;
esac

setup() {
  [ $# -ge 2 ] && [ $# -le 4 ] || usage
  local tpu="$1" zone="$2" url="${3:-}" ref="${4:-}"
  local here
  here="$(cd "$(dirname "$0")/.." && pwd)"
  if [ -z "$url" ]; then
    url=$(git -C "$here" remote get-url origin 2>/dev/null) || {
      echo "tpu_pod.sh: this checkout has no 'origin' remote; pass GIT_URL" >&2; exit 2; }
  fi
  if [ -z "$ref" ]; then
    ref=$(git -C "$here" rev-parse HEAD 2>/dev/null) || {
      echo "tpu_pod.sh: cannot read this checkout's HEAD; pass REF" >&2; exit 2; }
  fi
  case "$url" in -*|*[[:space:][:cntrl:]]*|"")
    echo "tpu_pod.sh: GIT_URL '$url' must not be empty, start with '-' or contain spaces" >&2; exit 2 ;; esac
  case "$ref" in -*|*[[:space:][:cntrl:]]*|"")
    echo "tpu_pod.sh: REF '$ref' must not be empty, start with '-' or contain spaces" >&2; exit 2 ;; esac
  command -v gcloud >/dev/null || { echo "tpu_pod.sh: gcloud not found" >&2; exit 2; }
  local py="${PYTHON_ON_WORKERS:-python3.11}"
  # Runs on each worker in its login shell (POSIX sh syntax). REF: a commit, a tag or a branch.
  local remote
  remote="set -eu
if [ -d $repo/.git ]; then git -C $repo remote set-url origin $(printf %q "$url") && git -C $repo fetch --quiet --tags origin
else git clone --quiet $(printf %q "$url") $repo; fi
cd $repo
commit=\$(git rev-parse --verify --quiet $(printf %q "origin/$ref^{commit}") || git rev-parse --verify --quiet $(printf %q "$ref^{commit}")) || { echo \"tpu_pod.sh setup: \$(hostname): $(printf %q "$ref") not found in $(printf %q "$url") (pushed?)\" >&2; exit 2; }
git checkout --quiet --detach \"\$commit\"
PYTHON=$(printf %q "$py") bash scripts/install.sh tpu
echo \"\$(hostname): mimaface_jax at \$(git rev-parse --short HEAD), tpu set installed in $repo/.venv\""
  echo "tpu_pod.sh setup: $tpu ($zone), every worker: $url @ $ref -> $repo, install.sh tpu" >&2
  gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command "$remote"
}

train() {
  [ $# -ge 4 ] || usage
  local tpu="$1" zone="$2" config="$3" workdir="$4"; shift 4
  command -v gcloud >/dev/null || { echo "tpu_pod.sh: gcloud not found" >&2; exit 2; }
  local extra
  extra=$(printf ' %q' "$@")
  [ $# -gt 0 ] || extra=""
  # jax.distributed.initialize() discovers the pod's workers itself (mimaface_jax/training/multihost.py).
  gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
    "cd $repo && .venv/bin/python -m mimaface_jax.train --config $(printf %q "$config") --workdir $(printf %q "$workdir")$extra"
}

if [ "${1:-}" = "setup" ]; then
  shift
  setup "$@"
else
  train "$@"
fi
