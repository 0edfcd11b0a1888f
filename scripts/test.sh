#!/usr/bin/env bash
# The test command of README.md: installs the test set into ./.venv, then runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
set +e
.venv/bin/python -m pytest -n 2 --dist loadgroup -q tests "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; failing" >&2
  exit 1
fi
exit "$rc"
