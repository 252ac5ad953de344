"""`ttt --per-task`: each task trained and predicted alone with its own model copy, the budget
split by demonstrations, the run's submission assembled from the tasks' answers."""

from __future__ import annotations

import json

import pytest

from arc_trm.ttt import time_share, ttt
from arc_trm.ttt_plan import TTTOptions
from augment.tasks import load_tasks
from submission.kaggle import load_submission, validate_submission

from conftest import SMALL_TASKS, TINY, cli_in_process


def test_time_share_follows_the_demonstrations_left():
    assert time_share(100.0, [2, 3, 5]) == pytest.approx(20.0)
    assert time_share(80.0, [3, 5]) == pytest.approx(30.0)
    assert time_share(50.0, [5]) == pytest.approx(50.0)


def test_per_task_runs_one_model_per_task_and_merges_their_answers(tmp_path):
    out = tmp_path / "run"
    ttt(TTTOptions(tasks=SMALL_TASKS, out=out, budget="60s", preset="cpu-quick", progress=False, per_task=True,
                   overrides=(*TINY, "train.max_steps=6")))
    tasks = load_tasks(SMALL_TASKS)
    merged = load_submission(out / "submission.json")
    validate_submission(merged, tasks)
    for task in tasks:
        folder = out / "tasks" / task.id
        ids = json.loads(next((folder / "checkpoints").glob("step_*/identifiers.json")).read_text())["identifiers"]
        assert {i.split("#")[0] for i in ids[1:]} == {task.id}, "a task's model knows only its own puzzles"
        assert merged[task.id] == load_submission(folder / "submission.json")[task.id]
        info = json.loads((folder / "submission.predict.json").read_text())
        assert info["views"] > 0 and info["untrained_tasks"] == []


def test_per_task_is_refused_under_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    proc = cli_in_process("ttt", "--tasks", SMALL_TASKS, "--out", tmp_path / "run", "--per-task", "--budget", "30s")
    assert proc.returncode == 2 and "--per-task runs in one process" in proc.stderr
