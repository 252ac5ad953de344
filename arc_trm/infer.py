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
the fallback answer (the test input); `arc-trm ttt` trains them. A test input larger than the
model's canvas gets it too (none of its views runs; the summary counts it apart). Only answers
produced replace those of an earlier submission at the same path: a test input no view answered
(a deadline) keeps its earlier entry and candidates, and with no answer at all a valid earlier
submission is not rewritten. A file at --out that is JSON but no submission (the challenges,
solutions or candidates file) is refused, not overwritten. Ctrl-C or SIGTERM before the writes
leaves the three files as they were; during them, the three are finished first; either way one
line says so and the exit status is 130 or 143.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from arc_trm import checkpoint as ckpt
from arc_trm.common import Dist, setup, teardown
from arc_trm.config import RunConfig
from arc_trm.config_rules import check_device_available
from arc_trm.consistency import InputStream, ViewRecord, add_scoring_argument, best_trajectories
from arc_trm.export import LEAN_IDENTIFIER
from arc_trm.model import TRM
from arc_trm.views import (View, ViewOutputs, ViewRun, encode_views, fitting_views, make_views, other_content_line,
                           prediction_of, run_views, view_sides, with_trajectories)
from augment.store import IdentifierMap
from augment.console import add_progress_argument
from augment.errors import InputError
from augment.tasks import Task, absolute_spec, load_tasks, training_split_warning
from submission.outputs import check_prediction_outputs, record_path
from submission.kaggle import (candidates_path, earlier_entries, is_submission_of, merge_candidates, merge_submission,
                               write_candidates, write_submission)
from augment.files import write_json_atomic
from arc_trm.stopping import current
from submission.score import pass_count, task_solutions
from submission.vote import Candidate, pool_candidates, rank_candidates


@dataclass
class LoadedModel:
    model: TRM
    cfg: RunConfig
    id_map: IdentifierMap  # row -> identifier, augmentation and task hash
    checkpoint: Path

    def view_run(self, batch_size: int = 256, halting: bool = True, progress: bool = True,
                 deadline: float | None = None, scoring: str = "votes") -> ViewRun:
        """How to run views of this model: its canvas and length buckets, and these settings."""
        return ViewRun(self.cfg.data.canvas, batch_size, halting, self.cfg.data.bucketing, progress, deadline,
                       scoring)


def load_model(path: str | Path, device: torch.device, weights: str = "ema") -> LoadedModel:
    """A trained model from a run folder or checkpoint folder (EMA weights by default). The model
    takes the checkpoint's own tensors, so a large puzzle table is held once, not twice."""
    found = ckpt.load_checkpoint(path)
    if LEAN_IDENTIFIER in found.id_map.identifiers:  # its one trained row is the mean: no view of any task
        raise InputError(f"{found.folder}: a lean export (export --lean) keeps no task's puzzle row, so predict has "
                         "nothing to answer with; use it with `arc-trm ttt --checkpoint`, or export without --lean")
    state, cfg = found.state, found.config
    model = TRM.to_assign(cfg.model)
    chosen = {**state["model"], **state["ema"]} if weights == "ema" and state.get("ema") else state["model"]
    model.load_state_dict(chosen, assign=True)  # shapes were checked against the config by load_checkpoint
    return LoadedModel(model.to(device).eval(), cfg, found.id_map, found.folder)


# ----------------------------------------------------------------------------------------------
# Running views over ranks, and the two callers: predict and evaluation during training


@dataclass
class VotedResult:
    ranked: dict[tuple[str, int], list[Candidate]]
    mean_steps: float
    views: int
    seconds: float


