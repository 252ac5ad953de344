"""--per-task: each task trained and predicted alone, in RUN/tasks/<safe id>, under a share of the
time left; the run's submission takes each task's answers as they come (see arc_trm.ttt)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from arc_trm.stopping import current
from arc_trm.ttt_plan import TTTJob, TTTOptions, seconds_left
from augment.files import write_json_atomic
from augment.tasks import Task, absolute_spec, safe_name
from submission.kaggle import (candidates_path, is_submission_of, load_submission, merge_candidates, read_candidates,
                               write_candidates, write_submission)
from submission.outputs import predict_info, record_path
from submission.runfolder import TTT_FILES, resolve_checkpoint, run_files


def record_source(options: TTTOptions, submission: Path) -> dict:
    """What every NAME.predict.json of a ttt run says first: its tasks, the weights it started
    from, the submission (as predict's record does)."""
    return {"tasks": absolute_spec(options.tasks),
            "checkpoint": str(Path(options.checkpoint).resolve()) if options.checkpoint else None,
            "submission": submission.name}


def time_share(seconds_left: float, demonstrations: list[int]) -> float:
    """The next task's share of the time left: its demonstrations over those of every task left
    (the next task first)."""
    return seconds_left * demonstrations[0] / sum(demonstrations)


def task_folder_names(tasks: list[Task]) -> list[str]:
    """RUN/tasks/<name> of each task: its id made safe for a file name, unique."""
    names: list[str] = []
    for task in tasks:
        name, n = safe_name(task.id), 1
        while name in names:
            n += 1
            name = f"{safe_name(task.id)}-{n}"
        names.append(name)
    return names


TASK_DONE = "done.json"  # in RUN/tasks/<name>/: the task's run ended unstopped (a stopped one may hold a quick answer)


def merge_answer(job: TTTJob, task: Task, answer: Path) -> None:
    """The task's answers into the run's submission, and its candidates beside them."""
    merged = load_submission(job.submission)
    merged[task.id] = load_submission(answer)[task.id]
    write_submission(job.submission, merged, job.answered)
    if candidates_path(answer).is_file():
        run_cands = candidates_path(job.submission)
        write_candidates(run_cands, merge_candidates(run_cands, read_candidates(candidates_path(answer)),
                                                     job.answered))


@dataclasses.dataclass
class PerTaskResult:
    """How the tasks of a --per-task run were answered."""

    trained: list[str] = dataclasses.field(default_factory=list)  # trained and predicted by this run
    earlier: list[str] = dataclasses.field(default_factory=list)  # answered by the run it resumed
    stopped_by: str | None = None  # the signal that stopped it (a checkpoint holds the task's step)

    def summary(self, job: TTTJob) -> str:
        fallback = len(job.answered) - len(self.trained) - len(self.earlier)
        earlier = f", {len(self.earlier)} by the earlier run" if self.earlier else ""
        return (f"per-task: {len(self.trained)} of {len(job.answered)} tasks answered by their own model{earlier}, "
                f"{fallback} keep the fallback answer; submission {job.submission} "
                f"(record {record_path(job.submission).name}: `arc-trm score {job.submission}` scores it)")


def write_run_record(options: TTTOptions, job: TTTJob, result: PerTaskResult) -> None:
    """NAME.predict.json beside the run's submission, as predict writes: `score` and `report` read
    its task source; the tasks' own records stay in RUN/tasks/<name>/."""
    answered = set(result.trained) | set(result.earlier)
    cands = candidates_path(job.submission)
    write_json_atomic(record_path(job.submission), {
        **record_source(options, job.submission), **({"candidates": cands.name} if cands.is_file() else {}),
        "per_task": True, "task_runs": str((job.out / "tasks").resolve()),
        "answered_tasks": sorted(answered), "fallback_tasks": sorted({t.id for t in job.answered} - answered),
    }, indent=2)


def answered_nothing(answer: Path) -> bool:
    """Whether the prediction that wrote `answer` answered no test input (its record counts 0): no
    view ran before the deadline, or none decoded a grid, so it holds the fallback answers alone."""
    info = predict_info(answer)
    return info is not None and info.get("answered", info.get("views")) == 0  # older records count views


def per_task(options: TTTOptions, job: TTTJob) -> PerTaskResult:
    """Each task alone, with its own model copy, in RUN/tasks/<safe id>; the run's submission
    takes each task's answers once its prediction is written, and its record is rewritten. Past the
    deadline (the main path's check) the tasks left keep their fallback answers; resumed, a task
    answered earlier is kept, and one a signal stopped continues from its checkpoint. Ends with one
    summary line."""
    from arc_trm.ttt_phases import test_time_train

    result, stop = PerTaskResult(), current()
    margin = job.margin_s(options.margin)
    # The pretrained checkpoint, looked up once: each task's run loads this folder (a broken `latest` warns once).
    pretrained = str(resolve_checkpoint(options.checkpoint)) if options.checkpoint else None
    folders = [job.out / "tasks" / name for name in task_folder_names(job.tasks)]
    # Resumed: the tasks the earlier run answered are kept, and take no share of the time left.
    earlier = [options.resume and (f / TASK_DONE).is_file() and is_submission_of(f / "submission.json", [t])
               for t, f in zip(job.tasks, folders)]
    for i, (task, folder) in enumerate(zip(job.tasks, folders)):  # first: they cost no time, deadline or not
        if earlier[i]:
            merge_answer(job, task, folder / "submission.json")
            result.earlier.append(task.id)
            print(f"task {i + 1}/{len(job.tasks)} {task.id}: answered by the earlier run")
    for i, (task, folder) in enumerate(zip(job.tasks, folders)):
        if earlier[i]:
            continue
        now = time.time()
        if seconds_left(job.deadline, margin, now) <= 0:
            left = earlier[i:].count(False)
            keep = "keeps its fallback answer" if left == 1 else "keep their fallback answers"
            print(f"deadline reached: {left} of {len(job.tasks)} tasks {keep}")
            break
        answer = folder / "submission.json"
        demos = [len(t.train) for t, e in zip(job.tasks[i:], earlier[i:]) if not e]
        share = time_share(seconds_left(job.deadline, margin, now), demos)  # the margin stays the run's
        folder.mkdir(parents=True, exist_ok=True)
        print(f"task {i + 1}/{len(job.tasks)} {task.id}: {share:.0f} s")
        resume = options.resume and bool(run_files(folder, TTT_FILES))  # continue its own run
        outcome = test_time_train(dataclasses.replace(options, resume=resume, checkpoint=pretrained),
                                  TTTJob([task], [task], folder, answer, now, now + share))
        if answer.exists() and not answered_nothing(answer):  # else no time to predict: the task keeps its fallback answer
            merge_answer(job, task, answer)
            result.trained.append(task.id)
            write_run_record(options, job, result)
            if outcome.stopped_by is None:
                write_json_atomic(folder / TASK_DONE, {"task": task.id})
        if outcome.stopped_by is not None:
            result.stopped_by = outcome.stopped_by
            break
        if stop.signum is not None and i + 1 < len(job.tasks):  # came in the task's final prediction, which finished
            result.stopped_by = stop.name
            break
    write_run_record(options, job, result)
    print(result.summary(job))
    return result
