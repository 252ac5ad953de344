"""A puzzle row means one augmentation of one task's content: resume and predict refuse to reuse
a row under another meaning (another build seed, another role, changed task content)."""

from __future__ import annotations

import json

import pytest

from arc_trm.config import preset
from arc_trm.overrides import apply_overrides
from arc_trm.train import TrainOptions, train
from augment.build import build_set
from augment.options import BuildOptions
from augment.store import BuiltSet
from augment.errors import InputError
from augment.tasks import load_tasks, task_from_json

from conftest import SMALL_TASKS, TINY, run_cli


def tiny_cfg():
    return apply_overrides(preset("cpu-quick"), TINY + ["train.max_steps=2", "train.checkpoint_every=1", "device=cpu"])


def changed_task(task):
    data = task.to_json(with_solutions=True)
    data["train"][0]["output"][0][0] = (data["train"][0]["output"][0][0] + 1) % 10
    return task_from_json(task.id, data, role=task.role)


@pytest.mark.parametrize("what", ["build seed", "role", "content"])
def test_resume_refuses_rows_that_mean_something_else(tmp_path, what):
    tasks = load_tasks(SMALL_TASKS)
    first = build_set(tasks, tmp_path / "a", BuildOptions(augmentations=4, canvas=6, progress=False))
    train(tiny_cfg(), tmp_path / "run", TrainOptions(stop_at=1, built=first, progress=False))
    if what == "build seed":
        other = build_set(tasks, tmp_path / "b", BuildOptions(augmentations=4, seed=1, canvas=6, progress=False))
    elif what == "role":
        other = build_set(load_tasks(SMALL_TASKS.replace("@test", "@train")), tmp_path / "b", BuildOptions(augmentations=4, canvas=6, progress=False))
    else:
        other = build_set([changed_task(tasks[0])] + tasks[1:], tmp_path / "b", BuildOptions(augmentations=4, canvas=6, progress=False))
    with pytest.raises(InputError, match="mean other tasks") as err:
        train(tiny_cfg(), tmp_path / "run", TrainOptions(resume=True, built=other, progress=False))
    assert {"build seed": "augmentation", "role": "augmentation", "content": "content changed"}[what] in str(err.value)


def test_predict_falls_back_for_a_task_whose_content_changed(tmp_path, small_build):
    run = tmp_path / "run"
    train(tiny_cfg(), run, TrainOptions(built=BuiltSet.open(small_build), progress=False))
    tasks = load_tasks(SMALL_TASKS)
    edited = {t.id: (changed_task(t) if i == 0 else t).to_json(with_solutions=False) for i, t in enumerate(tasks)}
    challenges = tmp_path / "edited_challenges.json"
    challenges.write_text(json.dumps(edited))
    proc = run_cli("predict", "--checkpoint", run, "--tasks", f"{challenges}@test", "--out", tmp_path / "s.json",
                   "--no-progress")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "s.predict.json").read_text())
    assert record["untrained_tasks"] == [tasks[0].id]
    assert tasks[0].id in proc.stdout
