"""`ttt --per-task`: each task trained and predicted alone with its own model copy, the budget
split by demonstrations, the run's submission assembled from the tasks' answers."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from arc_trm import runs
from arc_trm.ttt import as_test_tasks, ttt
from arc_trm.ttt_per_task import TASK_DONE, per_task, time_share
from arc_trm.ttt_plan import TTTJob, TTTOptions
from augment.errors import InputError
from augment.tasks import load_tasks, safe_name
from submission.kaggle import fallback_submission, load_submission, validate_submission, write_submission

from conftest import SMALL_TASKS, TINY, cli_in_process, run_cli, sets


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


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_second_per_task_run_is_refused_before_it_writes_and_resume_keeps_the_answers(tmp_path, monkeypatch):
    """The first run's answers live in RUN/tasks/ and in a submission outside RUN: a second run
    refuses before writing anything, S included; --resume keeps every task answered; --force
    moves the run aside."""
    started = stand_in_runs(monkeypatch)
    out, sub = tmp_path / "run", tmp_path / "submission.json"
    options = TTTOptions(tasks=SMALL_TASKS, out=out, submission=sub, budget="60s", progress=False, per_task=True)
    ttt(options)
    assert len(started) == 3 and sorted(p.name for p in out.iterdir()) == ["tasks", "ttt_run.json"]
    before = tree(tmp_path)
    proc = cli_in_process("ttt", "--tasks", SMALL_TASKS, "--out", out, "--submission", sub, "--per-task",
                          "--budget", "60s", "--no-progress")
    assert proc.returncode == 2 and "already holds a run (ttt_run.json, tasks)" in proc.stderr, proc.stderr
    assert tree(tmp_path) == before and len(started) == 3, "the refused run wrote or trained"

    with pytest.raises(InputError, match="pass one"):
        ttt(dataclasses.replace(options, resume=True, force=True))
    ttt(dataclasses.replace(options, resume=True))  # every task answered: none is trained again
    assert tree(tmp_path) == before and len(started) == 3
    ttt(dataclasses.replace(options, force=True))
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert {k: v for k, v in tree(aside).items()} == {k[4:]: v for k, v in before.items() if k.startswith("run/")}
    assert len(started) == 6


def test_per_task_skips_a_task_that_fits_no_canvas_and_trains_the_rest(tmp_path, capsys):
    big, small = "007bbfb7", "3c9b0459"  # a 9x9 grid against the 6x6 canvas of TINY; 3x3 grids
    out = tmp_path / "run"
    ttt(TTTOptions(tasks=f"arc-agi-1:training/{big}+{small}@test", out=out, budget="60s", preset="cpu-quick",
                   progress=False, per_task=True, overrides=(*TINY, "train.max_steps=2")))
    assert f"skipping task {big}, which keeps its fallback answer" in capsys.readouterr().err
    tasks = {t.id: t for t in load_tasks(f"arc-agi-1:training/{big}+{small}@test")}
    merged = load_submission(out / "submission.json")
    validate_submission(merged, list(tasks.values()))
    assert merged[big] == fallback_submission([tasks[big]])[big]  # the skipped task keeps its fallback
    assert merged[small] == load_submission(out / "tasks" / small / "submission.json")[small]  # trained after it


class Clock:
    """time.time() for arc_trm.ttt, moved on by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def stand_in_runs(monkeypatch, clock: Clock | None = None, after: float = 0.0, whole_share: bool = False
                  ) -> list[TTTJob]:
    """test_time_train replaced by a run that answers its task with the fallback (and moves the
    clock on by `after` seconds, or to its own deadline with `whole_share`): the per-task loop
    alone, without torch's cost."""
    import arc_trm.ttt as ttt_module
    import arc_trm.ttt_per_task as per_task_module
    import arc_trm.ttt_phases as phases

    started: list[TTTJob] = []

    def stand_in(options, job):
        started.append(job)
        runs.claim_run_folder(job.out, force=False, resume=getattr(options, "resume", False))  # as train()
        job.out.mkdir(parents=True, exist_ok=True)
        (job.out / "config.json").write_text("{}")
        write_submission(job.submission, fallback_submission(job.answered), job.answered)
        if clock is not None:
            clock.now = job.deadline if whole_share else clock.now + after
        return phases.TTTOutcome()

    monkeypatch.setattr(phases, "test_time_train", stand_in)
    if clock is not None:
        for module in (ttt_module, per_task_module):
            monkeypatch.setattr(module, "time", clock)
    return started


