"""Voted inference with halting -> Kaggle submission.json.

  arc-trm predict --checkpoint runs/agi2 --tasks arc-agi-2:evaluation --out submission.json

Every test input is seen through the augmented views its task was trained under (one view per
trained puzzle identifier). Views run in batches; a view stops once its halt logit is above 0
(or at the step cap) and its batch slot is refilled with a pending view, so easy views cost few
steps. `--halting off` runs every view for the full cap, as the reference evaluation does. Each
prediction is decoded, its augmentation inverted, and the views vote: the two answers most views
agree on become attempt_1 and attempt_2. With `--scoring consistency` the candidates are then
reranked by their log-probability under every view (arc_trm.consistency).

Writes the submission (validated, atomically), `<name>.candidates.json` with every ranked
candidate, and `<name>.predict.json`, the record of what was run (absolute paths). Tasks whose
puzzle embeddings were never trained (or were trained on other content under the same id) get
the fallback answer (the test input); `arc-trm ttt` trains them, except a task with a grid larger
than the model's canvas, which ttt skips too. A test input larger than the model's canvas gets the
fallback as well (none of its views runs; the summary counts it apart), as does one whose
views all finished without decoding a valid grid (one line names its task). Only answers
produced replace those of an earlier submission at the same path: a test input no view answered
(a deadline) keeps its earlier entry and candidates, and with no answer at all a valid earlier
submission is not rewritten. A file at --out that is JSON but no submission (the challenges,
solutions or candidates file), or no JSON and not named .json (notes, a model), is refused, not
overwritten; so is a submission holding tasks this run does not answer, and an --out whose
record beside it is another submission's (`--out d1` after `--out d1.json`: they share side
files). Ctrl-C or SIGTERM before the writes leaves the three files as they were; during them,
the three are finished first; either way one line says so and the exit status is 130 or 143.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from arc_trm.common import setup, teardown
from arc_trm.config_rules import check_device_available
from arc_trm.consistency import add_scoring_argument
from arc_trm.infer import PredictOptions, PredictSummary, check_prediction_checkpoint, load_model, predict
from arc_trm.stopping import current
from arc_trm.views import ViewRun, other_content_line
from augment.console import add_progress_argument, counted, warn_once
from augment.errors import InputError
from augment.files import finished_line
from augment.tasks import Task, load_answerable, source_specs, training_split_warning
from submission.kaggle import candidates_path
from submission.outputs import check_no_other_tasks, check_prediction_outputs, record_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, action="append", metavar="RUN",
                   help="run folder (its latest checkpoint), checkpoint folder or export; repeat it for an "
                        "ensemble whose votes pool (one model in memory at a time)")
    p.add_argument("--tasks", required=True, metavar="SOURCE", help="tasks to answer, e.g. arc-agi-2:evaluation or a challenges .json")
    p.add_argument("--out", default="submission.json", help="submission file (default: submission.json)")
    p.add_argument("--views", type=int, default=0,
                   help="augmented views per test input (default 0 = every view the checkpoint was trained on)")
    p.add_argument("--halting", choices=["on", "off"], default="on",
                   help="on: a view stops when its halt logit > 0; off: always run the step cap (reference)")
    p.add_argument("--max-steps", type=int, default=0, help="step cap per view (default: the model's halt_max_steps)")
    p.add_argument("--batch-size", type=int, default=256, help="views in flight at once")
    add_scoring_argument(p)
    p.add_argument("--trajectories", type=int, default=1,
                   help="runs of each view: the first clean, the others with --noise in the latent; the Q head "
                        "picks each view's surest run (PTRM; default 1)")
    p.add_argument("--noise", type=float, default=0.0,
                   help="std of the Gaussian noise added to the latent before each cycle (default 0)")
    p.add_argument("--weights", choices=["ema", "model"], default="ema",
                   help="EMA weights (default) or raw weights (a run's or checkpoint's; an export holds the EMA ones "
                        "only)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps | cuda:N")
    p.add_argument("--skip-bad-tasks", action="store_true",
                   help="skip malformed tasks with a warning; those whose test inputs are readable get the "
                        "fallback answer")
    add_progress_argument(p)


def check_arguments(args: argparse.Namespace) -> None:
    """Every numeric option, the device, the output paths and each checkpoint (found, usable: not
    its weights), before any model or task loads."""
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--views", args.views, 0),
                             ("--max-steps", args.max_steps, 0), ("--trajectories", args.trajectories, 1)):
        if value < low:
            raise InputError(f"{flag} must be an integer >= {low}, got {value}")
    if not args.noise >= 0:
        raise InputError(f"--noise must be a number >= 0, got {args.noise}")
    if len(args.checkpoint) > 1 and args.scoring == "consistency":
        raise InputError("--scoring consistency ranks by one model's probabilities: give one --checkpoint, "
                         "or pool several with --scoring votes")
    if args.trajectories > 1 and args.noise == 0:
        raise InputError("--trajectories > 1 needs --noise > 0 (clean runs of a view are identical)")
    if args.noise > 0 and args.trajectories == 1:
        raise InputError("--noise acts only on the extra runs of --trajectories N (the first run of a view is clean); "
                         "pass --trajectories 2 or more")
    try:
        check_device_available(args.device)
    except ValueError as e:
        raise InputError(str(e)) from None
    check_prediction_outputs(args.out, tasks=source_specs(args.tasks))
    for path in args.checkpoint:  # all before the first model runs (an ensemble loads them in turn)
        check_prediction_checkpoint(path, args.weights)


def load_prediction_tasks(spec: str, skip_bad: bool) -> list[Task]:
    """The tasks to answer; with skip_bad, malformed ones are skipped with a warning and those
    whose test inputs are readable come back without demonstrations (they get the fallback)."""
    loaded = load_answerable(spec, skip_bad=skip_bad, warn=warn_once)
    inflated = training_split_warning(spec)
    if inflated:
        warn_once(inflated)
    return sorted(loaded.tasks + loaded.salvaged, key=lambda t: t.id)


def file_identity(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a file, None when absent: an atomic write gives a new one."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def print_unanswered(summary: PredictSummary, ids: list[str], kept: list[str], why: tuple[str, str], hint: str,
                     which: tuple[str, str] = ("", "")) -> None:
    """Up to two lines for tasks no view answered (`why`): those that got the fallback answer and
    those that kept the answers the submission held before. `why`, `which`: for one task, for more;
    `hint` may say {them}."""
    fallback = [t for t in ids if t not in kept]
    for group, got in ((fallback, "got the fallback answer"),
                       (kept, f"kept the answers {summary.submission} held before")):
        if group:
            number = 0 if len(group) == 1 else 1  # index into the (one, more) wordings
            print(f"{counted(len(group), 'task')} {why[number]} and {got}{which[number]}"
                  f"{hint.format(them=('it', 'them')[number])}: {', '.join(group[:5])}"
                  + (" ..." if len(group) > 5 else ""))


def predicted_line(summary: PredictSummary, trajectories: int) -> str:
    """How many test inputs got an answer, from how many views; with trajectories, the runs apart
    (each view runs once per trajectory but votes once)."""
    runs = f" ({counted(summary.runs, 'run')}: {trajectories} trajectories each)" if trajectories > 1 else ""
    return (f"predicted {summary.answered} of {summary.test_inputs} test inputs ({summary.answered_tasks} of "
            f"{summary.tasks} tasks) from {counted(summary.views, 'view')}{runs} in {summary.seconds:.1f} s, "
            f"{summary.mean_steps:.2f} steps per {'run' if trajectories > 1 else 'view'} on average")


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    tasks = load_prediction_tasks(args.tasks, args.skip_bad_tasks)
    check_no_other_tasks(args.out, [t.id for t in tasks])
    d = setup(args.device)
    models = (load_model(path, d.device, args.weights) for path in args.checkpoint)  # one at a time
    options = PredictOptions(args.tasks, max_views=args.views, max_steps=args.max_steps)
    view_run = ViewRun(0, batch_size=args.batch_size, halting=args.halting == "on", progress=not args.no_progress,
                       scoring=args.scoring, trajectories=args.trajectories, noise=args.noise)
    stop = current()  # the CLI's: a signal before the writes leaves the files as they were
    before = file_identity(Path(args.out))  # a second signal in the writes stops them at once: tell the two apart
    stop.describe = lambda signame: (
        (f"{signame}: stopped before writing; {args.out} and its record are as they were; "
         if file_identity(Path(args.out)) == before else
         f"{signame}: stopped at once during the writes: {args.out} holds the new answers, its candidates and record "
         "may be missing or older; ") + f"run it again with: {stop.again or 'the same command'}")
    summary = predict(models, tasks, Path(args.out), options, view_run, d)
    stop.describe = lambda signame: finished_line(signame, "prediction", f"{args.out} is complete")
    if summary is not None:
        print(predicted_line(summary, args.trajectories))
        if summary.other_content and len(args.checkpoint) > 1:  # an ensemble: only tasks no checkpoint answers
            print(other_content_line(summary.other_content, "no checkpoint has rows of their content: they count "
                                     "as tasks the tables lack", "a checkpoint's"))
        elif summary.other_content:
            print(other_content_line(summary.other_content, "they count as tasks the table lacks"))
        print_unanswered(summary, summary.untrained, summary.kept,
                         ("has no puzzle embedding trained on its content",
                          "have no puzzle embedding trained on their content"), " (run `arc-trm ttt` on {them})")
        too_large = f"larger than the model's {summary.canvas}x{summary.canvas} canvas"
        print_unanswered(summary, summary.too_large, summary.too_large_kept,
                         (f"has grids {too_large}", f"have grids {too_large}"), "",
                         (" for it", " for them"))
        undecoded = "test inputs whose views finished but decoded no valid grid"
        print_unanswered(summary, summary.undecoded, summary.undecoded_kept,
                         (f"has {undecoded}", f"have {undecoded}"), "", (" for it", " for them"))
        if summary.written:
            sub = summary.submission  # the record too: `score` and `report` read their --tasks from it
            print(f"wrote {sub} and, beside it, {candidates_path(sub).name} and {record_path(sub).name}")
    teardown()
    return 0
