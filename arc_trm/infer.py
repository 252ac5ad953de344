"""Voted inference with halting -> Kaggle submission.json.

  arc-trm predict --checkpoint runs/agi2 --tasks arc-agi-2:evaluation --out submission.json

Every test input is seen through the augmented views its task was trained under (one view per
trained puzzle identifier). Views run in batches; a view stops once its halt logit is above 0
(or at the step cap) and its batch slot is refilled with a pending view, so easy views cost few
steps. `--halting off` runs every view for the full cap, as the reference evaluation does. Each
prediction is decoded, its augmentation inverted, and the views vote (REFERENCE §7).

Writes the submission (validated, atomically), `<name>.candidates.json` with every ranked
candidate, and `<name>.predict.json`, the record of what was run (absolute paths). Tasks whose puzzle embeddings were never
trained get the fallback answer (the test input); `arc-trm ttt` trains them.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from arc_trm import checkpoint as ckpt
from arc_trm.common import Dist, setup, teardown
from arc_trm.config import RunConfig, check_device_available
from arc_trm.model import TRM, Batch
from augment.buckets import predicted_side
from augment.encoding import decode_grid, encode_grid
from augment.grids import split_identifier
from augment.store import IdentifierMap
from augment.errors import InputError
from augment.tasks import Task, absolute_spec, content_hash, load_tasks
from augment.transforms import Augmentation
from submission.outputs import check_prediction_outputs, record_path
from submission.kaggle import build_submission, candidates_path, write_candidates, write_submission
from augment.files import write_json_atomic
from submission.score import pass_count, task_solutions
from submission.vote import Candidate, Prediction, rank_candidates


@dataclass
class LoadedModel:
    model: TRM
    cfg: RunConfig
    id_map: IdentifierMap  # row -> identifier, augmentation and task hash
    checkpoint: Path

    def view_run(self, batch_size: int = 256, halting: bool = True, progress: bool = True,
                 deadline: float | None = None) -> ViewRun:
        """How to run views of this model: its canvas and length buckets, and these settings."""
        return ViewRun(self.cfg.data.canvas, batch_size, halting, self.cfg.data.bucketing, progress, deadline)


def load_model(path: str | Path, device: torch.device, weights: str = "ema") -> LoadedModel:
    """A trained model from a run folder or checkpoint folder (EMA weights by default)."""
    found = ckpt.load_checkpoint(path)
    state, cfg = found.state, found.config
    model = TRM(cfg.model)
    model.load_state_dict(state["model"])  # shapes were checked against the config by load_checkpoint
    if weights == "ema" and state.get("ema"):
        model.load_state_dict({**state["model"], **state["ema"]})
    return LoadedModel(model.to(device).eval(), cfg, found.id_map, found.folder)


# ----------------------------------------------------------------------------------------------
# Views


@dataclass(frozen=True)
class View:
    task_id: str
    test_index: int
    row: int  # puzzle identifier
    augmentation: Augmentation


def make_views(tasks: list[Task], identifiers: list[str], augmentations: list[str],
               max_views: int = 0, task_hashes: list[str] | None = None) -> tuple[list[View], list[str]]:
    """Views of every test input (at most `max_views` per input, lowest augmentation index first),
    and the ids of tasks that have no trained identifier. With `task_hashes` (the checkpoint's
    IdentifierMap), a row trained on other content than the task now has is not used.

    Views are ordered round by round (every input's first view, then every input's second, ...),
    so a run cut short by a deadline has still voted on every input.
    """
    hashes = {t.id: content_hash(t) for t in tasks} if task_hashes is not None else {}
    rows_of: dict[str, list[tuple[int, int]]] = {}
    for row, ident in enumerate(identifiers[1:], start=1):
        task_id, k = split_identifier(ident)
        if task_hashes is None or hashes.get(task_id) == task_hashes[row]:
            rows_of.setdefault(task_id, []).append((k, row))
    rounds: list[list[View]] = []
    untrained = []
    for task in tasks:
        rows = sorted(rows_of.get(task.id, []))
        if not rows:
            untrained.append(task.id)
            continue
        for j, (_, row) in enumerate(rows[:max_views] if max_views > 0 else rows):
            if j == len(rounds):
                rounds.append([])
            aug = Augmentation.from_str(augmentations[row])
            rounds[j] += [View(task.id, i, row, aug) for i in range(len(task.test))]
    return [v for r in rounds for v in r], untrained


def encode_views(views: list[View], tasks: dict[str, Task], canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, canvas*canvas) input tokens at the top-left and a mask of views that fit the canvas."""
    inputs = np.zeros((len(views), canvas * canvas), dtype=np.uint8)
    fits = np.zeros(len(views), dtype=bool)
    for j, v in enumerate(views):
        grid = v.augmentation.apply(tasks[v.task_id].test[v.test_index].input)
        if max(grid.shape) <= canvas:
            inputs[j] = encode_grid(grid, canvas)
            fits[j] = True
    return inputs, fits