def test_resumed_per_task_continues_a_task_a_signal_stopped_though_it_holds_a_quick_answer(tmp_path, monkeypatch):
    import arc_trm.ttt_phases as phases

    tasks = as_test_tasks(load_tasks(SMALL_TASKS))
    started = stand_in_runs(monkeypatch)
    run_once = phases.test_time_train

    def stopped_on_the_second(options, job):  # its quick prediction answered it, then SIGINT
        outcome = run_once(options, job)
        return phases.TTTOutcome(5, "SIGINT") if job.tasks[0].id == tasks[1].id else outcome

    monkeypatch.setattr(phases, "test_time_train", stopped_on_the_second)
    job = per_task_job(tmp_path, tasks, time.time(), 600.0)
    options = TTTOptions(tasks=SMALL_TASKS, out=job.out, per_task=True)
    assert per_task(options, job).stopped_by == "SIGINT"
    monkeypatch.setattr(phases, "test_time_train", run_once)
    result = per_task(dataclasses.replace(options, resume=True), job)
    assert result.earlier == [tasks[0].id] and result.trained == [tasks[1].id, tasks[2].id]
    assert [j.tasks[0].id for j in started] == [tasks[0].id, tasks[1].id, tasks[1].id, tasks[2].id]


def test_per_task_looks_up_the_pretrained_run_s_checkpoint_once(tmp_path, monkeypatch, capsys):
    import arc_trm.ttt_phases as phases
    from arc_trm import checkpoint as ckpt
    from conftest import write_tiny_checkpoint

    pretrained = tmp_path / "pretrained"
    older = write_tiny_checkpoint(pretrained)
    (pretrained / "checkpoints" / "latest").write_text("step_0009999")  # a checkpoint a full disk cut short
    tasks = as_test_tasks(load_tasks(SMALL_TASKS))
    stand_in_runs(monkeypatch)
    run_once, loaded = phases.test_time_train, []

    def loading(options, job):  # as ttt_config does
        loaded.append(ckpt.load_checkpoint(options.checkpoint).folder)
        return run_once(options, job)

    monkeypatch.setattr(phases, "test_time_train", loading)
    job = per_task_job(tmp_path, tasks, time.time(), 600.0)
    per_task(TTTOptions(tasks=SMALL_TASKS, out=job.out, per_task=True, checkpoint=str(pretrained)), job)
    assert loaded == [older] * 3
    assert capsys.readouterr().err.count("names step_0009999, which is missing") == 1
    record = json.loads((job.out / "submission.predict.json").read_text())
    assert record["checkpoint"] == str(pretrained.resolve())  # the record names what the user gave


def per_task_job(tmp_path, tasks, start: float, budget: float) -> TTTJob:
    sub = tmp_path / "run" / "submission.json"
    sub.parent.mkdir(parents=True, exist_ok=True)
    write_submission(sub, fallback_submission(tasks), tasks)
    return TTTJob(tasks, tasks, tmp_path / "run", sub, start, start + budget)


