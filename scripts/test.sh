#!/usr/bin/env bash
# Set up a virtual environment and run the test suite. This is the README's test command.
#   bash scripts/test.sh            the full suite (CI)
#   bash scripts/test.sh --quick    every test not marked slow (about 2 minutes on 2 cores); a check in
#                                   tests/test_tiers.py keeps it importing every module
# Other arguments go to pytest after ours (so `-n 0` runs in one process). Tests run in one worker
# per core (pytest-xdist; conftest gives each process one torch thread): on 2 cores the full suite
# took 442 s this way against 796 s in one process (benchmarks/RESULTS.md, "Test suite").
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh
args=(-n auto --dist worksteal)
for a in "$@"; do
    if [ "$a" = "--quick" ]; then args+=(-m "not slow"); else args+=("$a"); fi
done
set +e
python -m pytest -q "${args[@]}"
rc=$?
set -e
# pytest exits 5 when it collected no tests: treat an empty suite as a failure, not a pass.
if [ "$rc" -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