@dataclass(frozen=True)
class ViewRun:
    """How views are run: the model's canvas, slots in flight, halting, length buckets."""

    canvas: int
    batch_size: int = 256
    halting: bool = True  # False: every view runs the step cap (the reference)
    bucketing: bool = False  # each test input on the smallest bucket canvas that fits its answer
    progress: bool = False
    deadline: float | None = None  # time.time() after which no view starts


@dataclass
class ViewOutputs:
    tokens: np.ndarray  # (N, L) predicted tokens
    halt_prob: np.ndarray  # (N,) sigmoid(q_halt) at the step the view stopped
    steps: np.ndarray  # (N,) supervision steps the view ran
    seconds: float


@torch.no_grad()
def run_views(model: TRM, inputs: np.ndarray, puzzle_ids: np.ndarray, run: ViewRun,
              device: torch.device) -> ViewOutputs:
    """Run views in `run.batch_size` slots; a halted slot records its answer and takes the next
    pending view (with `run.halting` off, every view runs the step cap).

    With a `run.deadline` (time.time()), no new view starts after it and views still running are
    dropped (their `steps` stay 0); the caller votes with the views that finished.
    """
    model.eval()
    n, length = inputs.shape
    out = ViewOutputs(np.zeros((n, length), np.uint8), np.zeros(n, np.float32), np.zeros(n, np.int32), 0.0)
    if n == 0:
        return out
    start = time.perf_counter()
    slots = min(run.batch_size, n)
    slot_view = np.full(slots, -1)
    pending, done, carry = 0, 0, None
    free = np.ones(slots, dtype=bool)
    bar = tqdm(total=n, desc="views", unit="view", disable=not run.progress, dynamic_ncols=True)
    while done < n:
        if run.deadline is not None and time.time() > run.deadline:
            break
        new_inputs = np.zeros((slots, length), dtype=np.int32)
        new_ids = np.zeros(slots, dtype=np.int32)
        for s in np.flatnonzero(free):
            if pending < n:
                slot_view[s] = pending
                new_inputs[s], new_ids[s] = inputs[pending], puzzle_ids[pending]
                pending += 1
            else:
                slot_view[s] = -1  # idle: computes on a blank row, result ignored
        batch = Batch(torch.from_numpy(new_inputs).to(device), torch.zeros(slots, length, dtype=torch.long, device=device),
                      torch.from_numpy(new_ids).to(device))
        if carry is None:
            carry = model.initial_carry(batch)
        carry.halted = torch.from_numpy(free).to(device)
        step = model(carry, batch, use_q_halt=run.halting)
        carry = step.carry
        halted = carry.halted.cpu().numpy()  # the one read per step: which slots to refill
        finished = np.flatnonzero(halted & (slot_view >= 0))
        if finished.size:
            idx = torch.from_numpy(finished).to(device)
            views = slot_view[finished]
            tokens = step.logits[idx].argmax(-1).to(torch.uint8)
            # One copy for the finished rows' halt probability and step count.
            extra = torch.stack([torch.sigmoid(step.q_halt_logits[idx]), carry.steps[idx].float()]).cpu().numpy()
            out.tokens[views] = tokens.cpu().numpy()
            out.halt_prob[views], out.steps[views] = extra[0], extra[1].astype(np.int32)
            done += finished.size
            bar.update(finished.size)
        free = halted | (slot_view < 0)
    bar.close()
    out.seconds = time.perf_counter() - start
    return out


