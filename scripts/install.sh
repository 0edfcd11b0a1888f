#!/usr/bin/env bash
# Creates ./.venv (Python 3.11) and installs mimaface_jax into it.
#   bash scripts/install.sh          runtime set
#   bash scripts/install.sh tf       runtime + TensorFlow (TensorBoard event files from clu's writer)
#   bash scripts/install.sh test     runtime + TensorFlow + parity references (torch, diffusers) + pytest
# mediapipe is installed in a second step with --no-deps (see requirements/mediapipe.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-runtime}"
case "$extra" in
  runtime|tf|test) ;;
  *) echo "usage: bash scripts/install.sh [runtime|tf|test]" >&2; exit 2 ;;
esac
py="${PYTHON:-python3.11}"
if ! command -v "$py" >/dev/null; then
  echo "install.sh: $py not found; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
# A finished install of the same pins and mode is not redone (pip would spend ~30 s finding
# that out); the stamp covers every requirements file and setup.py.
stamp=".venv/.mimaface-install-$extra"
digest=$(cat requirements/*.txt setup.py | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
  echo "already installed ($extra) in $(pwd)/.venv"
  exit 0
fi
rm -f .venv/.mimaface-install-*  # an install changes the venv for every mode
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
"${pip[@]}" install -r requirements/build.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"${pip[@]}" install -r "requirements/$extra.txt" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"${pip[@]}" install --no-deps -r requirements/mediapipe.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"${pip[@]}" install --no-deps --no-build-isolation -e . 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
# each set contains the smaller ones (requirements/*.txt: test -> tf -> runtime)
case "$extra" in
  test) covered="runtime tf test" ;;
  tf) covered="runtime tf" ;;
  *) covered="runtime" ;;
esac
for mode in $covered; do echo "$digest" > ".venv/.mimaface-install-$mode"; done
echo "installed ($extra) into $(pwd)/.venv"
