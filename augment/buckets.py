"""Length bucketing: small grids on small canvases.

Most ARC grids are far smaller than the 30 x 30 canvas, and every PAD position costs as much
compute as a colour. With bucketing, an example is encoded on the smallest bucket canvas (side
10, 15, 20 or the full canvas) that holds its grid pair plus the EOS row and column, and its
translation offset is drawn inside that canvas. The model keeps the full canvas's positions
(row stride 30), so a bucket only drops the PAD the full canvas would have had around the grid.
"""

from __future__ import annotations

import math

import numpy as np

from .tasks import Task

BUCKET_SIDES = (10, 15, 20, 30)


def bucket_sides(canvas: int) -> tuple[int, ...]:
    """The bucket canvases available under a full canvas of side `canvas` (which is always one)."""
    return tuple(s for s in BUCKET_SIDES if s < canvas) + (canvas,)


def bucket_of(extent: np.ndarray | int, canvas: int) -> np.ndarray:
    """Smallest bucket side that holds a grid of this largest side plus its EOS row and column
    (a grid that fills the full canvas has no EOS there either)."""
    sides = np.asarray(bucket_sides(canvas))
    need = np.minimum(np.asarray(extent) + 1, canvas)
    return sides[np.searchsorted(sides, need)]


def remap_offsets(offsets: np.ndarray, extent: np.ndarray, side: int, canvas: int) -> np.ndarray:
    """Translation offsets drawn on the full canvas, moved onto a bucket canvas of `side`.

    offsets, extent: (B, 2) (row, column) offsets and the pair's extent along each axis. The draw
    is uniform on [0, canvas - extent]; scaling it keeps it near-uniform on [0, side - extent] and
    keeps (0, 0) at (0, 0), so the one top-left example of each augmented task stays there.
    """
    room_full = canvas - extent + 1
    room = np.maximum(side - extent + 1, 1)
    return offsets * room // room_full


def predicted_side(task: Task, test_index: int, canvas: int) -> int:
    """Bucket side for answering a test input, whose output size is unknown: large enough for
    every grid of the task and for the test input scaled by the largest output/input ratio of
    the demonstrations."""
    test_in = max(task.test[test_index].input.shape)
    sides = [test_in] + [max(g.shape) for p in task.train for g in (p.input, p.output)]
    ratio = max((max(p.output.shape) / max(p.input.shape) for p in task.train), default=1.0)
    need = max(max(sides), math.ceil(test_in * ratio))
    return int(bucket_of(min(need, canvas), canvas))
