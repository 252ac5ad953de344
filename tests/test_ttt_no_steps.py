"""ttt from a checkpoint when the plan leaves no training step: it predicts with the checkpoint's
weights when the final prediction fits the time left, else the fallback stands and one line says
why. The speed probe is replaced by fixed figures, so the plan is the same on any machine."""

from __future__ import annotations

import json

import pytest

from arc_trm import ttt_phases
from arc_trm.ttt_plan import Throughput
from augment.tasks import load_tasks
from submission.kaggle import fallback_submission, load_submission, validate_submission

from conftest import TINY, cli_in_process, sets, write_tiny_checkpoint

TASKS = "arc-agi-1:training/3c9b0459+6150a2bd@test"


def run_ttt(tmp_path, monkeypatch, infer_step_s: float, per_task: bool = False):
    """A 120 s run whose probe reads a very slow training step and `infer_step_s` per inference
    step: the plan reserves 1.25 x 3 halting steps x infer_step_s for the final prediction (one
    batch of views) and as much for each of two quick ones, so no training step fits when their
    sum exceeds the time left."""
    pre = write_tiny_checkpoint(tmp_path / "pre")  # its step_N folder
    monkeypatch.setattr(ttt_phases, "measure_throughput", lambda *a, **k: Throughput(1e6, infer_step_s))
    out = tmp_path / "ttt"
    proc = cli_in_process("ttt", "--tasks", TASKS, "--checkpoint", pre, "--budget", "120s", "--out", out,
                          "--no-progress", *(["--per-task"] if per_task else []),
                          *sets([s for s in TINY if not s.startswith("data.augmentations")]))  # 16 views an input
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, out, pre


@pytest.mark.parametrize("per_task", [False, True])
def test_no_step_fits_but_the_prediction_does_it_predicts_with_the_checkpoints_weights(tmp_path, monkeypatch,
                                                                                      per_task):
    # 50 s for the final prediction fits the ~110 s left, 150 s with the quick ones does not; per task,
    # the first task's share (4 of 6 demonstrations, ~75 s) and the second's (the rest) are alike.
    proc, out, pre = run_ttt(tmp_path, monkeypatch, 40 / 3, per_task)
    lines = proc.stdout.splitlines()
    assert "no time to train: predicting with the checkpoint's weights" in lines, proc.stdout
    plan = json.loads(((out / "tasks" / "3c9b0459") if per_task else out).joinpath("ttt_plan.json").read_text())
    assert plan["steps"] == 0
    tasks = load_tasks(TASKS)
    validate_submission(load_submission(out / "submission.json"), tasks)
    record = json.loads((out / "submission.predict.json").read_text())
    if per_task:
        assert record["answered_tasks"] == ["3c9b0459", "6150a2bd"], proc.stdout
    else:
        assert record["views"] > 0 and record["checkpoint"] == str(pre.resolve())
    assert not (out / "checkpoints").exists()  # nothing was trained


def test_when_not_even_the_prediction_fits_the_fallback_stands_and_one_line_says_why(tmp_path, monkeypatch):
    proc, out, _ = run_ttt(tmp_path, monkeypatch, 1000.0)  # 3750 s for the final prediction alone
    said = [line for line in proc.stdout.splitlines() if line.startswith("no time")]
    assert len(said) == 1 and "the fallback submission stands" in said[0] and "prediction" in said[0], proc.stdout
    tasks = load_tasks(TASKS)
    assert load_submission(out / "submission.json") == fallback_submission(tasks)
    record = json.loads((out / "submission.predict.json").read_text())  # the fallback's: no view, no answer
    assert (record["views"], record["answered"]) == (0, 0)


def test_a_run_that_ends_on_its_fallback_can_be_scored_and_reported(tmp_path, monkeypatch):
    """Its record was written only by a prediction: `score RUN/submission.json` and `report RUN`
    said no task source was recorded."""
    # no step and no prediction fit, whatever the machine's speed (a quick set-up left a 1 s budget
    # room for a step, and the run then answered)
    monkeypatch.setattr(ttt_phases, "measure_throughput", lambda *a, **k: Throughput(1e6, 1e6))
    out = tmp_path / "ttt"
    proc = cli_in_process("ttt", "--tasks", TASKS, "--budget", "1s", "--out", out, "--no-progress", *sets(TINY))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tasks = load_tasks(TASKS)
    assert load_submission(out / "submission.json") == fallback_submission(tasks)
    record = json.loads((out / "submission.predict.json").read_text())
    assert (record["views"], record["answered"], record["submission"]) == (0, 0, "submission.json")
    scored = cli_in_process("score", out / "submission.json")
    assert scored.returncode == 0 and "0.00 of 2 tasks" in scored.stdout, scored.stdout + scored.stderr
    assert cli_in_process("report", out).returncode == 0 and (out / "report.html").is_file()


