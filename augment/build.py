"""Build an augmented task set: N dihedral + colour-permutation versions of every task, with
per-example translations, stored compactly and applied on the fly by the loader.

Each task gets its identity version (k = 0) plus random (dihedral, colour permutation) versions up to
--augmentations in total, drawing at most --max-tries times and dropping duplicates (a version
whose multiset of (input, output) grids equals an earlier one's). The draws of a task depend only
on --seed and the task's own content, so a task keeps its identifiers (`TASK#k`) and augmentations
whatever else is in the set. Rows of the puzzle-embedding table follow sorted (task id, k).

Training tasks train on every pair; for evaluation (role "test") tasks the demonstrations train and
the test inputs form the test split. An existing build at --out with the same sources and
parameters is reused unless --force is given. Writes go to a hidden temporary folder renamed into
place at the end.

examples:
  arc-trm build --tasks arc-agi-2 --augmentations 1000 --out data/built/arc-agi-2
  arc-trm build --tasks arc-agi-2,conceptarc_challenges.json@train --out data/built/agi2-concept
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .store import ARRAYS, FORMAT, BuiltSet
from .errors import InputError
from .files import atomic_writer, read_json, write_text_atomic
from .tasks import Task, grid_hash, load_tasks
from .transforms import NUM_DIHEDRAL, TRANSPOSING, dihedral, dihedral_shape

DRAW_CHUNK = 256  # random draws are made in fixed-size chunks (part of the draw definition)


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
    """Training examples of a task (SPEC 3): all pairs for role train, demonstrations for role test."""
    pairs = [(p.input, p.output) for p in task.train]
    if task.role == "train":
        pairs += [(p.input, p.output) for p in task.test if p.output is not None]
    return pairs


def task_key(task: Task) -> str:
    """Content hash of what the build uses of a task (role included): the per-task seed."""
    h = hashlib.blake2b(digest_size=16)
    h.update(task.role.encode())
    for i, o in hash_pairs(task):
        h.update(grid_hash(i))
        h.update(grid_hash(o) if o is not None else b"-")
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
# Augmentation draw for one task (runs in worker processes)
# ---------------------------------------------------------------------------------------------
def augment_task(pairs: Sequence[tuple[np.ndarray, np.ndarray | None]], train_shapes: np.ndarray,
                 n_aug: int, seed: int, key: str, canvas: int, max_tries: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw the augmented versions of one task and the translation offsets of their examples.

    Returns (table (n, 11) uint8 rows [t, perm...], offsets (n * E, 2) uint8) where E is the number
    of training pairs (``train_shapes``: (E, 2, 2) input/output shapes). Version 0 is the identity.
    """
    ss = np.random.SeedSequence([int(seed), int(key, 16)])
    aug_rng, off_rng, keep_rng = (np.random.default_rng(s) for s in ss.spawn(3))

    hashes, consts = _pair_hash_tables(pairs)

    mix = _hash_weights()[0, :2 * len(pairs), 0].reshape(len(pairs), 2) | np.uint64(1)  # odd multipliers

    def keys(ts: np.ndarray, luts: np.ndarray) -> list[int]:
        """One 64-bit key per version: its pair hashes, sorted (a multiset), mixed into one word."""
        h = (luts.astype(np.uint64)[:, None, :, None] * hashes[ts]).sum(axis=2, dtype=np.uint64)
        h += consts[ts]  # (m, P, 2), arithmetic mod 2^64
        order = np.lexsort((h[:, :, 1], h[:, :, 0]), axis=-1)
        h = np.take_along_axis(h, order[:, :, None], axis=1)
        return (h * mix).sum(axis=(1, 2), dtype=np.uint64).tolist()

    identity = np.arange(-1, 10, dtype=np.int16).clip(0).astype(np.uint8)  # [t=0, 0, 1, ..., 9]
    parts = [identity[None]]
    count = 1
    seen = set(keys(np.zeros(1, np.int64), identity[None, 1:]))
    tries = 0
    while count < n_aug and tries < max_tries:
        ts = aug_rng.integers(NUM_DIHEDRAL, size=DRAW_CHUNK)
        perms = aug_rng.permuted(np.tile(np.arange(1, 10, dtype=np.uint8), (DRAW_CHUNK, 1)), axis=1)
        luts = np.concatenate([np.zeros((DRAW_CHUNK, 1), np.uint8), perms], axis=1)
        chunk_keys = keys(ts, luts)
        accepted = []
        for j in range(min(DRAW_CHUNK, max_tries - tries)):
            tries += 1
            k = chunk_keys[j]
            if k not in seen:
                seen.add(k)
                accepted.append(j)
                count += 1
                if count >= n_aug:
                    break
        parts.append(np.concatenate([ts[accepted, None].astype(np.uint8), luts[accepted]], axis=1))
    table_arr = np.concatenate(parts).astype(np.uint8)

    # Translation: one shared offset per pair so both grids fit; one random example stays at (0, 0).
    n, e = len(table_arr), len(train_shapes)
    extent = np.asarray(train_shapes, dtype=np.int64).reshape(e, 2, 2).max(axis=1)  # (E, 2) h, w
    swap = np.asarray(TRANSPOSING)[table_arr[:, 0]]  # (n,)
    ext = np.where(swap[:, None, None], extent[None, :, ::-1], extent[None])  # (n, E, 2)
    offsets = off_rng.integers(0, canvas - ext + 1) if e else np.zeros((n, 0, 2), np.int64)
    if e:
        offsets[np.arange(n), keep_rng.integers(e, size=n)] = 0
    return table_arr, offsets.reshape(n * e, 2).astype(np.uint8)


