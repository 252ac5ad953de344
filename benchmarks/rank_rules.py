"""Compare ranking rules on the candidates of accuracy runs (benchmarks/accuracy.py --candidates).

    python benchmarks/rank_rules.py baseline.cands.json emblr.cands.json [--k 2]
    python benchmarks/rank_rules.py --predicted runs/main/submission.candidates.json --tasks SPEC --canvas 8

`--predicted` reads the candidates file of `arc-trm predict --scoring consistency` instead, with
the known solutions of --tasks marking the right grids.

The candidates are those the views decoded; a rule only reorders them, so every rule of one file
has the same pass@all. For each file and rule: pass@k per test output with its Wilson 95%
interval, and the change against votes over the same outputs (gained, lost, exact McNemar p).
Choosing a rule on one suite and reading its score on the same suite overstates it: confirm on a
suite drawn with another --seed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from compare_arms import paired  # noqa: E402
from submission.score import binomial_ci  # noqa: E402
from submission.vote import Candidate, consistency_score  # noqa: E402


def shipped_consistency(c: dict) -> float:
    """submission.vote's rule on a recorded candidate (the grid does not enter the score)."""
    return consistency_score(Candidate(np.zeros((1, 1), np.uint8), c["votes"], c["mean_halt_prob"], c["mean_logprob"]))


def supervised_cells(c: dict) -> int:
    """Positions a candidate's log-probability sums over: its colours and the EOS row and column
    that fit the canvas (accuracy.py's 10 x 10 unless recorded; its grid size alone in files
    without the shape)."""
    if "shape" not in c:
        return c["cells"]
    h, w = c["shape"]
    canvas = c.get("canvas", 10)
    return h * w + (w if h < canvas else 0) + (h if w < canvas else 0)


# Higher ranks first; ties fall to votes, then the halt probability, as in submission.vote.
RULES: dict[str, Callable[[dict], float]] = {
    "votes": lambda c: 0.0,
    "consistency": shipped_consistency,
    "product of experts": lambda c: c["mean_logprob"],
    "per-cell product of experts": lambda c: c["mean_logprob"] / c["cells"],
    "consistency per supervised cell": lambda c: math.log(c["votes"]) + c["mean_logprob"] / supervised_cells(c),
    "halt probability": lambda c: c["mean_halt_prob"],
}


def rank_of_answer(candidates: list[dict], rule: Callable[[dict], float]) -> int | None:
    order = sorted(candidates, key=lambda c: (-rule(c), -c["votes"], -c["mean_halt_prob"]))
    return next((r for r, c in enumerate(order) if c["correct"]), None)


def solved(outputs: list[dict], rule: Callable[[dict], float], k: int) -> list[bool]:
    ranks = [rank_of_answer([c for c in o["candidates"] if c["mean_logprob"] is not None], rule) for o in outputs]
    return [r is not None and r < k for r in ranks]


def from_predicted(path: Path, tasks: str, canvas: int) -> dict:
    """A predict candidates file in this script's format, the right grids marked from --tasks."""
    from augment.grids import same_grid
    from augment.tasks import load_tasks
    from submission.kaggle import read_candidates

    ranked = read_candidates(path)
    outputs = [{"candidates": [{"votes": c.votes, "mean_halt_prob": c.mean_halt_prob, "mean_logprob": c.mean_logprob,
                                "cells": int(c.grid.size), "shape": list(c.grid.shape), "canvas": canvas,
                                "correct": bool(same_grid(c.grid, pair.output))} for c in ranked.get((t.id, i), [])]}
               for t in load_tasks(tasks) for i, pair in enumerate(t.test) if pair.output is not None]
    return {"label": path.name, "seed": "-", "outputs": outputs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path, help="accuracy.py --candidates files")
    ap.add_argument("--k", type=int, default=2, help="pass@k compared (default 2)")
    ap.add_argument("--predicted", type=Path, default=None, help="a predict --scoring consistency candidates file")
    ap.add_argument("--tasks", default=None, help="with --predicted: the tasks predicted, with known solutions")
    ap.add_argument("--canvas", type=int, default=10, help="with --predicted: the model's canvas (default 10)")
    args = ap.parse_args()
    runs = [json.loads(path.read_text()) if path.is_file() else path for path in args.files]
    if args.predicted:
        runs.append(from_predicted(args.predicted, args.tasks, args.canvas))
    print(f"| run | seed | rule | pass@{args.k} (95% CI) | vs votes: +gained -lost, p |")
    print("|---|---|---|---|---|")
    for run in runs:
        if isinstance(run, Path):
            raise SystemExit(f"{run}: no such candidates file (write one with accuracy.py --candidates)")
        base = solved(run["outputs"], RULES["votes"], args.k)
        for name, rule in RULES.items():
            hits = solved(run["outputs"], rule, args.k)
            n, s = len(hits), sum(hits)
            lo, hi = binomial_ci(s, n)
            gained, lost, p = paired(dict(enumerate(map(int, base))), dict(enumerate(map(int, hits))))
            print(f"| {run['label']} | {run['seed']} | {name} | {s}/{n} = {s / n:.3f} [{lo:.3f}, {hi:.3f}] "
                  f"| +{gained} -{lost}, p = {p:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
