#!/usr/bin/env bash
# Creates ./.venv (Python 3.11) and installs mimaface_jax into it.
#   bash scripts/install.sh          runtime set
#   bash scripts/install.sh tf       runtime + TensorFlow (TensorBoard event files from clu's writer)
#   bash scripts/install.sh test     runtime + TensorFlow + parity references (torch, diffusers) + pytest
#   bash scripts/install.sh gpu      runtime + jax's CUDA 12 plugin for the pinned jaxlib (NVIDIA GPUs)
#   bash scripts/install.sh tpu      runtime + libtpu for the pinned jax (TPU VMs; a pod: launch/tpu_pod.sh setup)
# mediapipe is installed in a second step with --no-deps (see requirements/mediapipe.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: bash scripts/install.sh [runtime|tf|test|gpu|tpu]"
[ $# -le 1 ] || { echo "$usage" >&2; exit 2; }
extra="${1:-runtime}"
case "$extra" in
  runtime|tf|test|gpu|tpu) ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
py="${PYTHON:-python3.11}"
if ! command -v "$py" >/dev/null; then
  echo "install.sh: $py not found; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
# A finished install of the same pins and mode is not redone (pip would spend ~30 s finding
# that out); the stamp covers the requirements files of the CPU sets and setup.py, plus the
# accelerator set's own file for gpu / tpu (so that editing gpu.txt / tpu.txt does not
# invalidate a CPU venv's stamps).
accelerator_sets="gpu tpu"
cpu_files=()
for f in requirements/*.txt; do
  case " $accelerator_sets " in *" $(basename "$f" .txt) "*) ;; *) cpu_files+=("$f") ;; esac
done
digest_of() {  # mode -> sha256 of the files its stamp covers
  local files=("${cpu_files[@]}")
  case " $accelerator_sets " in *" $1 "*) files+=("requirements/$1.txt") ;; esac
  cat "${files[@]}" setup.py | sha256sum | cut -d' ' -f1
}
stamp=".venv/.mimaface-install-$extra"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(digest_of "$extra")" ]; then
  echo "already installed ($extra) in $(pwd)/.venv"
  exit 0
fi
rm -f .venv/.mimaface-install-*  # an install changes the venv for every mode
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
"${pip[@]}" install -r requirements/build.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"${pip[@]}" install -r "requirements/$extra.txt" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"${pip[@]}" install --no-deps -r requirements/mediapipe.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"${pip[@]}" install --no-deps --no-build-isolation -e . 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
# each set contains the smaller ones (requirements/*.txt: test -> tf -> runtime; gpu, tpu -> runtime)
case "$extra" in
  test) covered="runtime tf test" ;;
  tf) covered="runtime tf" ;;
  gpu|tpu) covered="runtime $extra" ;;
  *) covered="runtime" ;;
esac
for mode in $covered; do digest_of "$mode" > ".venv/.mimaface-install-$mode"; done
echo "installed ($extra) into $(pwd)/.venv"
