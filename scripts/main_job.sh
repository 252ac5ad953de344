#!/usr/bin/env bash
# The main job: the whole pipeline end to end on ARC tasks bundled with the package, no network.
# build -> train (cpu-quick) -> predict with halting -> score -> report and pictures.
# About 5-15 minutes on 2 CPU cores, venv included. Usage: bash scripts/main_job.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh
RUN=${1:-runs/main}
# 16 small ARC-AGI-1 training tasks (grids up to 8x8): their demonstrations train, their test
# inputs are held out and answered, and their known solutions score the result.
TASKS="arc-agi-1:training/0d3d703e+b1948b0a+c8f0f002+d511f180+5582e5ca+3c9b0459+6150a2bd+74dd1130+ed36ccf7+25ff71a9+44f52bb0+a85d4709+6d0aefbc+67a3c6ac+68b16354+3aa6fb7a@test"
BUILD=data/built/main-job
STEPS=${MAIN_JOB_STEPS:-1200}
SETTINGS=(--set data.canvas=8 --set data.augmentations=8 --set train.max_steps="$STEPS" --set train.checkpoint_every=400)

echo "== 1/5 build the augmented task set"
arc-trm build --tasks "$TASKS" --augmentations 8 --canvas 8 --out "$BUILD"
echo "== 2/5 train TRM (cpu-quick preset, $STEPS steps)"
rm -rf "$RUN"
arc-trm train --preset cpu-quick --tasks "$TASKS" --build "$BUILD" --out "$RUN" "${SETTINGS[@]}"
arc-trm plot "$RUN"
echo "== 3/5 voted inference with halting"
arc-trm predict --checkpoint "$RUN" --tasks "$TASKS" --out "$RUN/submission.json"
echo "== 4/5 score against the known solutions"
arc-trm score "$RUN/submission.json" --tasks "$TASKS"
arc-trm score "$RUN/submission.json" --tasks "$TASKS" --json > "$RUN/score.json"
echo "== 5/5 report and pictures of the solved tasks"
arc-trm report "$RUN"
mkdir -p "$RUN/solved"
for task in $(python -c "import json,sys; r=json.load(open(sys.argv[1])); print(' '.join(t['task_id'] for t in r['tasks'] if t['solved'] == t['total']))" "$RUN/score.json"); do
  arc-trm show "$task" --tasks "$TASKS" --submission "$RUN/submission.json" --out "$RUN/solved/$task.png" >/dev/null
done
echo
echo "done. files:"
echo "  $RUN/submission.json      the Kaggle submission (validated)"
echo "  $RUN/report.html          one page over the scored run, a picture per task"
echo "  $RUN/curves.png           training curves"
echo "  $RUN/solved/*.png         the tasks it solved: $(ls "$RUN/solved" | sed 's/.png//' | tr '\n' ' ')"