def test_per_task_stops_at_the_deadline_and_keeps_what_it_has(tmp_path, monkeypatch, capsys):
    tasks = as_test_tasks(load_tasks(SMALL_TASKS))
    clock = Clock(1000.0)
    started = stand_in_runs(monkeypatch, clock, after=60.0)  # the first task runs past the 50 s deadline
    job = per_task_job(tmp_path, tasks, 1000.0, 50.0)
    per_task(TTTOptions(tasks=SMALL_TASKS, out=job.out, per_task=True), job)
    assert [j.tasks[0].id for j in started] == [tasks[0].id], "a task was started past the deadline"
    assert "deadline reached: 2 of 3 tasks keep their fallback answers" in capsys.readouterr().out
    validate_submission(load_submission(job.submission), tasks)
    assert sorted(p.name for p in (job.out / "tasks").iterdir()) == [tasks[0].id]
    # One task left: its line is in the singular ("1 of 2 tasks keep their fallback answers" before).
    clock.now = 1000.0
    two = per_task_job(tmp_path / "two", tasks[:2], 1000.0, 50.0)
    per_task(TTTOptions(tasks=SMALL_TASKS, out=two.out, per_task=True), two)
    assert "deadline reached: 1 of 2 tasks keeps its fallback answer\n" in capsys.readouterr().out


def test_per_task_shares_hand_out_the_time_before_the_margin_not_the_margin(tmp_path, monkeypatch, capsys):
    """Each task's share came from the time left to the deadline, margin included: tasks that used
    their shares ran the last one to the deadline itself, and with many tasks (each keeping back
    its own 5%) the loop's check, which keeps the margin, left the last ones untrained."""
    tasks = as_test_tasks(load_tasks(SMALL_TASKS))
    clock = Clock(1000.0)
    started = stand_in_runs(monkeypatch, clock, whole_share=True)
    job = per_task_job(tmp_path, tasks, 1000.0, 50.0)
    options = TTTOptions(tasks=SMALL_TASKS, out=job.out, per_task=True)
    per_task(options, job)
    margin = options.margin * 50.0
    assert [j.tasks[0].id for j in started] == [t.id for t in tasks], capsys.readouterr().out
    assert started[-1].deadline == pytest.approx(job.deadline - margin)
    assert all(j.deadline <= job.deadline - margin + 1e-6 for j in started)


def test_the_main_path_loads_nothing_past_the_deadline(tmp_path, capsys):
    from arc_trm.ttt_phases import test_time_train

    tasks = as_test_tasks(load_tasks(SMALL_TASKS))
    now = time.time()
    job = per_task_job(tmp_path, tasks, now - 100.0, 99.0)
    before = tree(tmp_path)
    test_time_train(TTTOptions(tasks=SMALL_TASKS, out=job.out, overrides=tuple(TINY)), job)
    assert "the deadline has passed" in capsys.readouterr().out
    assert tree(tmp_path) == before, "past the deadline the run still built, probed or wrote"


def test_per_task_folders_are_safe_names_inside_the_run(tmp_path, monkeypatch):
    base = as_test_tasks(load_tasks(SMALL_TASKS))
    ids = ["../escape", "a/b", "a_b"]  # safe_name maps the last two alike: the folders stay apart
    tasks = [dataclasses.replace(t, id=i) for t, i in zip(base, ids)]
    started = stand_in_runs(monkeypatch)
    job = per_task_job(tmp_path, tasks, time.time(), 600.0)
    per_task(TTTOptions(tasks=SMALL_TASKS, out=job.out, per_task=True), job)
    folders = [j.out for j in started]
    assert [f.name for f in folders] == [safe_name("../escape"), "a_b", "a_b-2"]
    assert all(f.parent == job.out / "tasks" for f in folders)
    assert not (tmp_path / "escape").exists() and not (job.out / "a").exists()
    assert load_submission(job.submission).keys() == set(ids)


