"""Grids and puzzle identifiers: the sizes, colours and helpers every package shares.

A grid is a 2-D uint8 array of colours 0-9 with sides 1 to 30 (REFERENCE §1). Token-level constants
(PAD, EOS, the colour offset, the canvas) live in encoding.py.

An augmented task is named ``f"{task_id}#{k}"``, k = 0 being the un-augmented task; row 0 of the
puzzle-embedding table is the blank, named BLANK_IDENTIFIER.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .json_kind import is_digits

Grid = np.ndarray  # (h, w) uint8, colours 0..NUM_COLOURS-1, sides 1..MAX_SIDE
MAX_SIDE = 30
NUM_COLOURS = 10
BLANK_IDENTIFIER = "<blank>"


def same_grid(a: Grid, b: Grid) -> bool:
    """True when two grids have the same shape and the same cells."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b))


class Identifier(NamedTuple):
    """A parsed ``task_id#k``."""

    task_id: str
    k: int


def make_identifier(task_id: str, k: int) -> str:
    """The identifier of augmentation `k` of task `task_id`."""
    return f"{task_id}#{int(k)}"


def split_identifier(identifier: str) -> Identifier:
    """``task_id#k`` -> (task_id, k); ValueError when it is not of that form."""
    task_id, sep, k = identifier.rpartition("#")
    if not sep or not is_digits(k):
        raise ValueError(f"bad puzzle identifier {identifier!r}; expected TASK#K")
    return Identifier(task_id, int(k))


def task_of(identifier: str) -> str | None:
    """The task id of a row's identifier ``task_id#k`` (up to the last '#': a task id may hold one),
    or None for a row of no task: the blank row 0, a lean export's mean row (neither ends in #K)."""
    try:
        return split_identifier(identifier).task_id
    except ValueError:
        return None
