"""Test-time training on new tasks under a deadline, then voted prediction.

  arc-trm ttt --tasks /kaggle/input/arc-prize-2026-arc-agi-2/arc-agi_test_challenges.json \\
              --checkpoint pretrained/ --budget 11h --out runs/ttt --submission /kaggle/working/submission.json

TRM answers only tasks whose puzzle embeddings it has trained, so on unseen tasks it must train on
their demonstrations first. The run:
  1. writes a valid fallback submission at once (each test input as both attempts); a malformed
     task is skipped with a warning and keeps its fallback answer when its test inputs are
     readable, and the rest still train;
  2. builds the augmented set of the new tasks (demonstrations train, test inputs are predicted);
  3. with --checkpoint, starts from the pretrained weights and gives every new puzzle id the mean
     of the pretrained table (ids the checkpoint already knows keep their trained row);
  4. measures its own throughput and plans the phases to fit the budget: embeddings alone for a
     first fraction of the steps (with a checkpoint), then the whole model, then prediction; as
     phases end it re-plans the steps left from the step time training measured;
  5. predicts quickly after the embeddings-only phase and at the half, and in full at the end,
     replacing the submission atomically as better answers arrive, and stops training in time to
     predict.
Without --checkpoint it trains from scratch (useful on CPU and in tests).

Ctrl-C or SIGTERM while it trains finishes the step, writes a checkpoint (the submission already
holds the best answers so far) and prints the command that continues: the same options with
--resume, which restarts from the run's latest checkpoint under the --budget it is given. A signal
in the build, the plan or between two --per-task tasks stops at once with the same command; one in
a prediction lets it finish (after the final one, the run says it finished), and the exit status
is 130 (SIGINT) or 143 (SIGTERM) in every case. The run records the checkpoint it started from
(RUN/ttt_run.json): --resume without --checkpoint uses it.

With --per-task each task gets its own copy of the model, trained and predicted alone in
RUN/tasks/<safe id>, under a share of the time left in proportion to its demonstrations (recomputed
after each task, so time one task leaves unused goes to the rest); the run's submission takes each
task's answers as they come. A task that fits no canvas keeps its fallback answer, and past the
deadline the tasks left keep theirs. --resume keeps the tasks whose runs ended (RUN/tasks/<safe
id>/done.json) and continues a task a signal stopped from its checkpoint, even when its quick
prediction had already answered it.

--checkpoint is checked before anything is written: a missing, incomplete or corrupt one, a --set
that changes what its weights fix, or --force over an --out that holds it costs one line and no
file. A folder that holds a run is refused before anything is written (the submission included),
on every process of a torchrun before any writes, unless --force moves it aside or --resume
continues it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

from arc_trm import runs
from arc_trm.consistency import add_scoring_argument
from arc_trm.stopping import continue_command, current, exit_code, stopped_line
from arc_trm.ttt_per_task import per_task, record_source
from arc_trm.ttt_plan import (TTTJob, TTTOptions, check_checkpoint, check_options, record_start, run_record,
                              with_recorded_checkpoint)
from arc_trm.config import TRAIN_LOG_LINES
from augment.console import add_progress_argument, counted, duration_text, eprint, warn_once
from augment.errors import InputError, few_ids
from augment.files import finished_line, read_json, write_json_atomic
from augment.launch import launch
from augment.tasks import Task, load_answerable, source_specs
from submission.kaggle import (candidates_path, fallback_submission, load_submission, validate_submission,
                               write_submission)
from submission.outputs import check_no_other_tasks, check_prediction_outputs, record_path
from submission.runfolder import TTT_FILES, run_files


def as_test_tasks(tasks: list[Task]) -> list[Task]:
    """Every task answered at test time: demonstrations train, test inputs are predicted."""
    return [dataclasses.replace(t, role="test") for t in tasks]


# ----------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", required=True, metavar="SOURCE",
                   help="new tasks: a Kaggle challenges .json, a folder or a source name")
    p.add_argument("--checkpoint",
                   help="pretrained run (trained or imported), checkpoint folder, or inference export from "
                        "`arc-trm export` (--lean included) (default: train from scratch)")
    p.add_argument("--budget", default=TTTOptions.budget,
                   help=f"wall-clock budget for the whole run, e.g. 90s, 30m, 8h (default {TTTOptions.budget})")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--force", action="store_true",
                   help="--out holds another run: move it aside to OUT.old-<time> (never deleted) and start anew")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint, under --budget anew (pass the "
                        "run's other options again)")
    p.add_argument("--submission", help="submission path to keep valid (default RUN/submission.json)")
    p.add_argument("--preset", choices=["paper", "kaggle", "cpu-quick"],
                   help="training hyperparameters (default: kaggle on a GPU, cpu-quick otherwise)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--embedding-fraction", type=float, default=TTTOptions.embedding_fraction,
                   help="with --checkpoint: share of training steps that train only the new embeddings "
                        f"(default {TTTOptions.embedding_fraction})")
    p.add_argument("--margin", type=float, default=TTTOptions.margin,
                   help=f"share of the budget kept in reserve (default {TTTOptions.margin})")
    p.add_argument("--batch-size", type=int, default=TTTOptions.batch_size,
                   help=f"views in flight during prediction (default {TTTOptions.batch_size})")
    add_scoring_argument(p)
    p.add_argument("--per-task", action="store_true",
                   help="train and predict each task with its own model copy, the budget split by demonstrations "
                        "(one process only)")
    add_progress_argument(p, TRAIN_LOG_LINES)


def options_from_args(args: argparse.Namespace) -> TTTOptions:
    return TTTOptions(tasks=args.tasks, out=Path(args.out), checkpoint=args.checkpoint, budget=args.budget,
                      submission=Path(args.submission) if args.submission else None, preset=args.preset,
                      overrides=tuple(args.set or ()), embedding_fraction=args.embedding_fraction,
                      margin=args.margin, batch_size=args.batch_size, scoring=args.scoring,
                      progress=not args.no_progress, force=args.force, per_task=args.per_task,
                      resume=args.resume)


def load_answer_tasks(spec: str) -> tuple[list[Task], list[Task]]:
    """(tasks to train and answer, malformed tasks that keep the fallback answer). A malformed
    task is skipped with a warning; the rest still train."""
    loaded = load_answerable(spec, warn=warn_once)
    return as_test_tasks(loaded.tasks), as_test_tasks(loaded.salvaged)


def write_fallback(options: TTTOptions, answered: list[Task]) -> None:
    """Before anything heavy can fail: a valid answer is on disk (rank 0). A resumed run keeps the
    answers its submission already holds when they are for these tasks."""
    out, sub_path = Path(options.out), options.submission_path
    runs.make_output_folder(out)
    if options.submission is None:  # a --submission given was checked before --out was made
        sub_path.parent.mkdir(parents=True, exist_ok=True)
        check_prediction_outputs(sub_path, "--submission")
    if options.resume and sub_path.is_file():
        try:
            validate_submission(load_submission(sub_path), answered, path=sub_path)
            print(f"resuming: keeping the submission in {sub_path} ({counted(len(answered), 'task')})")
            return
        except InputError as e:
            eprint(f"warning: the run's submission cannot be kept ({e}); writing the fallback")
    write_submission(sub_path, fallback_submission(answered), answered)
    candidates_path(sub_path).unlink(missing_ok=True)  # an earlier submission's: kept, later merges would count them
    write_fallback_record(options, sub_path)
    print(f"fallback submission written to {sub_path} ({counted(len(answered), 'task')})")


def write_fallback_record(options: TTTOptions, sub_path: Path) -> None:
    """NAME.predict.json for the fallback, as predict writes one (no view ran, none answered), so
    that `score` and `report` find the task source of a run that ends on it. The source is --tasks
    itself: the run's own copy of the tasks is written later, in the build."""
    write_json_atomic(record_path(sub_path), {**record_source(options, sub_path), "fallback": True, "views": 0,
                                               "runs": 0, "answered": 0}, indent=2)