def predictions_from(views: list[View], outputs: ViewOutputs, fits: np.ndarray, canvas: int) -> list[Prediction]:
    """Decode each view's tokens and undo its augmentation."""
    preds = []
    for j, v in enumerate(views):
        if outputs.steps[j] == 0:
            continue  # never ran (deadline)
        grid = decode_grid(outputs.tokens[j], canvas) if fits[j] else None
        preds.append(Prediction(v.task_id, v.test_index, None if grid is None else v.augmentation.invert(grid),
                                float(outputs.halt_prob[j])))
    return preds


# ----------------------------------------------------------------------------------------------
# Running views over ranks, and the two callers: predict and evaluation during training


@dataclass
class VotedResult:
    ranked: dict[tuple[str, int], list[Candidate]]
    mean_steps: float
    views: int
    seconds: float


def view_sides(views: list[View], tasks: dict[str, Task], run: ViewRun) -> list[int]:
    """Canvas side of each view: its length bucket, or the full canvas."""
    if not run.bucketing:
        return [run.canvas] * len(views)
    memo: dict[tuple[str, int], int] = {}
    for v in views:
        key = (v.task_id, v.test_index)
        if key not in memo:
            memo[key] = predicted_side(tasks[v.task_id], v.test_index, run.canvas)
    return [memo[(v.task_id, v.test_index)] for v in views]


def vote_views(model: TRM, views: list[View], tasks: dict[str, Task], run: ViewRun, d: Dist) -> VotedResult | None:
    """Run this rank's share of the views (one length bucket at a time); rank 0 gathers every
    prediction and votes."""
    mine = views[d.rank::d.world]
    sides = view_sides(mine, tasks, run)
    preds: list[Prediction] = []
    steps: list[int] = []
    seconds = 0.0
    for side in sorted(set(sides)):
        group = [v for v, s in zip(mine, sides) if s == side]
        inputs, fits = encode_views(group, tasks, side)
        ids = np.array([v.row for v in group], dtype=np.int32)
        outputs = run_views(model, inputs, ids, replace(run, progress=run.progress and d.main), d.device)
        preds += predictions_from(group, outputs, fits, side)
        steps += [int(s) for s in outputs.steps if s > 0]
        seconds += outputs.seconds
    if d.world > 1:
        gathered: list = [None] * d.world
        dist.all_gather_object(gathered, (preds, steps, seconds))
        preds = [p for g in gathered for p in g[0]]
        steps = [s for g in gathered for s in g[1]]
        seconds = max(g[2] for g in gathered)
    if not d.main:
        return None
    return VotedResult(rank_candidates(preds), float(np.mean(steps)) if steps else 0.0, len(preds), seconds)


def evaluate_built(model: TRM, built, *, views_per_input: int, d: Dist, run: ViewRun | None = None
                   ) -> dict[str, float] | None:
    """pass@1/pass@2 and mean halting steps on a built set's test split (None off rank 0)."""
    test_tasks = [t for t in built.tasks if t.role == "test"]
    if not test_tasks:
        return None
    views, _ = make_views(test_tasks, built.identifiers, built.augmentation_records(), views_per_input)
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


@dataclass(frozen=True)
class PredictOptions:
    """What `predict` answers with besides how views run (ViewRun)."""

    source: str  # the task spec, recorded in NAME.predict.json
    max_views: int = 0  # views per test input (0: every view the checkpoint trained)
    max_steps: int = 0  # step cap per view (0: the model's halt_max_steps)