def test_per_task_writes_the_run_record_so_score_and_report_work_and_ends_with_a_summary(tmp_path, monkeypatch,
                                                                                          capsys):
    import arc_trm.ttt_phases as phases
    from arc_trm.cli import main
    from submission.kaggle import candidates_path, read_candidates, write_candidates
    from submission.vote import Candidate

    tasks = as_test_tasks(load_tasks(SMALL_TASKS))
    solved = tasks[0].id

    def answers_with_candidates(options, job):  # the first task right (attempt_2), the others its test input
        task = job.tasks[0]
        sub = fallback_submission([task])
        if task.id == solved:
            sub[task.id] = [{"attempt_1": [[0]], "attempt_2": p.output.tolist()} for p in task.test]
        job.out.mkdir(parents=True, exist_ok=True)
        write_submission(job.submission, sub, [task])
        write_candidates(candidates_path(job.submission),
                         {(task.id, i): [Candidate(p.input, 3, 0.9)] for i, p in enumerate(task.test)})
        return phases.TTTOutcome()

    monkeypatch.setattr(phases, "test_time_train", answers_with_candidates)
    job = per_task_job(tmp_path, tasks, time.time(), 600.0)
    result = per_task(TTTOptions(tasks=SMALL_TASKS, out=job.out, per_task=True), job)
    out = capsys.readouterr().out.strip().splitlines()
    assert result.trained == [t.id for t in tasks] and result.stopped_by is None
    assert out[-1].startswith("per-task: 3 of 3 tasks answered by their own model, 0 keep the fallback answer")
    record = json.loads((job.out / "submission.predict.json").read_text())
    assert record["tasks"] == SMALL_TASKS and record["answered_tasks"] == sorted(t.id for t in tasks)
    assert {key[0] for key in read_candidates(candidates_path(job.submission))} == {t.id for t in tasks}

    assert main(["score", str(job.submission), "--json"]) == 0  # the task source comes from the record
    scored = json.loads(capsys.readouterr().out)
    assert scored["tasks_fully_solved"] == 1 and scored["tasks_total"] == 3
    assert main(["report", str(job.out)]) == 0 and (job.out / "report.html").is_file()