_WEIGHTS: np.ndarray | None = None


def _hash_weights() -> np.ndarray:
    """(2 sides, 900 cells, 2 words) fixed random uint64 weights of the position-weighted grid hash."""
    global _WEIGHTS
    if _WEIGHTS is None:
        rng = np.random.default_rng(0x6172632D74726D)  # fixed: part of the dedup definition
        _WEIGHTS = rng.integers(0, 2**64 - 1, size=(2, 30 * 30, 2), dtype=np.uint64, endpoint=True)
    return _WEIGHTS


def _pair_hash_tables(pairs: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray]:
    """Tables that give the 128-bit hash of every augmented pair without building the grids.

    The hash of an augmented (input, output) pair is sum_j W[j] * grid[j] over its cells (mod 2^64,
    two words, separate weights for input and output) plus a digest of both shapes. For a grid
    ``lut[dihedral(x, t)]`` that sum is ``sum_c lut[c] * S[t, c]`` with ``S[t, c]`` the summed weights
    of the cells of ``dihedral(x, t)`` holding colour c. Returns S as (8, P, 10, 2) and the shape
    digests as (8, P, 2), both uint64. The hash is a function of the augmented pair's content and
    shapes alone, so two draws that produce the same pair get the same hash.
    """
    w = _hash_weights()
    n = len(pairs)
    s = np.zeros((n, NUM_DIHEDRAL, 10, 2), np.uint64)
    k = np.zeros((NUM_DIHEDRAL, n, 2), np.uint64)
    colours = np.arange(10, dtype=np.uint8)[:, None]
    for p, (i, o) in enumerate(pairs):
        for side, g in enumerate((i, o)):
            if g is not None:
                onehot = (g.reshape(1, -1) == colours).astype(np.uint64)  # (10, cells)
                s[p] += onehot[None] @ w[side][_cell_maps(g.shape)]  # (8, 10, 2)
        for t in range(NUM_DIHEDRAL):
            head = b"".join(bytes(dihedral_shape(g.shape, t)) if g is not None else b"\0\0" for g in (i, o))
            k[t, p] = np.frombuffer(hashlib.blake2b(head, digest_size=16).digest(), dtype="<u8")
    return np.ascontiguousarray(s.transpose(1, 0, 2, 3)), k


