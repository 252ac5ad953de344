#!/usr/bin/env bash
# Set up a virtual environment and run the test suite. This is the README's test command.
#   bash scripts/test.sh            the full suite (CI)
#   bash scripts/test.sh --quick    every test not marked slow: a few minutes, touches every module
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh
args=()
for a in "$@"; do
    if [ "$a" = "--quick" ]; then args+=(-m "not slow"); else args+=("$a"); fi
done
set +e
python -m pytest -q ${args[@]+"${args[@]}"}
rc=$?
set -e
# pytest exits 5 when it collected no tests: treat an empty suite as a failure, not a pass.
if [ "$rc" -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