def vote_views(model: TRM, views: list[View], tasks: dict[str, Task], run: ViewRun, d: Dist) -> VotedResult | None:
    """Run this rank's share of the views (one length bucket at a time) and rank the candidates
    of every test input on rank 0: by votes, or by consistency. Consistency needs all views of an
    input on one rank, so it splits the work by test input and runs an input's views together.
    With noisy trajectories, each view's surest trajectory stands for it (best_trajectories)."""
    consistency = run.scoring == "consistency"
    if consistency:
        inputs_order = sorted({(v.task_id, v.test_index) for v in views})
        mine_inputs = set(inputs_order[d.rank::d.world])
        mine = [v for v in views if (v.task_id, v.test_index) in mine_inputs]
    else:
        mine = views[d.rank::d.world]
    sides = view_sides(mine, tasks, run)
    records: list[ViewRecord] = []  # votes: one per view (the best trajectory)
    ranked: dict = {}
    steps: list[int] = []
    seconds = 0.0
    for side in sorted(set(sides)):
        group = [v for v, s in zip(mine, sides) if s == side]
        rows, noise, owner = with_trajectories(group, run)
        if consistency:  # an input's rows together (stable), so the stream frees each input early
            order = sorted(range(len(rows)), key=lambda j: (rows[j].task_id, rows[j].test_index))
            rows, noise, owner = [rows[j] for j in order], noise[order], owner[order]
        inputs, fits = encode_views(rows, tasks, side)
        ids = np.array([v.row for v in rows], dtype=np.int32)
        stream = InputStream([(v.task_id, v.test_index) for v in rows], side) if consistency else None

        def record(outputs: ViewOutputs, j: int, logprobs: np.ndarray | None) -> ViewRecord:
            view = int(owner[j]) if run.trajectories > 1 else None
            return ViewRecord(prediction_of(rows[j], outputs, j, fits[j], side), rows[j].augmentation,
                              logprobs if fits[j] else None, view)

        def stream_views(outputs: ViewOutputs, finished: np.ndarray, logprobs: np.ndarray) -> None:
            for j, lp in zip(finished, logprobs):
                stream.add(record(outputs, j, lp))

        outputs = run_views(model, inputs, ids, replace(run, progress=run.progress and d.main), d.device,
                            on_finished=stream_views if consistency else None,
                            noise=noise if run.trajectories > 1 else None)
        if consistency:
            ranked.update(stream.close())
        else:
            records += best_trajectories([record(outputs, j, None) for j in range(len(rows)) if outputs.steps[j] > 0])
        steps += [int(s) for s in outputs.steps if s > 0]
        seconds += outputs.seconds
    preds = [r.prediction for r in records]
    if d.world > 1:
        gathered: list = [None] * d.world
        dist.all_gather_object(gathered, (preds, ranked, steps, seconds))
        preds = [p for g in gathered for p in g[0]]
        ranked = {k: c for g in gathered for k, c in g[1].items()}
        steps = [s for g in gathered for s in g[2]]
        seconds = max(g[3] for g in gathered)
    if not d.main:
        return None
    if not consistency:
        ranked = rank_candidates(preds)
    return VotedResult(ranked, float(np.mean(steps)) if steps else 0.0, len(steps), seconds)


def evaluate_built(model: TRM, built, *, views_per_input: int, d: Dist, run: ViewRun | None = None
                   ) -> dict[str, float] | None:
    """pass@1/pass@2 and mean halting steps on a built set's test split (None off rank 0)."""
    test_tasks = [t for t in built.tasks if t.role == "test"]
    if not test_tasks:
        return None
    views = make_views(test_tasks, built.identifiers, built.augmentation_records(), views_per_input).views
    run = run or ViewRun(canvas=built.canvas)
    result = vote_views(model, views, {t.id: t for t in test_tasks}, run, d)
    if result is None:
        return None
    metrics = {"mean_steps": result.mean_steps, "views": float(result.views)}
    for k in (1, 2):
        count = pass_count(result.ranked, task_solutions(test_tasks), k)
        if count.total:
            metrics[f"pass@{k}"] = count.solved / count.total
    return metrics


@dataclass
class PredictSummary:
    submission: Path
    tasks: int
    test_inputs: int
    views: int
    mean_steps: float
    seconds: float
    untrained: list[str]
    ranked: dict[tuple[str, int], list[Candidate]]
    kept: list[str] = field(default_factory=list)  # untrained tasks that kept an earlier file's answers
    other_content: list[str] = field(default_factory=list)  # tasks whose rows were trained on other content
    answered: int = 0  # test inputs with a view that fits the canvas
    answered_tasks: int = 0  # the tasks they belong to
    too_large: list[str] = field(default_factory=list)  # tasks with a test input no model's canvas holds
    canvas: int = 0  # the (largest) model canvas
    too_large_kept: list[str] = field(default_factory=list)  # of those, the ones an earlier file answered
    written: bool = True  # False: no view finished and the earlier submission was left as it was