def process_barrier() -> None:
    """Wait for every torchrun process (torch loads here, so only under torchrun)."""
    import torch.distributed as dist

    from arc_trm.common import setup

    setup()
    dist.barrier()


def begin_run(options: TTTOptions, answered: list[Task], main: bool, barrier: Callable[[], None] | None,
              describe: Callable[[str], str] | None = None) -> None:
    """Claim --out on every process, wait for all of them, then write the fallback (main process):
    no process may see a folder another has already written into. `describe`: the line a signal
    gives once --out is this run's (before, an older run may still be there, which --force moves)."""
    runs.claim_run_folder(Path(options.out), options.force, main=main, names=TTT_FILES, resume=options.resume)
    if describe is not None:
        current().describe = describe
    if barrier is not None:
        barrier()
    if main:
        write_fallback(options, answered)


def check_same_tasks(out: Path, tasks: list[Task]) -> None:
    """A resumed run trains the tasks it was trained on, with the same content (its task file;
    else the ids its record holds: a --per-task run's): one line, before any build, if not."""
    saved = out / "ttt_challenges.json"
    if saved.is_file():
        data = read_json(saved, "the run's task file")
        trained = sorted(data) if isinstance(data, dict) else []
    else:
        data = run_record(out)
        ids = data.get("tasks") if data is not None else None
        if not isinstance(ids, list):
            return  # a run from before the record
        trained = sorted(map(str, ids))
    asked = sorted(t.id for t in tasks)
    if trained != asked:
        raise InputError(f"the run in {out} was trained on {len(trained)} tasks ({few_ids(trained)}); you asked "
                         f"for {len(asked)} ({few_ids(asked)})")
    changed = sorted(t.id for t in tasks if saved.is_file() and data[t.id] != t.to_json(with_solutions=False))
    if changed:  # the same ids, other grids: its checkpoints' rows and its kept answers are another task's
        raise InputError(f"the run in {out} was trained on other content under {counted(len(changed), 'task id')} "
                         f"({few_ids(changed)}); start a new run (another --out, or --force)")