def predict(loaded: LoadedModel, tasks: list[Task], out: Path, options: PredictOptions, run: ViewRun,
            d: Dist) -> PredictSummary | None:
    """Run voted inference on `tasks` and write the submission, NAME.candidates.json and the
    record NAME.predict.json beside it (rank 0). The folder of `out` must exist. `run` comes from
    `loaded.view_run(...)` (the checkpoint's canvas and bucketing)."""
    model = loaded.model
    if options.max_steps > 0:
        model.cfg.halt_max_steps = options.max_steps
    ids = loaded.id_map
    views, untrained = make_views(tasks, ids.identifiers, ids.augmentations, options.max_views, ids.task_hashes)
    result = vote_views(model, views, {t.id: t for t in tasks}, run, d)
    if result is None:
        return None
    out = Path(out)
    write_submission(out, build_submission(tasks, result.ranked), tasks)
    write_candidates(candidates_path(out), result.ranked)
    summary = PredictSummary(out, len(tasks), sum(len(t.test) for t in tasks), result.views, result.mean_steps,
                             result.seconds, untrained, result.ranked)
    write_json_atomic(record_path(out), {
        "tasks": absolute_spec(options.source), "checkpoint": str(Path(loaded.checkpoint).resolve()),
        "submission": out.name, "candidates": candidates_path(out).name,  # beside this record
        "halting": run.halting, "max_steps": model.cfg.halt_max_steps, "views": result.views,
        "mean_steps": result.mean_steps, "seconds": result.seconds, "untrained_tasks": untrained,
    }, indent=2)
    return summary


# ----------------------------------------------------------------------------------------------
# Command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="run folder (uses its latest checkpoint) or checkpoint folder")
    p.add_argument("--tasks", required=True, help="tasks to answer, e.g. arc-agi-2:evaluation or a challenges .json")
    p.add_argument("--out", default="submission.json", help="submission file (default: submission.json)")
    p.add_argument("--views", type=int, default=0,
                   help="augmented views per test input (default 0 = every view the checkpoint was trained on)")
    p.add_argument("--halting", choices=["on", "off"], default="on",
                   help="on: a view stops when its halt logit > 0; off: always run the step cap (reference)")
    p.add_argument("--max-steps", type=int, default=0, help="step cap per view (default: the model's halt_max_steps)")
    p.add_argument("--batch-size", type=int, default=256, help="views in flight at once")
    p.add_argument("--weights", choices=["ema", "model"], default="ema", help="EMA weights (default) or raw weights")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps | cuda:N")
    p.add_argument("--skip-bad-tasks", action="store_true",
                   help="skip malformed tasks with a warning; those whose test inputs are readable get the "
                        "fallback answer")
    p.add_argument("--no-progress", action="store_true")


def check_arguments(args: argparse.Namespace) -> None:
    """Every numeric option, the device and the output paths, before any model or task loads."""
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--views", args.views, 0),
                             ("--max-steps", args.max_steps, 0)):
        if value < low:
            raise InputError(f"{flag} must be an integer >= {low}, got {value}")
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
    known = {t.id for t in tasks}
    return sorted(tasks + [t for t in salvaged if t.id not in known], key=lambda t: t.id)


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    tasks = load_prediction_tasks(args.tasks, args.skip_bad_tasks)
    d = setup(args.device)
    loaded = load_model(args.checkpoint, d.device, args.weights)
    options = PredictOptions(args.tasks, max_views=args.views, max_steps=args.max_steps)
    view_run = loaded.view_run(batch_size=args.batch_size, halting=args.halting == "on", progress=not args.no_progress)
    summary = predict(loaded, tasks, Path(args.out), options, view_run, d)
    if summary is not None:
        print(f"predicted {summary.test_inputs} test inputs of {summary.tasks} tasks from {summary.views} views "
              f"in {summary.seconds:.1f} s, {summary.mean_steps:.2f} steps per view on average")
        if summary.untrained:
            print(f"{len(summary.untrained)} tasks have no puzzle embedding trained on their content and got the "
                  f"fallback answer "
                  f"(run `arc-trm ttt` on them): {', '.join(summary.untrained[:5])}"
                  + (" ..." if len(summary.untrained) > 5 else ""))
        print(f"wrote {summary.submission} and {candidates_path(summary.submission).name}")
    teardown()
    return 0
