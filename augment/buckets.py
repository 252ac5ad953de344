"""Length bucketing: small grids on small canvases.

Most ARC grids are far smaller than the 30 x 30 canvas, and every PAD position costs as much
compute as a colour. With bucketing, an example is encoded on the smallest bucket canvas (side
10, 15, 20 or the full canvas) that holds its grid pair plus the EOS row and column, and its
translation offset is drawn inside that canvas. The model keeps the full canvas's positions
(row stride 30), so a bucket only drops the PAD the full canvas would have had around the grid.
"""

from __future__ import annotations

import math
from fractions import Fraction

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


def scaled_need(task: Task, test_index: int) -> int:
    """The largest side of every grid of the task and of the test input scaled by the largest
    output/input ratio of the demonstrations. Alone, this caps answers whose size depends on the
    grids' content (ARC-AGI-2 bf45cf4b: 25 x 25 against 20; benchmarks/bucket_caps.py)."""
    test_in = max(task.test[test_index].input.shape)
    sides = [test_in] + [max(g.shape) for p in task.train for g in (p.input, p.output)]
    ratio = max((max(p.output.shape) / max(p.input.shape) for p in task.train), default=1.0)
    return max(max(sides), math.ceil(test_in * ratio))


def _axis_rules(ins: list[int], outs: list[int], x: int) -> list[int]:
    """What each rule that every (input side, output side) pair obeys predicts for input side x:
    a constant, a fixed ratio, a fixed difference (empty when none holds)."""
    found = []
    if len(set(outs)) == 1:
        found.append(outs[0])
    if len({Fraction(o, i) for i, o in zip(ins, outs)}) == 1:
        found.append(math.ceil(x * Fraction(outs[0], ins[0])))
    if len({o - i for i, o in zip(ins, outs)}) == 1:
        found.append(x + outs[0] - ins[0])
    return found


def predicted_output_side(task: Task, test_index: int) -> int | None:
    """The test output's largest side when every demonstration's output shape follows its input's
    shape by a simple rule (per output axis, from either input axis: see _axis_rules; the largest
    prediction of the rules that hold), or None when the output size is not a function of the
    input size that way (it depends on the content: no bucket below the full canvas is safe)."""
    if not task.train:
        return None
    test_in = task.test[test_index].input.shape
    need = 0
    for out_axis in (0, 1):
        outs = [p.output.shape[out_axis] for p in task.train]
        found = [y for in_axis in (0, 1)
                 for y in _axis_rules([p.input.shape[in_axis] for p in task.train], outs, test_in[in_axis])]
        if not found:
            return None
        need = max(need, *found)
    return need


def predicted_side(task: Task, test_index: int, canvas: int) -> int:
    """Bucket side for answering a test input, whose output size is unknown: the full canvas when
    the demonstrations' output sizes follow no simple rule of their input sizes; otherwise large
    enough for the rule's answer, every grid of the task and the scaled test input (scaled_need)."""
    ruled = predicted_output_side(task, test_index)
    if ruled is None:
        return canvas
    return int(bucket_of(min(max(ruled, scaled_need(task, test_index)), canvas), canvas))
