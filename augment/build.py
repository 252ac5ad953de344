"""The builder behind `arc-trm build` (build_set, ensure_built): a task set's augmented versions,
drawn per task (draw.py), stored as the arrays of store.py and written atomically. What a build
holds and how its versions are drawn is the command's help (augment/build_cli.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from joblib import Parallel, delayed
from augment.console import progress_bar, warn_once

from .draw import DRAW_CHUNK, augment_task
from .errors import InputError, TaskError, few_ids
from .files import atomic_writer, check_replaceable, read_json, replace_folder, write_text_atomic
from .options import BuildOptions
from .store import ARRAYS, FORMAT, BuiltSet, is_build, map_arrays
from .task_hash import update_pairs
from .tasks import Reading, Task, absolute_spec, load_tasks, source_specs
from .transforms import Augmentation


# ---------------------------------------------------------------------------------------------
# What a task contributes
# ---------------------------------------------------------------------------------------------
def hash_pairs(task: Task) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The pairs whose grids define a task for de-duplication and seeding.

    Demonstrations always; test pairs with their outputs for role "train", test inputs alone for
    role "test" (the build never reads a test task's solutions, so a test task augments the same
    whether or not its solutions are known).
    """
    tests = [(p.input, p.output if task.role == "train" else None) for p in task.test]
    return [(p.input, p.output) for p in task.train] + tests


def train_pairs(task: Task) -> list[tuple[np.ndarray, np.ndarray]]:
    """Training examples of a task (REFERENCE §3): all pairs for role train, demonstrations for role test."""
    pairs = [(p.input, p.output) for p in task.train]
    if task.role == "train":
        pairs += [(p.input, p.output) for p in task.test if p.output is not None]
    return pairs


def task_key(task: Task) -> str:
    """Content hash of what the build uses of a task (role included): the per-task seed."""
    h = hashlib.blake2b(digest_size=16)
    h.update(task.role.encode())
    update_pairs(h, hash_pairs(task))
    return h.hexdigest()


def sources_hash(tasks: Iterable[Task]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for t in sorted(tasks, key=lambda t: t.id):
        h.update(json.dumps([t.id, t.role, task_key(t)]).encode())
    return h.hexdigest()


def max_side(task: Task) -> int:
    grids = [g for p in task.train + task.test for g in (p.input, p.output) if g is not None]
    return max(max(g.shape) for g in grids)


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------
def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _params(options: BuildOptions) -> dict:
    """The options a build's content depends on (workers and progress do not change it)."""
    return {"format": FORMAT, "augmentations": int(options.augmentations), "seed": int(options.seed),
            "canvas": int(options.canvas), "max_tries": int(options.max_tries), "draw_chunk": DRAW_CHUNK}


def _clean_stale_temps(out: Path) -> None:
    """Remove temporary folders of earlier builds of `out` whose process is gone."""
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            pid = int(p.name.rsplit("-", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except (ValueError, IndexError, PermissionError, OSError):
            pass


def _save_npy(folder: Path, name: str, arr: np.ndarray, index: dict) -> None:
    arr = np.ascontiguousarray(arr)
    with atomic_writer(folder / f"{name}.npy", binary=True) as f:
        np.save(f, arr, allow_pickle=False)
    index[name] = {"file": f"{name}.npy", "dtype": str(arr.dtype), "shape": list(arr.shape)}


@dataclass
class _Sources:
    """The source grid pool and per-task tables of the tasks a build keeps."""

    kept: list[Task]
    skipped: list[str]
    grids: list[np.ndarray] = field(default_factory=list)
    pair_rows: list[tuple[int, int]] = field(default_factory=list)
    test_rows: list[int] = field(default_factory=list)
    task_index: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), np.int64))
    keys: dict[str, str] = field(default_factory=dict)
    payloads: list[tuple] = field(default_factory=list)

    def pool(self) -> tuple[np.ndarray, np.ndarray]:
        """(G, S, S) uint8 grids at the top-left, zero padded, and their (G, 2) shapes."""
        side = max(max(g.shape) for g in self.grids)
        pool = np.zeros((len(self.grids), side, side), dtype=np.uint8)
        shapes = np.zeros((len(self.grids), 2), dtype=np.uint8)
        for gi, g in enumerate(self.grids):
            pool[gi, :g.shape[0], :g.shape[1]] = g
            shapes[gi] = g.shape
        return pool, shapes


def canvas_skip_line(skipped: Sequence[str], total: int, canvas: int, listed_in: str) -> str:
    """One line for the tasks a canvas skips: count, reason, the first ids, where all are listed."""
    return (f"skipping {len(skipped)} of {total} tasks ({len(skipped) / max(total, 1):.0%}) with a grid larger than "
            f"the {canvas}x{canvas} canvas: {few_ids(list(skipped))} (all listed in {listed_in})")


