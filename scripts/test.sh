#!/usr/bin/env bash
# Set up a virtual environment and run the test suite. This is the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh
set +e
python -m pytest -q "$@"
rc=$?
set -e
# pytest exits 5 when it collected no tests: treat an empty suite as a failure, not a pass.
if [ "$rc" -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