@functools.lru_cache(maxsize=4096)
def _cell_maps(shape: tuple[int, int]) -> np.ndarray:
    """(8, h*w): for each dihedral id, the position in the transformed grid of each source cell."""
    h, w = shape
    src = np.arange(h * w).reshape(h, w)
    out = np.empty((NUM_DIHEDRAL, h * w), np.int64)
    for t in range(NUM_DIHEDRAL):
        out[t, dihedral(src, t).ravel()] = np.arange(h * w)
    return out


def _work(payload):
    return augment_task(*payload)


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------
def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _params(augmentations: int, seed: int, canvas: int, max_tries: int) -> dict:
    return {"format": FORMAT, "augmentations": int(augmentations), "seed": int(seed), "canvas": int(canvas),
            "max_tries": int(max_tries), "draw_chunk": DRAW_CHUNK}


def _check_params(augmentations: int, seed: int, canvas: int, max_tries: int) -> None:
    if augmentations < 1:
        raise InputError(f"--augmentations must be at least 1 (the identity version), got {augmentations}")
    if seed < 0:
        raise InputError(f"--seed must be non-negative, got {seed}")
    if not 1 <= canvas <= 255:
        raise InputError(f"--canvas must be 1 to 255, got {canvas}")
    if max_tries < 0:
        raise InputError(f"--max-tries must be non-negative, got {max_tries}")


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