def resume_command(options: TTTOptions, seconds_left: float) -> str:
    """The command that continues this run with the budget it had left (a user may give more)."""
    default = TTTOptions(tasks="", out=Path())
    flags = [("--tasks", options.tasks), ("--checkpoint", options.checkpoint),
             ("--budget", f"{max(1, math.ceil(seconds_left))}s"), ("--submission", options.submission),
             ("--preset", options.preset), *(("--set", item) for item in options.overrides)]
    for name in ("embedding_fraction", "margin", "batch_size", "scoring"):
        if getattr(options, name) != getattr(default, name):
            flags.append((f"--{name.replace('_', '-')}", getattr(options, name)))
    args = [str(a) for flag, value in flags if value is not None for a in (flag, value)]
    switches = [*(["--per-task"] if options.per_task else []), *([] if options.progress else ["--no-progress"])]
    return continue_command("ttt", Path(options.out), *args, *switches)


def ttt(options: TTTOptions) -> int:
    """The whole run: fallback submission at once, then training and predictions under the budget.
    Returns the exit status: 0, or 128 + the signal that stopped training (with a checkpoint)."""
    start = time.time()
    deadline = start + check_options(options)
    options = with_recorded_checkpoint(options)
    pretrained = check_checkpoint(options)  # before any write: a bad checkpoint or --set costs nothing
    out = Path(options.out)
    tasks, fallback_only = load_answer_tasks(options.tasks)
    answered = sorted(tasks + fallback_only, key=lambda t: t.id)
    if options.submission is not None:  # RUN/submission.json is the run's own (--force moves it aside)
        check_prediction_outputs(options.submission, "--submission", source_specs(options.tasks))  # before --out is made
        check_no_other_tasks(options.submission, [t.id for t in answered], "--submission")
    runs.check_not_a_train_run(out, options.force)
    if (out / "build").exists() and not run_files(out, TTT_FILES):  # no run's: ttt builds there
        raise InputError(f"--out {out} holds a build/ folder but no run: ttt writes its own build there; "
                         "use a new or empty --out")
    if options.resume:
        check_same_tasks(out, tasks)
    launched = launch()
    many, is_main = launched.many, launched.main
    # The CLI's request: a signal from the claim on, in a build, a plan or between tasks, gives this
    # line (on every process: under torchrun the one a signal reached may be another than rank 0).
    again = current().again  # the command as given (read now: the guard gives the line after it is uninstalled)
    begin_run(options, answered, main=is_main, barrier=process_barrier if many else None,
              describe=lambda signame: kept_line(signame, options, deadline, again))
    if is_main:  # the budget read back, with the clock time it ends
        print(f"budget: {duration_text(deadline - start)}, until {time.strftime('%H:%M:%S %Z', time.localtime(deadline))}")
    if is_main and not options.resume:
        record_start(out, pretrained, tasks, options.per_task)
    if not tasks:
        print("no well-formed task to train on; the fallback submission stands")
        if many:
            from arc_trm.common import teardown

            teardown()  # process_barrier joined the process group
        return 0
    from arc_trm.ttt_phases import test_time_train  # in one process, torch loads after the fallback is on disk

    if options.per_task:
        job = TTTJob(tasks, answered, out, options.submission_path, start, deadline)
        stopped_by = per_task(options, job).stopped_by
        if stopped_by is not None and is_main:
            eprint(kept_line(stopped_by, options, deadline))
        return finished(options) if stopped_by is None else exit_code(stopped_by)
    outcome = test_time_train(options, TTTJob(tasks, answered, out, options.submission_path, start, deadline))
    if outcome.stopped_by is None:
        return finished(options)
    if is_main:
        eprint(stopped_line(outcome.stopped_by, outcome.step, outcome.checkpoint,
                            resume_command(options, deadline - time.time()),
                            f", the best submission so far in {options.submission_path}"))
    return exit_code(outcome.stopped_by)


def kept_line(signame: str, options: TTTOptions, deadline: float, again: str = "") -> str:
    """The line of a run a signal stopped: its submission holds the answers so far, and the command
    that continues it with the budget it had left; before the fallback is written, the same command."""
    if not options.submission_path.is_file():
        return (f"{signame}: stopped before the fallback submission was written; "
                f"continue with: {again or 'the same command'}")
    return (f"{signame}: stopped; submission {options.submission_path} holds the answers so far; "
            f"continue with: {resume_command(options, deadline - time.time())}")


def finished(options: TTTOptions) -> int:
    """0; when a signal came in the last training step or the final prediction, which finished
    first, the guard is told to say so (it exits with the signal's code: the run was signalled,
    and nothing is left to continue)."""
    stop = current()
    stop.describe = lambda signame: finished_line(signame, "run (its final prediction included)",
                                                  f"submission {options.submission_path} holds its answers, "
                                                  "nothing is left to continue")
    return 0


def run(args: argparse.Namespace) -> int:
    return ttt(options_from_args(args))