@dataclass(frozen=True)
class PredictOptions:
    """What `predict` answers with besides how views run (ViewRun)."""

    source: str  # the task spec, recorded in NAME.predict.json
    named: str = ""  # the source as the user named it when `source` is a run's own copy (ttt); recorded as "source"
    max_views: int = 0  # views per test input (0: every view the checkpoint trained)
    max_steps: int = 0  # step cap per view (0: the model's halt_max_steps)


def predict(models: Iterable[LoadedModel], tasks: list[Task], out: Path, options: PredictOptions, run: ViewRun,
            d: Dist) -> PredictSummary | None:
    """Run voted inference on `tasks` and write the submission, NAME.candidates.json and the
    record NAME.predict.json beside it (rank 0). The folder of `out` must exist. Several models
    (an ensemble) pool their votes: each view votes once per model. Pass a generator to hold one
    model at a time. `run` gives the settings; each model's own canvas and bucketing replace its."""
    results: list[VotedResult] = []
    untrained: set[str] | None = None
    other_content: set[str] = set()  # tasks some model has rows for, trained on other content
    answered: set[tuple[str, int]] = set()  # test inputs some model has a view of that fits its canvas
    too_large: set[tuple[str, int]] = set()  # test inputs with views, larger than a model's canvas
    canvases: set[int] = set()
    by_id = {t.id: t for t in tasks}
    checkpoints: list[str] = []
    max_steps = 0
    for loaded in models:
        if options.max_steps > 0:
            loaded.model.cfg.halt_max_steps = options.max_steps
        max_steps = loaded.model.cfg.halt_max_steps
        ids = loaded.id_map
        found = make_views(tasks, ids.identifiers, ids.augmentations, options.max_views, ids.task_hashes)
        untrained = set(found.untrained) if untrained is None else untrained & set(found.untrained)
        other_content.update(found.other_content)
        views, unfit = fitting_views(found.views, by_id, loaded.cfg.data.canvas)
        answered.update((v.task_id, v.test_index) for v in views)
        too_large |= unfit
        canvases.add(loaded.cfg.data.canvas)
        result = vote_views(loaded.model, views, by_id,
                            replace(run, canvas=loaded.cfg.data.canvas, bucketing=loaded.cfg.data.bucketing), d)
        results += [result] if result is not None else []
        checkpoints.append(str(Path(loaded.checkpoint).resolve()))
        del loaded  # before the next model loads
    if not checkpoints:
        raise ValueError("predict needs at least one model")
    if not d.main:
        return None
    ranked = results[0].ranked if len(results) == 1 else pool_candidates(r.ranked for r in results)
    views_run = sum(r.views for r in results)
    mean_steps = sum(r.mean_steps * r.views for r in results) / views_run if views_run else 0.0
    seconds = sum(r.seconds for r in results)
    untrained_tasks = sorted(untrained or ())
    too_large_tasks = sorted({task_id for task_id, _ in too_large - answered})
    answered_tasks = {task_id for task_id, _ in answered}
    out = Path(out)
    earlier = earlier_entries(out, tasks)
    summary = PredictSummary(out, len(tasks), sum(len(t.test) for t in tasks), views_run, mean_steps,
                             seconds, untrained_tasks, ranked, kept=[t for t in untrained_tasks if t in earlier],
                             other_content=sorted(other_content), answered=len(answered),
                             answered_tasks=len(answered_tasks), too_large=too_large_tasks, canvas=max(canvases),
                             too_large_kept=[t for t in too_large_tasks if t in earlier])
    # Only answers produced replace an earlier file's; with none (a deadline before any view
    # finished), a valid earlier submission is left as it was, byte for byte.
    if not any(ranked.values()) and is_submission_of(out, tasks):
        print(f"no view finished: {out} keeps its answers")
        return replace(summary, written=False)
    # The three files are one result: a signal waits for the last (no new submission beside an
    # old record); the command then says it finished and exits with the signal's code.
    with current().polled(f"finishing the writes of {out.name}, its candidates and record"):
        write_submission(out, merge_submission(tasks, ranked, earlier), tasks)
        write_candidates(candidates_path(out), merge_candidates(candidates_path(out), ranked, tasks))
        write_json_atomic(record_path(out), {
            "tasks": absolute_spec(options.source),
            **({"source": absolute_spec(options.named)} if options.named else {}),
            "checkpoint": checkpoints[0],
            **({"checkpoints": checkpoints} if len(checkpoints) > 1 else {}),
            "submission": out.name, "candidates": candidates_path(out).name,  # beside this record
            "halting": run.halting, "scoring": run.scoring, "trajectories": run.trajectories, "noise": run.noise,
            "max_steps": max_steps, "views": views_run,
            "mean_steps": mean_steps, "seconds": seconds, "untrained_tasks": untrained_tasks,
            "other_content_tasks": summary.other_content, "too_large_tasks": too_large_tasks,
        }, indent=2)
    return summary


