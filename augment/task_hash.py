"""Content hashes of grids and tasks. A grid's shape is part of its hash (REFERENCE §2); the bytes
hashed are fixed: content hashes are stored in identifiers.json and a task's hash seeds its build."""

from __future__ import annotations

import hashlib
from typing import Iterable, Protocol, Sequence

import numpy as np


class PairLike(Protocol):
    input: np.ndarray
    output: np.ndarray | None


class TaskLike(Protocol):  # tasks.Task, which imports this module
    train: Sequence[PairLike]
    test: Sequence[PairLike]


def grid_hash(grid: np.ndarray) -> bytes:
    """Digest of a grid; the shape is part of it."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(grid.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(grid, dtype=np.uint8).tobytes())
    return h.digest()


def update_pairs(h: "hashlib._Hash", pairs: Iterable[tuple[np.ndarray, np.ndarray | None]],
                 outputs: bool = True) -> None:
    """Feed (input, output) pairs to `h`; an output not known (or not wanted) hashes as "-"."""
    for i, o in pairs:
        h.update(grid_hash(i))
        h.update(grid_hash(o) if outputs and o is not None else b"-")


def task_hash(task: TaskLike, test_outputs: bool = True) -> str:
    """Hash of a task's demonstrations and test inputs, and of its known test outputs unless
    `test_outputs` is False."""
    h = hashlib.blake2b(digest_size=16)
    for pairs, outputs in ((task.train, True), (task.test, test_outputs)):
        h.update(len(pairs).to_bytes(4, "little"))
        update_pairs(h, ((p.input, p.output) for p in pairs), outputs)
    return h.hexdigest()


def content_hash(task: TaskLike) -> str:
    """Hash of what a trained puzzle embedding depends on: demonstrations and test inputs (not the
    test outputs, which a hidden test set lacks)."""
    return task_hash(task, test_outputs=False)