def test_the_plan_line_shows_a_reserve_under_a_second(tmp_path, monkeypatch):
    """A final prediction reserved 0.4 s read "0 s reserved", as if none were."""
    pre = write_tiny_checkpoint(tmp_path / "pre")
    monkeypatch.setattr(ttt_phases, "measure_throughput", lambda *a, **k: Throughput(0.01, 0.4 / 3.75))
    out = tmp_path / "ttt"
    proc = cli_in_process("ttt", "--tasks", TASKS, "--checkpoint", pre, "--budget", "120s", "--out", out,
                          "--no-progress", *sets([*TINY, "train.max_steps=2"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("plan: "))
    assert json.loads((out / "ttt_plan.json").read_text())["predict_s"] == pytest.approx(0.4)
    assert "0.4s reserved for the final prediction" in line, line
    assert "\nbudget: 2m00s, until " in proc.stdout, "the budget read back, with its unit"


def test_a_budget_spent_in_the_build_says_so_and_probes_nothing(tmp_path, monkeypatch):
    """A tiny budget overrun by the set-up: the run still probed and planned past the deadline,
    then ended on "done in 22 s of 10 s"."""
    real_prepare = ttt_phases.prepare

    def overrunning_build(options, job, d):
        prepared = real_prepare(options, job, d)
        job.deadline = job.start  # the build took the whole budget
        return prepared

    def probe(*args, **kwargs):
        raise AssertionError("the speed probe ran past the deadline")

    monkeypatch.setattr(ttt_phases, "prepare", overrunning_build)
    monkeypatch.setattr(ttt_phases, "measure_throughput", probe)
    out = tmp_path / "ttt"
    proc = cli_in_process("ttt", "--tasks", TASKS, "--budget", "10m", "--out", out, "--no-progress", *sets(TINY))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("the deadline has passed before training could start: the budget (") and \
        last.endswith("nothing is trained, the fallback submission stands"), proc.stdout
    assert "done in" not in proc.stdout
    assert load_submission(out / "submission.json") == fallback_submission(load_tasks(TASKS))


def test_a_budget_spent_in_the_speed_probe_stops_it_and_says_so(tmp_path, monkeypatch):
    """The probe ran its warm-up and 3 timed calls of each kind whatever the deadline (a 10 s budget
    ended "done in 25 s of 10 s"), then planned. Here the first probed step takes the whole budget:
    the probe stops after it (1 train and 1 inference call, not 8), and the run ends on the set-up line."""
    from arc_trm import ttt_probe

    calls = []
    real_step = ttt_probe.train_step

    def overrunning_step(*args, **kwargs):
        calls.append("train")
        if len(calls) == 1:  # the budget is gone, by every check from here on
            monkeypatch.setattr(ttt_phases, "time_is_left", lambda *a: False)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(ttt_probe, "train_step", overrunning_step)
    out = tmp_path / "ttt"
    proc = cli_in_process("ttt", "--tasks", TASKS, "--budget", "10m", "--out", out, "--no-progress", *sets(TINY))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert calls == ["train"], "the probe went on past the deadline"
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("the deadline has passed before training could start"), proc.stdout
    assert not (out / "ttt_plan.json").exists(), "a plan was made past the deadline"
    assert load_submission(out / "submission.json") == fallback_submission(load_tasks(TASKS))


@pytest.mark.parametrize("per_task", [False, True])
def test_from_scratch_with_no_step_before_the_deadline_the_fallback_stands(tmp_path, monkeypatch, per_task):
    """The plan gives any spare time a first phase to time, so a step slower than the probe read
    left training at step 0 (its deadline already past), and the untrained weights' answers
    replaced the fallback (per task, counted as answered by their own model)."""
    import dataclasses
    import time

    real = ttt_phases.train
    monkeypatch.setattr(ttt_phases, "train", lambda cfg, out, options: real(
        cfg, out, dataclasses.replace(options, deadline=time.time())))  # the deadline comes before the first step
    out = tmp_path / "ttt"
    proc = cli_in_process("ttt", "--tasks", TASKS, "--budget", "60s", "--out", out, "--no-progress",
                          *(["--per-task"] if per_task else []), *sets(TINY))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no training step fitted in the time left; the fallback submission stands" in proc.stdout, proc.stdout
    assert load_submission(out / "submission.json") == fallback_submission(load_tasks(TASKS))
    if per_task:
        assert "per-task: 0 of 2 tasks answered by their own model" in proc.stdout, proc.stdout