# ----------------------------------------------------------------------------------------------
# Command line


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
    p.add_argument("--weights", choices=["ema", "model"], default="ema", help="EMA weights (default) or raw weights")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps | cuda:N")
    p.add_argument("--skip-bad-tasks", action="store_true",
                   help="skip malformed tasks with a warning; those whose test inputs are readable get the "
                        "fallback answer")
    add_progress_argument(p)


def check_arguments(args: argparse.Namespace) -> None:
    """Every numeric option, the device and the output paths, before any model or task loads."""
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
    check_prediction_outputs(args.out)


def load_prediction_tasks(spec: str, skip_bad: bool) -> list[Task]:
    """The tasks to answer; with skip_bad, malformed ones are skipped with a warning and those
    whose test inputs are readable come back without demonstrations (they get the fallback)."""
    salvaged: list[Task] = []
    warn = lambda m: print(f"warning: {m}", file=sys.stderr)  # noqa: E731
    tasks = load_tasks(spec, on_error="skip" if skip_bad else "raise", warn=warn, salvaged=salvaged)
    inflated = training_split_warning(spec)
    if inflated:
        print(inflated, file=sys.stderr)
    known = {t.id for t in tasks}
    return sorted(tasks + [t for t in salvaged if t.id not in known], key=lambda t: t.id)


def file_identity(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a file, None when absent: an atomic write gives a new one."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def print_unanswered(summary: PredictSummary, ids: list[str], kept: list[str], why: str, hint: str,
                     which: str = "") -> None:
    """Up to two lines for tasks no view answered (`why`): those that got the fallback answer and
    those that kept the answers the submission held before."""
    fallback = [t for t in ids if t not in kept]
    for group, got in ((fallback, f"got the fallback answer{which}"),
                       (kept, f"kept the answers {summary.submission} held before{which}")):
        if group:
            print(f"{len(group)} tasks {why} and {got}{hint}: {', '.join(group[:5])}" + (" ..." if len(group) > 5 else ""))


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    tasks = load_prediction_tasks(args.tasks, args.skip_bad_tasks)
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
    stop.describe = lambda signame: (f"{signame}: received while the answers were written, which finished first: "
                                     f"{args.out} is complete")
    if summary is not None:
        print(f"predicted {summary.answered} of {summary.test_inputs} test inputs ({summary.answered_tasks} of "
              f"{summary.tasks} tasks) from {summary.views} views in {summary.seconds:.1f} s, "
              f"{summary.mean_steps:.2f} steps per view on average")
        if summary.other_content:
            print(other_content_line(summary.other_content, "they count as tasks the table lacks"))
        print_unanswered(summary, summary.untrained, summary.kept,
                         "have no puzzle embedding trained on their content", " (run `arc-trm ttt` on them)")
        print_unanswered(summary, summary.too_large, summary.too_large_kept,
                         f"have test inputs larger than the model's {summary.canvas}x{summary.canvas} canvas", "",
                         " for them")
        if summary.written:
            print(f"wrote {summary.submission} and {candidates_path(summary.submission).name}")
    teardown()
    return 0