def _select_tasks(tasks: Sequence[Task], canvas: int, warn: Callable[[str], None]) -> _Sources:
    """Sorted tasks, unique ids, those that fit the canvas kept (the rest skipped: one warning line)."""
    all_tasks = sorted(tasks, key=lambda t: t.id)
    ids = [t.id for t in all_tasks]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"task id {dup!r} appears twice in the build")
    if not all_tasks:
        raise InputError("no tasks to build")
    kept, skipped = [], []
    for t in all_tasks:
        if max_side(t) > canvas:
            skipped.append(t.id)
        else:
            kept.append(t)
    if not kept:
        raise InputError(f"no task fits a {canvas}x{canvas} canvas")
    if skipped:
        warn(canvas_skip_line(skipped, len(all_tasks), canvas, "the build's metadata.json, 'skipped'"))
    return _Sources(kept, skipped)


def _index_sources(src: _Sources, options: BuildOptions) -> None:
    """Fill the grid pool, the task table and one augmentation payload per kept task."""
    src.task_index = np.zeros((len(src.kept), 6), dtype=np.int64)
    for ti, t in enumerate(src.kept):
        tp = train_pairs(t)
        src.task_index[ti, 2:4] = len(src.pair_rows), len(tp)
        for i, o in tp:
            src.pair_rows.append((len(src.grids), len(src.grids) + 1))
            src.grids += [i, o]
        tests = t.test if t.role == "test" else ()
        src.task_index[ti, 4:6] = len(src.test_rows), len(tests)
        for p in tests:
            src.test_rows.append(len(src.grids))
            src.grids.append(p.input)
        shapes = np.asarray([(i.shape, o.shape) for i, o in tp], dtype=np.int64).reshape(-1, 2, 2)
        src.keys[t.id] = task_key(t)
        src.payloads.append((hash_pairs(t), shapes, src.keys[t.id], options))


def _work(payload):
    return augment_task(*payload)


def _augment_all(payloads: list[tuple], options: BuildOptions) -> list[tuple[np.ndarray, np.ndarray]]:
    """augment_task of every payload, in parallel; results come back in task order whatever the
    number of workers."""
    workers = _default_workers() if options.workers is None else int(options.workers)
    workers = min(workers, len(payloads))
    bar = progress_bar(options.progress, total=len(payloads), desc="augmenting", unit="task")
    if workers <= 1:
        results_iter = map(_work, payloads)
    else:
        results_iter = Parallel(n_jobs=workers, return_as="generator", batch_size=4, pre_dispatch="8*n_jobs")(
            delayed(_work)(p) for p in payloads)
    results = []
    try:
        for r in results_iter:
            results.append(r)
            bar.update(1)
    except BaseException:
        bar.leave = False  # cleared now, not redrawn after the "interrupted" line when it is collected
        raise
    finally:
        bar.close()
    return results