@pytest.mark.slow
def test_ctrl_c_in_a_per_task_run_resumes_the_half_trained_task_and_keeps_the_answered_one(tmp_path):
    """A real `ttt --per-task` on 2 tasks, SIGINT while the second trains (after its quick
    prediction has written an answer), then the printed command: the first task is not trained
    again, the second continues from its checkpoint's step, and the submission holds both."""
    import shlex
    import signal

    import torch

    from submission.runfolder import latest_checkpoint
    from test_signals import start

    spec, steps = "arc-agi-1:training/3c9b0459+6150a2bd@test", 120
    tasks = as_test_tasks(load_tasks(spec))
    first, second = (tmp_path / "run" / "tasks" / t.id for t in tasks)
    # 16 augmentations: more views than a quick prediction's 8, so the plan has one at the half
    proc = start(["ttt", "--tasks", spec, "--per-task", "--budget", "900s", "--out", str(tmp_path / "run"),
                  "--no-progress", "--preset", "cpu-quick", *sets(TINY + ["data.augmentations=16",
                                                                          f"train.max_steps={steps}"])])
    while not (second / "submission.json").exists():  # the quick prediction at the half
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGINT, out + err
    [line] = [ln for ln in err.splitlines() if "continue with:" in ln]
    assert line.startswith("SIGINT: stopped; submission "), line
    command = shlex.split(line.split("continue with: ", 1)[1])
    stopped_at = torch.load(latest_checkpoint(second) / "state.pt", weights_only=True)["step"]
    assert 0 < stopped_at < steps, stopped_at
    answered = tree(first)

    resumed = run_cli(*command[1:] if command[0] == "arc-trm" else command, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"task 1/2 {tasks[0].id}: answered by the earlier run" in resumed.stdout
    assert f"resumed from step {stopped_at} " in resumed.stdout, resumed.stdout
    assert tree(first) == answered, "the answered task was trained again"
    assert torch.load(latest_checkpoint(second) / "state.pt", weights_only=True)["step"] == steps
    merged = load_submission(tmp_path / "run" / "submission.json")
    validate_submission(merged, tasks)
    assert merged[tasks[1].id] == load_submission(second / "submission.json")[tasks[1].id]


def test_resume_is_refused_when_per_task_differs_from_the_run(tmp_path, monkeypatch):
    """A --per-task run resumed without --per-task trained every task anew in one model at the top of
    the run, the task runs ignored, and replaced their answers; the other way round, a joint run's
    checkpoint was ignored. Refused in one line before anything is written."""
    started = stand_in_runs(monkeypatch)
    out = tmp_path / "run"
    options = TTTOptions(tasks=SMALL_TASKS, out=out, budget="60s", progress=False, per_task=True)
    ttt(options)
    before = tree(tmp_path)
    with pytest.raises(InputError, match="--per-task"):
        ttt(dataclasses.replace(options, per_task=False, resume=True))
    assert tree(tmp_path) == before and len(started) == 3

    joint = tmp_path / "joint"
    joint.mkdir()
    (joint / "config.json").write_text("{}")
    (joint / "checkpoints").mkdir()
    with pytest.raises(InputError, match="without --per-task"):
        ttt(dataclasses.replace(options, out=joint, resume=True))
    assert len(started) == 3

    # Stopped before its first task (no RUN/tasks/ yet): resumed without --per-task, it trained one
    # joint model, and a later --per-task resume was refused as "one model for every task".
    import shutil

    shutil.rmtree(out / "tasks")
    with pytest.raises(InputError, match="resume it with --per-task"):
        ttt(dataclasses.replace(options, per_task=False, resume=True))
    assert len(started) == 3


def test_a_resumed_per_task_run_checks_its_tasks_as_a_joint_run_does(tmp_path, monkeypatch, capsys):
    """A joint run refuses --resume with other tasks (its ttt_challenges.json); a --per-task run has no
    such file at its top, so it replaced its submission by the fallback and trained the new tasks
    beside the old ones. The run records its tasks (RUN/ttt_run.json) and is refused alike, before
    anything is written."""
    started = stand_in_runs(monkeypatch)
    out = tmp_path / "run"
    options = TTTOptions(tasks=SMALL_TASKS, out=out, budget="60s", progress=False, per_task=True)
    ttt(options)
    before = tree(tmp_path)
    other = "arc-agi-1:training/3c9b0459+6150a2bd@test"
    with pytest.raises(InputError, match="was trained on 3 tasks"):
        ttt(dataclasses.replace(options, tasks=other, resume=True))
    assert tree(tmp_path) == before and len(started) == 3


def test_a_resumed_per_task_run_gives_the_time_left_to_the_tasks_still_to_train(tmp_path, monkeypatch):
    """Resumed with the first task unanswered and the other two answered: the first task's share counted
    the answered tasks' demonstrations, so it got about a third of the time and the rest went unused."""
    import arc_trm.ttt_phases as phases

    tasks = as_test_tasks(load_tasks(SMALL_TASKS))
    clock = Clock(1000.0)
    started = stand_in_runs(monkeypatch, clock)
    job = per_task_job(tmp_path, tasks, 1000.0, 600.0)
    options = TTTOptions(tasks=SMALL_TASKS, out=job.out, per_task=True)
    per_task(options, job)
    (job.out / "tasks" / tasks[0].id / "done.json").unlink()  # a signal stopped the first task
    monkeypatch.setattr(phases, "test_time_train", phases.test_time_train)
    del started[:]
    result = per_task(dataclasses.replace(options, resume=True), job)
    assert result.trained == [tasks[0].id] and result.earlier == [tasks[1].id, tasks[2].id]
    [first] = started
    assert first.deadline - first.start == pytest.approx(600.0 * (1 - options.margin))  # all but the margin


def past_deadline(monkeypatch) -> None:
    """Every prediction meets a deadline already past: no view runs, as when a task's share of the
    budget is spent before its final prediction (a machine slower than the probe measured)."""
    from arc_trm.infer import LoadedModel

    view_run = LoadedModel.view_run
    monkeypatch.setattr(LoadedModel, "view_run",
                        lambda self, *a, **k: dataclasses.replace(view_run(self, *a, **k), deadline=time.time() - 1))


def test_a_task_whose_prediction_ran_no_view_is_not_counted_as_answered(tmp_path, monkeypatch, capsys):
    """A task's final prediction that ran no view printed 'submission updated from 0 views' and the
    summary counted the task as 'answered by their own model' although it held the fallback answer."""
    past_deadline(monkeypatch)
    out = tmp_path / "run"
    ttt(TTTOptions(tasks=SMALL_TASKS, out=out, budget="60s", preset="cpu-quick", progress=False, per_task=True,
                   overrides=(*TINY, "train.max_steps=2")))
    printed = capsys.readouterr().out
    tasks = load_tasks(SMALL_TASKS)
    assert "updated from 0 views" not in printed
    assert f"per-task: 0 of {len(tasks)} tasks answered by their own model, {len(tasks)} keep the fallback" in printed
    assert load_submission(out / "submission.json") == fallback_submission(tasks)
    record = json.loads((out / "submission.predict.json").read_text())
    assert record["answered_tasks"] == [] and record["fallback_tasks"] == sorted(t.id for t in tasks)


def test_a_task_whose_views_decoded_no_grid_is_not_counted_as_answered(tmp_path, monkeypatch, capsys):
    """Views that finished but decoded no grid wrote the fallback answers with a record of views > 0:
    the task counted as 'answered by their own model', and a resumed run would not train it again."""
    import arc_trm.infer as infer

    vote = infer.vote_views

    def blind(*args, **kwargs):  # every view finishes and votes for nothing
        result = vote(*args, **kwargs)
        if result is not None:
            result.ranked = {key: [] for key in result.ranked}
        return result

    monkeypatch.setattr(infer, "vote_views", blind)
    out = tmp_path / "run"
    ttt(TTTOptions(tasks=SMALL_TASKS, out=out, budget="60s", preset="cpu-quick", progress=False, per_task=True,
                   overrides=(*TINY, "train.max_steps=2")))
    tasks = load_tasks(SMALL_TASKS)
    assert f"per-task: 0 of {len(tasks)} tasks answered by their own model" in capsys.readouterr().out
    assert load_submission(out / "submission.json") == fallback_submission(tasks)
    assert not list(out.glob(f"tasks/*/{TASK_DONE}")), "a task that answered nothing was marked done"


def test_a_joint_run_whose_prediction_ran_no_view_does_not_say_it_updated_the_submission(tmp_path, monkeypatch, capsys):
    past_deadline(monkeypatch)
    out = tmp_path / "run"
    ttt(TTTOptions(tasks=SMALL_TASKS, out=out, budget="60s", preset="cpu-quick", progress=False,
                   overrides=(*TINY, "train.max_steps=2")))
    printed = capsys.readouterr().out
    assert "no view finished" in printed and "submission updated" not in printed
    assert load_submission(out / "submission.json") == fallback_submission(load_tasks(SMALL_TASKS))


def test_a_resumed_per_task_run_past_its_deadline_still_takes_the_finished_answers(tmp_path, monkeypatch, capsys):
    """The deadline check came before the merge of the tasks the earlier run finished: resumed with
    no time left (`--budget 1s --submission new.json`), every task kept its fallback answer in the
    new file and the summary and record called them all fallbacks, though each had its done.json."""
    tasks = as_test_tasks(load_tasks(SMALL_TASKS))
    clock = Clock(1000.0)
    stand_in_runs(monkeypatch, clock)
    job = per_task_job(tmp_path, tasks, 1000.0, 600.0)
    options = TTTOptions(tasks=SMALL_TASKS, out=job.out, per_task=True)
    per_task(options, job)
    mine = {t.id: [{"attempt_1": [[7]], "attempt_2": [[7]]} for _ in t.test] for t in tasks}
    for t in tasks:
        write_submission(job.out / "tasks" / t.id / "submission.json", {t.id: mine[t.id]}, [t])
    write_submission(job.submission, fallback_submission(tasks), tasks)
    capsys.readouterr()
    clock.now = 2000.0  # past the deadline
    result = per_task(dataclasses.replace(options, resume=True), job)
    assert result.earlier == [t.id for t in tasks] and "deadline reached" not in capsys.readouterr().out
    assert load_submission(job.submission) == mine
