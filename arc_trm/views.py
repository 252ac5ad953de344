"""Views of test inputs and how they run: one view per trained augmentation of a test input,
batched in slots that refill as views halt (arc_trm.infer votes over them).

A view stops once its halt logit is above 0 (or at the step cap) and its slot takes the next
pending view, so easy views cost few steps. Noisy trajectories (PTRM) run a view again with
Gaussian noise in the latent; the first trajectory is always the clean run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from arc_trm.consistency import SCORINGS
from arc_trm.model import TRM, Batch, Carry
from augment.buckets import predicted_side
from augment.console import progress_bar
from augment.encoding import decode_grid, encode_grid
from augment.errors import few_ids
from augment.grids import split_identifier
from augment.task_hash import content_hash
from augment.tasks import Task
from augment.transforms import Augmentation
from submission.runfolder import LEAN_IDENTIFIER
from submission.vote import Prediction


@dataclass(frozen=True)
class View:
    task_id: str
    test_index: int
    row: int  # puzzle identifier
    augmentation: Augmentation


class ViewSet(NamedTuple):
    views: list[View]
    untrained: list[str]  # tasks without a row trained on their content
    other_content: list[str]  # of those, the ones whose id has rows, trained on other content


def trained_rows(tasks: list[Task], identifiers: list[str], task_hashes: dict[str, str] | None
                 ) -> tuple[dict[str, list[tuple[int, int]]], list[str]]:
    """(task id -> its (k, row) trained on the task's content, the ids of tasks whose rows were all
    trained on other content). `task_hashes`: the checkpoint's task id -> content hash
    (IdentifierMap); without it (not recorded) a row counts whatever the content."""
    hashes = {t.id: content_hash(t) for t in tasks} if task_hashes is not None else {}
    rows_of: dict[str, list[tuple[int, int]]] = {}
    other: set[str] = set()
    for row, ident in enumerate(identifiers[1:], start=1):
        if ident == LEAN_IDENTIFIER:  # a lean export's mean row: no task's
            continue
        task_id, k = split_identifier(ident)
        if task_hashes is None or (task_id in hashes and hashes[task_id] == task_hashes.get(task_id)):
            rows_of.setdefault(task_id, []).append((k, row))
        elif task_id in hashes:
            other.add(task_id)
    return rows_of, sorted(other - set(rows_of))


def make_views(tasks: list[Task], identifiers: list[str], augmentations: list[str],
               max_views: int = 0, task_hashes: dict[str, str] | None = None) -> ViewSet:
    """Views of every test input (at most `max_views` per input, lowest augmentation index first),
    and the ids of tasks that have no trained identifier. With `task_hashes` (the checkpoint's
    IdentifierMap), a row trained on other content than the task now has is not used: the task
    counts as untrained. A task without demonstrations (salvaged from a malformed file) gets no
    views and is neither: it keeps the fallback, or an earlier submission's answer.

    Views are ordered round by round (every input's first view, then every input's second, ...),
    so a run cut short by a deadline has still voted on every input.
    """
    tasks = [t for t in tasks if t.train]  # salvaged from a malformed file (no demonstrations): keeps the fallback
    rows_of, other_content = trained_rows(tasks, identifiers, task_hashes)
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
    return ViewSet([v for r in rounds for v in r], untrained, other_content)


def fitting_views(views: list[View], tasks: dict[str, Task], canvas: int) -> tuple[list[View], set[tuple[str, int]]]:
    """The views whose test input fits the canvas, and the test inputs (task id, index) that do
    not: no view of theirs can answer (no dihedral changes a grid's longest side), so none runs."""
    too_large = {(v.task_id, v.test_index) for v in views
                 if max(tasks[v.task_id].test[v.test_index].input.shape) > canvas}
    return [v for v in views if (v.task_id, v.test_index) not in too_large], too_large


def other_content_line(ids: list[str], outcome: str, whose: str = "the checkpoint's") -> str:
    """The one line that says which tasks differ in content from what the checkpoint's rows of
    their ids were trained on (another release of a set changes a few tasks under the same ids).
    `whose`: an ensemble names the tasks no checkpoint answers, whose rows are some checkpoint's."""
    differ = "task differs" if len(ids) == 1 else "tasks differ"
    return (f"{len(ids)} {differ} in content from the tasks {whose} puzzle rows of the same ids were "
            f"trained on, so those rows are not used and {outcome}: {few_ids(ids, 5)}")


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
    scoring: str = "votes"  # votes | consistency (rerank by log-probability under every view)
    trajectories: int = 1  # runs of each view: the first clean, the others with noise (PTRM)
    noise: float = 0.0  # std of the Gaussian noise added to the latent before each cycle
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {self.scoring!r}")
        if self.trajectories < 1 or not self.noise >= 0:
            raise ValueError(f"trajectories must be >= 1 and noise >= 0, got {self.trajectories} and {self.noise}")


@dataclass
class ViewOutputs:
    tokens: np.ndarray  # (N, L) predicted tokens
    halt_prob: np.ndarray  # (N,) sigmoid(q_halt) at the step the view stopped
    steps: np.ndarray  # (N,) supervision steps the view ran
    seconds: float


LogprobSink = Callable[[ViewOutputs, np.ndarray, np.ndarray], None]  # (outputs, finished views, (k, L, V))


@torch.no_grad()
def run_views(model: TRM, inputs: np.ndarray, puzzle_ids: np.ndarray, run: ViewRun,
              device: torch.device, on_finished: LogprobSink | None = None,
              noise: np.ndarray | None = None) -> ViewOutputs:
    """Run views in `run.batch_size` slots; a halted slot records its answer and takes the next
    pending view (with `run.halting` off, every view runs the step cap).

    With a `run.deadline` (time.time()), no new view starts after it and views still running are
    dropped (their `steps` stay 0); the caller votes with the views that finished.
    `on_finished` receives each finished group of views with their log-softmax at their last step.
    `noise` (N,): the std of the noise each view's latent gets before each cycle (0: clean).
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
    slot_noise = np.zeros(slots, dtype=np.float32)
    generator = torch.Generator(device=device).manual_seed(run.noise_seed) if noise is not None else None
    bar = progress_bar(run.progress, total=n, desc="views", unit="view")
    while done < n:
        if run.deadline is not None and time.time() > run.deadline:
            break
        new_inputs = np.zeros((slots, length), dtype=np.int32)
        new_ids = np.zeros(slots, dtype=np.int32)
        for s in np.flatnonzero(free):
            if pending < n:
                slot_view[s] = pending
                new_inputs[s], new_ids[s] = inputs[pending], puzzle_ids[pending]
                slot_noise[s] = 0.0 if noise is None else noise[pending]
                pending += 1
            else:
                slot_view[s] = -1  # idle: computes on a blank row, result ignored
        batch = Batch(torch.from_numpy(new_inputs).to(device), torch.zeros(slots, length, dtype=torch.long, device=device),
                      torch.from_numpy(new_ids).to(device))
        if carry is None:
            carry = model.initial_carry(batch)
        carry.halted = torch.from_numpy(free).to(device)
        step = model(carry, batch, use_q_halt=run.halting, noise=latent_noise(model, carry, slot_noise, generator))
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
            if on_finished is not None:
                on_finished(out, views, torch.log_softmax(step.logits[idx].float(), -1).cpu().numpy())
            done += finished.size
            bar.update(finished.size)
        free = halted | (slot_view < 0)
    bar.close()
    out.seconds = time.perf_counter() - start
    return out


def latent_noise(model: TRM, carry: Carry, sigma: np.ndarray, generator: torch.Generator | None) -> torch.Tensor | None:
    """(T, B, L_total, D) Gaussian noise scaled per row by `sigma`, or None when every row is clean."""
    if generator is None or not sigma.any():
        return None
    shape = (model.cfg.H_cycles, *carry.z.shape)
    scale = torch.from_numpy(sigma).to(carry.z.device, carry.z.dtype).view(1, -1, 1, 1)
    return torch.randn(shape, generator=generator, device=carry.z.device, dtype=carry.z.dtype) * scale


def prediction_of(view: View, outputs: ViewOutputs, j: int, fits: bool, canvas: int) -> Prediction:
    """View j's tokens decoded, with its augmentation undone."""
    grid = decode_grid(outputs.tokens[j], canvas) if fits else None
    return Prediction(view.task_id, view.test_index, None if grid is None else view.augmentation.invert(grid),
                      float(outputs.halt_prob[j]))


def predictions_from(views: list[View], outputs: ViewOutputs, fits: np.ndarray, canvas: int) -> list[Prediction]:
    """Every view that ran, decoded (views a deadline left unrun are skipped): benchmarks/halting.py's
    vote over one run_views call."""
    return [prediction_of(v, outputs, j, fits[j], canvas) for j, v in enumerate(views) if outputs.steps[j] > 0]


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


class Trajectories(NamedTuple):
    rows: list[View]  # each view k times, trajectory by trajectory
    noise: np.ndarray  # (rows,) float32: each row's noise std; a view's first trajectory is clean (0)
    owner: np.ndarray  # (rows,) int: the view each row belongs to


def with_trajectories(views: list[View], run: ViewRun) -> Trajectories:
    """Each view `run.trajectories` times, trajectory by trajectory."""
    k, n = run.trajectories, len(views)
    noise = np.repeat(np.array([0.0] + [run.noise] * (k - 1), dtype=np.float32), n)
    return Trajectories(views * k, noise, np.tile(np.arange(n), k))