def _row_arrays(src: _Sources, results: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every array of the build (store.ARRAYS); fills the task table's row columns."""
    nums = np.asarray([len(tab) for tab, _ in results], dtype=np.int64)
    src.task_index[:, 0] = 1 + np.concatenate(([0], np.cumsum(nums)[:-1]))
    src.task_index[:, 1] = nums
    row_task = np.concatenate([[-1]] + [np.full(n, i) for i, n in enumerate(nums)]).astype(np.int32)
    row_aug = np.concatenate([Augmentation.identity().to_array()[None]]
                             + [tab for tab, _ in results]).astype(np.uint8)
    per_row = np.concatenate([[0], np.repeat(src.task_index[:, 3], nums)])
    row_examples = np.concatenate(([0], np.cumsum(per_row))).astype(np.int64)
    offsets = np.concatenate([np.zeros((0, 2), np.uint8)] + [o for _, o in results]).astype(np.uint8)
    if len(offsets) != row_examples[-1]:
        raise RuntimeError(f"{len(offsets)} translation offsets for {row_examples[-1]} training examples")
    pool, grid_shapes = src.pool()
    arrays = {
        "grids": pool, "grid_shapes": grid_shapes, "task_index": src.task_index,
        "train_pairs": np.asarray(src.pair_rows, dtype=np.int32).reshape(-1, 2),
        "test_inputs": np.asarray(src.test_rows, dtype=np.int32), "row_task": row_task, "row_aug": row_aug,
        "row_examples": row_examples, "offsets": offsets,
    }
    return {name: arrays[name] for name in ARRAYS}


def _metadata(src: _Sources, arrays: dict[str, np.ndarray], options: BuildOptions, sources: list[str],
              src_hash: str, invalid: Iterable[str]) -> dict:
    kept, ti = src.kept, src.task_index
    counts = {
        "tasks": len(kept),
        "train_tasks": sum(t.role == "train" for t in kept),
        "test_tasks": sum(t.role == "test" for t in kept),
        "skipped_tasks": len(src.skipped),
        "augmented_tasks": len(arrays["row_task"]) - 1,
        "train_examples": int(arrays["row_examples"][-1]),
        "test_inputs": len(src.test_rows),
        "test_views": int(sum(ti[i, 1] * ti[i, 5] for i in range(len(kept)))),
        "grids": len(src.grids),
    }
    return {
        "format": FORMAT,
        "canvas": int(options.canvas),
        "augmentations": int(options.augmentations),
        "seed": int(options.seed),
        "max_tries": int(options.max_tries),
        "params": _params(options),
        "sources": sources,
        "sources_hash": src_hash,
        "counts": counts,
        "skipped": src.skipped,
        "invalid": sorted(invalid),  # the sources' tasks left out as bad (--skip-bad-tasks): see is_up_to_date
        "identifier_format": "{task_id}#{k}; row 0 is the blank; task rows are [first_row, first_row + num_rows)",
        "tasks": [{"id": t.id, "role": t.role, "hash": src.keys[t.id], "first_row": int(ti[i, 0]),
                   "num_rows": int(ti[i, 1])} for i, t in enumerate(kept)],
    }


def _write_build(out: Path, arrays: dict[str, np.ndarray], meta: dict, kept: list[Task],
                 before_rename: Callable[[Path], None] | None, placed: Callable[[], None] | None = None) -> None:
    """Write into a temporary sibling folder, then rename it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        index: dict = {}
        for name, arr in arrays.items():
            _save_npy(tmp, name, arr, index)
        meta["arrays"] = index
        tasks_json = {t.id: t.to_json(with_solutions=True) for t in kept}
        write_text_atomic(tmp / "tasks.json", json.dumps(tasks_json, separators=(",", ":")))
        meta["bytes"] = sum(p.stat().st_size for p in tmp.iterdir())
        write_text_atomic(tmp / "metadata.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
        if before_rename is not None:
            before_rename(tmp)
        # An earlier build at `out` is removed only once the new one is in place.
        replace_folder(tmp, out, is_build, "a build", placed)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_set(tasks: Sequence[Task], out: str | Path, options: BuildOptions = BuildOptions(), *,
              sources: Sequence[str] | None = None, warn: Callable[[str], None] = warn_once,
              placed: Callable[[], None] | None = None, invalid: Iterable[str] = (),
              _before_rename: Callable[[Path], None] | None = None) -> BuiltSet:
    """Augment `tasks` and write the build to `out` (replacing an earlier build there); `placed` is
    called once the new build is at `out` (see replace_folder). `invalid`: the ids of the sources'
    tasks left out as bad, recorded.

    The output depends only on the tasks and the options: rebuilding, or building with another
    number of workers, gives byte-identical files.
    """
    options.check()
    out = Path(out)
    check_replaceable(out, is_build, "a build")  # before the work: a refusal is quick and writes nothing
    src = _select_tasks(tasks, options.canvas, warn)
    src_hash = sources_hash(tasks)
    _index_sources(src, options)
    arrays = _row_arrays(src, _augment_all(src.payloads, options))
    # Paths absolute: a run that names this build from another working directory must match it.
    recorded = [absolute_spec(s) for s in sources] if sources is not None else sorted({t.source for t in tasks})
    meta = _metadata(src, arrays, options, recorded, src_hash, invalid)
    _write_build(out, arrays, meta, src.kept, _before_rename, placed)
    return BuiltSet.open(out)


def is_up_to_date(out: str | Path, tasks: Sequence[Task], options: BuildOptions = BuildOptions(),
                  invalid: Iterable[str] = ()) -> bool:
    """True when `out` holds a build of the same task content and options, which left out the same
    bad tasks of the sources (`invalid`: a build without them would take a bad task in silently)."""
    try:
        meta = read_json(Path(out) / "metadata.json", "build metadata")
        same = (isinstance(meta, dict) and meta.get("params") == _params(options)
                and meta.get("sources_hash") == sources_hash(tasks) and meta.get("invalid", []) == sorted(invalid))
        return same and bool(map_arrays(Path(out), meta))  # and whole: a build cut short is made again
    except InputError:
        return False


def ensure_built(specs: str | Sequence[str], out: str | Path, options: BuildOptions = BuildOptions(), *,
                 warn: Callable[[str], None] = warn_once) -> BuiltSet:
    """Open the build at `out` if it was made from the same task content and options (with
    --skip-bad-tasks: leaving out the same bad tasks), else build it. A bad task raises when a
    build is made; `warn` hears of tasks the build leaves out."""
    options.check()
    spec_list = source_specs(specs)
    reading = Reading(skip=True, warn=lambda _: None)
    try:
        tasks: list[Task] | None = load_tasks(spec_list, reading)
    except TaskError:  # no good task, say: the strict reading below names what is wrong
        tasks = None
    if tasks is not None and is_up_to_date(out, tasks, options, reading.skipped):
        if reading.skipped:
            warn(f"{out}: the build leaves out {len(reading.skipped)} invalid task(s) of the sources, as "
                 f"`arc-trm build --skip-bad-tasks` did: {few_ids(sorted(reading.skipped))}")
        return BuiltSet.open(out)
    if tasks is None or reading.skipped:
        tasks = load_tasks(spec_list)  # a new build refuses a bad task
    return build_set(tasks, out, options, sources=spec_list, warn=warn)
