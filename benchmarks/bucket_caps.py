"""Benchmark: how often bucketed inference makes the right answer impossible, and how often
bucketed training drops the end-of-grid marker.

1. Caps. With `data.bucketing`, each test input runs on the bucket canvas `predicted_side` picks
   from the task's shapes alone. When the expected output is larger than that canvas, no view
   can produce it. Counted here over every bundled split with known solutions, for the rule
   before 2026-12-02 (the largest grid of the task and the test input scaled by the largest
   demonstration ratio) and the shipped rule (the full canvas unless the demonstrations' output
   sizes follow a simple rule of their input sizes), with the analytic inference FLOPs of one
   view step at the chosen canvas against the fixed 30 x 30 canvas (paper config).
2. Edges. A training example is drawn at a translation offset inside its bucket; when the grid
   then touches the canvas's bottom or right edge, its EOS row or column falls off the canvas
   (the model is never told where that grid ends). Expected share of examples, per bucket, over
   the bundled training sets, exactly under the build's draw (offsets uniform on the full
   canvas, moved into the bucket by `remap_offsets`, one example of each augmented version kept
   at the top left), and the same examples on the fixed canvas.

    python benchmarks/bucket_caps.py
    python benchmarks/bucket_caps.py --splits arc-agi-1:evaluation --json caps.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from augment.buckets import bucket_of, bucket_sides, predicted_side, remap_offsets, scaled_need  # noqa: E402
from augment.tasks import Task, load_tasks  # noqa: E402

CANVAS = 30
SPLITS = ("arc-agi-1:training", "arc-agi-1:evaluation", "arc-agi-2:training", "arc-agi-2:evaluation",
          "kaggle2025:training", "kaggle2025:evaluation")
TRAINING_SETS = ("arc-agi-1:training", "arc-agi-2:training")
Rule = Callable[[Task, int, int], int]


def rule_before(task: Task, test_index: int, canvas: int) -> int:
    """The bucket rule before 2026-12-02 (kept here to count what it capped)."""
    return int(bucket_of(min(scaled_need(task, test_index), canvas), canvas))


RULES: dict[str, Rule] = {"before": rule_before, "shipped": predicted_side}


@dataclass
class CapCount:
    outputs: int = 0  # test outputs with a known solution
    capped: list[str] = field(default_factory=list)  # "task/index" whose output is larger than its canvas
    filled: int = 0  # outputs exactly as large as a bucket below the full canvas (no EOS at the edge)
    sides: dict[int, int] = field(default_factory=dict)  # test outputs per chosen canvas side
    flops_share: float = 0.0  # mean inference FLOPs per view step, as a share of the fixed canvas's


def view_flops(side: int) -> int:
    """Analytic FLOPs of one inference step of one view on a side x side canvas (paper config)."""
    from arc_trm.config import ModelConfig
    from arc_trm.flops import flops_per_step

    return flops_per_step(ModelConfig(num_puzzle_ids=2), 1, training=False, length=side * side).total


def count_caps(tasks: list[Task], rule: Rule, canvas: int = CANVAS,
               flops: Callable[[int], float] = view_flops) -> CapCount:
    """How `rule` places each test output with a known solution: capped, filling its bucket, the
    canvas sides it picks and their mean cost against the full canvas."""
    count = CapCount()
    cost = 0.0
    for task in tasks:
        for i, pair in enumerate(task.test):
            if pair.output is None:
                continue
            side = rule(task, i, canvas)
            count.outputs += 1
            count.sides[side] = count.sides.get(side, 0) + 1
            cost += flops(side)
            if max(pair.output.shape) > side:
                count.capped.append(f"{task.id}/{i}")
            elif max(pair.output.shape) == side < canvas:
                count.filled += 1
    count.flops_share = cost / max(count.outputs, 1) / flops(canvas)
    count.sides = dict(sorted(count.sides.items()))
    return count


def touch_probability(grid_side: int, extent: int, side: int, canvas: int) -> float:
    """P(a grid of `grid_side` in a pair of `extent` along one axis ends on the edge of a `side`
    canvas), offsets uniform on [0, canvas - extent] moved into the bucket (remap_offsets)."""
    if grid_side != extent:  # the pair's larger grid leaves room: the smaller one never touches
        return 0.0
    drawn = np.arange(canvas - extent + 1)
    moved = remap_offsets(drawn, np.full_like(drawn, extent), side, canvas)
    return float(np.mean(moved + grid_side == side))


@dataclass
class EdgeCount:
    examples: int = 0  # training pairs in the bucket
    output_dropped: float = 0.0  # expected pairs whose output loses its EOS row or column
    input_dropped: float = 0.0  # the same for the input
    output_dropped_fixed: float = 0.0  # those pairs on the fixed canvas (bucketing off)


def edge_counts(tasks: list[Task], canvas: int = CANVAS) -> dict[int, EdgeCount]:
    """Per bucket side, the expected number of training pairs whose grid loses an EOS line."""
    counts = {s: EdgeCount() for s in bucket_sides(canvas)}
    for task in tasks:
        kept = 1 / len(task.train) if task.train else 0.0  # one example per version stays at (0, 0)
        for pair in task.train:
            extent = np.maximum(pair.input.shape, pair.output.shape)
            side = int(bucket_of(int(extent.max()), canvas))
            c = counts[side]
            c.examples += 1
            for grid, attr, on in ((pair.output, "output_dropped", side), (pair.input, "input_dropped", side),
                                   (pair.output, "output_dropped_fixed", canvas)):
                # Rows and columns are independent draws; a dihedral transform swaps them (same product).
                keep = [1 - touch_probability(grid.shape[a], int(extent[a]), on, canvas) for a in (0, 1)]
                setattr(c, attr, getattr(c, attr) + (1 - kept) * (1 - keep[0] * keep[1]))
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), help=f"task sources whose test outputs are counted (default: {' '.join(SPLITS)})")
    ap.add_argument("--training", nargs="+", default=list(TRAINING_SETS), help=f"sets whose pairs the edge count reads (default: {' '.join(TRAINING_SETS)})")
    ap.add_argument("--json", type=Path, default=None, help="also write the counts here (default: none)")
    args = ap.parse_args()
    result: dict = {"caps": {}, "edges": {}}
    print("| split | outputs | rule | capped | fill their bucket | outputs per canvas 10/15/20/30 | "
          "inference FLOPs vs fixed canvas |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.splits:
        tasks = load_tasks(spec)
        for name, rule in RULES.items():
            c = count_caps(tasks, rule)
            result["caps"].setdefault(spec, {})[name] = asdict(c)
            print(f"| {spec} | {c.outputs} | {name} | {len(c.capped)} {' '.join(c.capped[:4])} | {c.filled} | "
                  f"{'/'.join(str(c.sides.get(s, 0)) for s in bucket_sides(CANVAS))} | "
                  f"{c.flops_share:.3f} ({1 / c.flops_share:.2f}x fewer) |")
    print("\ntraining pairs: expected share whose grid loses an EOS line under the build's offsets")
    print("| training set | bucket | pairs | output loses EOS | input loses EOS | output loses EOS, fixed canvas |")
    print("|---|---|---|---|---|---|")
    for spec in args.training:
        edges = edge_counts(load_tasks(spec))
        result["edges"][spec] = {side: asdict(e) for side, e in edges.items()}
        whole = EdgeCount(*(sum(getattr(e, f) for e in edges.values()) for f in EdgeCount.__dataclass_fields__))
        for side, e in [*edges.items(), ("all", whole)]:
            n = max(e.examples, 1)
            print(f"| {spec} | {side} | {e.examples} | {e.output_dropped / n:.1%} | {e.input_dropped / n:.1%} | "
                  f"{e.output_dropped_fixed / n:.1%} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