def build_set(tasks: Sequence[Task], out: str | Path, augmentations: int = 1000, seed: int = 0,
              canvas: int = 30, workers: int | None = None, max_tries: int = 5000, progress: bool = True,
              sources: Sequence[str] | None = None, warn: Callable[[str], None] = _warn,
              _before_rename: Callable[[Path], None] | None = None) -> BuiltSet:
    """Augment `tasks` and write the build to `out` (replacing an earlier build there).

    The output depends only on the tasks and the parameters: rebuilding, or building with another
    number of workers, gives byte-identical files.
    """
    _check_params(augmentations, seed, canvas, max_tries)
    out = Path(out)
    all_tasks = sorted(tasks, key=lambda t: t.id)
    ids = [t.id for t in all_tasks]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"task id {dup!r} appears twice in the build")
    if not all_tasks:
        raise InputError("no tasks to build")
    src_hash = sources_hash(all_tasks)
    kept, skipped = [], []
    for t in all_tasks:
        if max_side(t) > canvas:
            warn(f"skipping task {t.id!r}: a grid side of {max_side(t)} does not fit the {canvas}x{canvas} canvas")
            skipped.append(t.id)
        else:
            kept.append(t)
    if not kept:
        raise InputError(f"no task fits a {canvas}x{canvas} canvas")

    # Source grid pool and per-task tables.
    grids: list[np.ndarray] = []
    pair_rows: list[tuple[int, int]] = []
    test_rows: list[int] = []
    task_index = np.zeros((len(kept), 6), dtype=np.int64)
    payloads = []
    keys: dict[str, str] = {}
    for ti, t in enumerate(kept):
        tp = train_pairs(t)
        task_index[ti, 2:4] = len(pair_rows), len(tp)
        for i, o in tp:
            pair_rows.append((len(grids), len(grids) + 1))
            grids += [i, o]
        tests = t.test if t.role == "test" else ()
        task_index[ti, 4:6] = len(test_rows), len(tests)
        for p in tests:
            test_rows.append(len(grids))
            grids.append(p.input)
        shapes = np.asarray([(i.shape, o.shape) for i, o in tp], dtype=np.int64).reshape(-1, 2, 2)
        keys[t.id] = task_key(t)
        payloads.append((hash_pairs(t), shapes, augmentations, seed, keys[t.id], canvas, max_tries))

    side = max(max(g.shape) for g in grids)
    pool = np.zeros((len(grids), side, side), dtype=np.uint8)
    grid_shapes = np.zeros((len(grids), 2), dtype=np.uint8)
    for gi, g in enumerate(grids):
        pool[gi, :g.shape[0], :g.shape[1]] = g
        grid_shapes[gi] = g.shape

    # Augment, in parallel. Results come back in task order whatever the number of workers.
    workers = _default_workers() if workers is None or workers <= 0 else int(workers)
    workers = min(workers, len(payloads))
    from tqdm import tqdm
    bar = tqdm(total=len(payloads), desc="augmenting", unit="task", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    if workers <= 1:
        results_iter = map(_work, payloads)
    else:
        from joblib import Parallel, delayed
        results_iter = Parallel(n_jobs=workers, return_as="generator", batch_size=4, pre_dispatch="8*n_jobs")(
            delayed(_work)(p) for p in payloads)
    results = []
    for r in results_iter:
        results.append(r)
        bar.update(1)
    bar.close()

    nums = np.asarray([len(tab) for tab, _ in results], dtype=np.int64)
    first = 1 + np.concatenate(([0], np.cumsum(nums)[:-1]))
    task_index[:, 0], task_index[:, 1] = first, nums
    num_rows = int(nums.sum())
    row_task = np.concatenate([[-1]] + [np.full(n, i) for i, n in enumerate(nums)]).astype(np.int32)
    row_aug = np.concatenate([np.asarray([[0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]], np.uint8)]
                             + [tab for tab, _ in results]).astype(np.uint8)
    per_row = np.concatenate([[0], np.repeat(task_index[:, 3], nums)])
    row_examples = np.concatenate(([0], np.cumsum(per_row))).astype(np.int64)
    offsets = np.concatenate([np.zeros((0, 2), np.uint8)] + [o for _, o in results]).astype(np.uint8)
    assert len(offsets) == row_examples[-1]
    del results

    counts = {
        "tasks": len(kept),
        "train_tasks": sum(t.role == "train" for t in kept),
        "test_tasks": sum(t.role == "test" for t in kept),
        "skipped_tasks": len(skipped),
        "augmented_tasks": num_rows,
        "train_examples": int(row_examples[-1]),
        "test_inputs": len(test_rows),
        "test_views": int(sum(task_index[i, 1] * task_index[i, 5] for i in range(len(kept)))),
        "grids": len(grids),
    }
    meta = {
        "format": FORMAT,
        "canvas": int(canvas),
        "augmentations": int(augmentations),
        "seed": int(seed),
        "max_tries": int(max_tries),
        "params": _params(augmentations, seed, canvas, max_tries),
        "sources": list(sources) if sources is not None else sorted({t.source for t in all_tasks}),
        "sources_hash": src_hash,
        "counts": counts,
        "skipped": skipped,
        "identifier_format": "{task_id}#{k}; row 0 is the blank; task rows are [first_row, first_row + num_rows)",
        "tasks": [{"id": t.id, "role": t.role, "hash": keys[t.id], "first_row": int(task_index[i, 0]),
                   "num_rows": int(task_index[i, 1])} for i, t in enumerate(kept)],
    }

    # Write into a temporary sibling folder, then rename into place.
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        index: dict = {}
        arrays = {
            "grids": pool, "grid_shapes": grid_shapes, "task_index": task_index,
            "train_pairs": np.asarray(pair_rows, dtype=np.int32).reshape(-1, 2),
            "test_inputs": np.asarray(test_rows, dtype=np.int32), "row_task": row_task, "row_aug": row_aug,
            "row_examples": row_examples, "offsets": offsets,
        }
        assert set(arrays) == set(ARRAYS)
        for name in ARRAYS:
            _save_npy(tmp, name, arrays[name], index)
        meta["arrays"] = index
        tasks_json = {t.id: t.to_json(with_solutions=True) for t in kept}
        write_text_atomic(tmp / "tasks.json", json.dumps(tasks_json, separators=(",", ":")))
        meta["bytes"] = sum(p.stat().st_size for p in tmp.iterdir())
        write_text_atomic(tmp / "metadata.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
        if _before_rename is not None:
            _before_rename(tmp)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuiltSet.open(out)


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished build into place; an earlier build there is removed only afterwards."""
    old = None
    if out.exists():
        if out.is_dir() and (out / "metadata.json").is_file():
            old = out.parent / f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}"
            out.rename(old)
        elif out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            raise InputError(f"{out} exists and is not a build; refusing to replace it")
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def is_up_to_date(out: str | Path, tasks: Sequence[Task], augmentations: int = 1000, seed: int = 0,
                  canvas: int = 30, max_tries: int = 5000) -> bool:
    try:
        meta = read_json(Path(out) / "metadata.json", "build metadata")
    except InputError:
        return False
    return isinstance(meta, dict) and (meta.get("params") == _params(augmentations, seed, canvas, max_tries)
            and meta.get("sources_hash") == sources_hash(tasks))


def ensure_built(specs: str | Sequence[str], out: str | Path, augmentations: int = 1000, seed: int = 0,
                 canvas: int = 30, workers: int | None = None, max_tries: int = 5000, progress: bool = True,
                 on_error: str = "raise", force: bool = False, warn: Callable[[str], None] = _warn) -> BuiltSet:
    """Open the build at `out` if it was made from the same task content and parameters, else build it."""
    _check_params(augmentations, seed, canvas, max_tries)
    spec_list = [s.strip() for s in (specs.split(",") if isinstance(specs, str) else specs) if s.strip()]
    tasks = load_tasks(spec_list, on_error=on_error, warn=lambda m: warn(m))  # type: ignore[arg-type]
    if not force and is_up_to_date(out, tasks, augmentations, seed, canvas, max_tries):
        return BuiltSet.open(out)
    return build_set(tasks, out, augmentations=augmentations, seed=seed, canvas=canvas, workers=workers,
                     max_tries=max_tries, progress=progress, sources=spec_list, warn=warn)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", required=True, action="append", metavar="SPEC[,SPEC...]",
                        help="task sources (repeatable or comma-separated): arc-agi-1, arc-agi-2, kaggle2024, "
                             "kaggle2025 (optionally :training / :evaluation), a Kaggle challenges .json, or a "
                             "folder of task .json files; suffix @train or @test sets the role")
    parser.add_argument("--out", required=True, type=Path, help="output folder of the build")
    parser.add_argument("--augmentations", type=int, default=1000,
                        help="augmented versions per task, the identity included (default 1000, the paper's)")
    parser.add_argument("--max-tries", type=int, default=5000,
                        help="random draws per task before giving up on reaching --augmentations (default 5000)")
    parser.add_argument("--seed", type=int, default=0, help="build seed (default 0)")
    parser.add_argument("--canvas", type=int, default=30,
                        help="canvas side; tasks with a larger grid are skipped with a warning (default 30)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--skip-bad-tasks", action="store_true",
                        help="skip invalid tasks with a warning instead of aborting the build")
    parser.add_argument("--force", action="store_true",
                        help="rebuild even if --out already holds a build of the same tasks and parameters")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    specs = [s.strip() for group in args.tasks for s in group.split(",") if s.strip()]
    _check_params(args.augmentations, args.seed, args.canvas, args.max_tries)
    tasks = load_tasks(specs, on_error="skip" if args.skip_bad_tasks else "raise", warn=_warn)
    if not args.force and is_up_to_date(args.out, tasks, args.augmentations, args.seed, args.canvas,
                                        args.max_tries):
        built = BuiltSet.open(args.out)
        reused = True
    else:
        built = build_set(tasks, args.out, augmentations=args.augmentations, seed=args.seed, canvas=args.canvas,
                          workers=args.workers, max_tries=args.max_tries, progress=not args.no_progress,
                          sources=specs)
        reused = False
    c = built.counts
    secs = time.perf_counter() - start
    what = "up to date (reused; --force rebuilds)" if reused else "built"
    print(f"{args.out}: {what}: {c['tasks']} tasks ({c['train_tasks']} train, {c['test_tasks']} test, "
          f"{c['skipped_tasks']} skipped), {c['augmented_tasks']} augmented tasks, {c['train_examples']} "
          f"training examples, {c['test_views']} test views, {built.nbytes()} bytes, {secs:.1f} s")
    return 0
