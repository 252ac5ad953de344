"""Voting over augmented predictions and the choice of two attempts (REFERENCE §7).

Every augmented view of a test input yields one `Prediction` (already mapped back to the original
orientation and colours). Identical grids (same shape and cells) pool their votes; candidates of one
(task, test index) are ranked by vote count, then by mean halt probability, then by a fixed
tie-break on the grid itself, so the ranking never depends on the order predictions arrive in.

Consistency rescoring (arc_trm.consistency) also gives each candidate its mean log-probability
under the views; such candidates rank by `consistency_score` first (votes times the geometric mean
of the views' probabilities), then as above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from augment.grids import MAX_SIDE, NUM_COLOURS

Key = tuple[str, int]


@dataclass(frozen=True)
class Prediction:
    """One decoded prediction for one test input. grid None = nothing decodable."""

    task_id: str
    test_index: int
    grid: np.ndarray | None
    halt_prob: float


@dataclass
class Candidate:
    """A distinct predicted grid for one test input, with its votes."""

    grid: np.ndarray
    votes: int
    mean_halt_prob: float
    mean_logprob: float | None = None  # mean over views of log p(grid | view); None: votes only


def consistency_score(c: Candidate) -> float:
    """log(votes) + mean log-probability: the log of votes x the geometric mean probability."""
    if c.mean_logprob is None:
        raise ValueError("consistency_score needs a rescored candidate (mean_logprob set)")
    return math.log(c.votes) + c.mean_logprob


def is_valid_grid(grid: object) -> bool:
    """True for a 2-D integer array with sides 1..30 and values 0..9."""
    if not isinstance(grid, np.ndarray) or grid.ndim != 2:
        return False
    h, w = grid.shape
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        return False
    if not (np.issubdtype(grid.dtype, np.integer) or grid.dtype == np.bool_):
        return False
    return bool(grid.min() >= 0 and grid.max() < NUM_COLOURS)


def grid_key(grid: np.ndarray) -> bytes:
    """Identity of a grid: its shape and its cells (two grids are equal iff their keys are)."""
    g = np.ascontiguousarray(grid, dtype=np.uint8)
    return bytes([g.shape[0], g.shape[1]]) + g.tobytes()


def _finite(x: float) -> float:
    x = float(x)
    return x if math.isfinite(x) else 0.0


def _sort_key(c: Candidate) -> tuple:
    # Descending consistency score (rescored candidates first), descending votes, descending mean
    # halt probability, then ascending grid key (deterministic).
    score = -consistency_score(c) if c.mean_logprob is not None else math.inf
    return (score, -c.votes, -c.mean_halt_prob, grid_key(c.grid))


def sort_candidates(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Candidates in rank order: consistency score where rescored, then votes, then mean halt
    probability, then grid bytes."""
    return sorted(candidates, key=_sort_key)


def rank_candidates(preds: Iterable[Prediction]) -> dict[Key, list[Candidate]]:
    """Group identical grids per (task id, test index) and rank them.

    Predictions without a valid grid (None, empty, wrong dimensionality, sides over 30, colours
    outside 0..9) cast no vote; their (task, test index) still appears, with an empty list when no
    view produced a grid. A non-finite halt probability counts as 0.
    """
    groups: dict[Key, dict[bytes, list]] = {}
    for p in preds:
        key = (str(p.task_id), int(p.test_index))
        bucket = groups.setdefault(key, {})
        grid = p.grid
        if grid is None or not is_valid_grid(np.asarray(grid)):
            continue
        grid = np.ascontiguousarray(grid, dtype=np.uint8)
        k = grid_key(grid)
        entry = bucket.get(k)
        if entry is None:
            bucket[k] = [grid, 1, _finite(p.halt_prob)]
        else:
            entry[1] += 1
            entry[2] += _finite(p.halt_prob)
    return {
        key: sort_candidates(Candidate(g, n, s / n) for g, n, s in bucket.values())
        for key, bucket in groups.items()
    }


def pool_candidates(rankings: Iterable[dict[Key, list[Candidate]]]) -> dict[Key, list[Candidate]]:
    """Several models' vote rankings as one: identical grids add their votes and average their halt
    probabilities weighted by votes, as if all predictions had been ranked together.
    Consistency-scored candidates do not pool (their log-probabilities belong to one model)."""
    groups: dict[Key, dict[bytes, list]] = {}
    for ranked in rankings:
        for key, candidates in ranked.items():
            bucket = groups.setdefault(key, {})
            for c in candidates:
                if c.mean_logprob is not None:
                    raise ValueError("consistency-scored candidates cannot be pooled across models")
                entry = bucket.setdefault(grid_key(c.grid), [c.grid, 0, 0.0])
                entry[1] += c.votes
                entry[2] += c.mean_halt_prob * c.votes
    return {
        key: sort_candidates(Candidate(g, n, s / n) for g, n, s in bucket.values())
        for key, bucket in groups.items()
    }


def choose_attempts(candidates: Sequence[Candidate], fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """attempt_1 and attempt_2 for one test input.

    The top two distinct candidate grids; with one candidate, attempt_2 is the fallback grid (for
    example the test input) when it differs, and repeats attempt_1 only as a last resort; with no
    candidate both attempts are the fallback.
    """
    fallback = np.ascontiguousarray(fallback, dtype=np.uint8)
    grids: list[np.ndarray] = []
    seen: set[bytes] = set()
    for c in sort_candidates(candidates):
        k = grid_key(c.grid)
        if k not in seen:
            seen.add(k)
            grids.append(np.ascontiguousarray(c.grid, dtype=np.uint8))
        if len(grids) == 2:
            return grids[0], grids[1]
    if not grids:
        return fallback, fallback
    first = grids[0]
    return first, (fallback if grid_key(fallback) != grid_key(first) else first)
