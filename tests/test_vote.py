"""Voting: grouping identical grids, ranking, and choosing two distinct attempts (REFERENCE §7)."""

from __future__ import annotations

import numpy as np
import pytest

from submission.vote import Candidate, Prediction, choose_attempts, grid_key, rank_candidates

A = np.array([[1, 2], [3, 4]], dtype=np.uint8)
B = np.array([[5]], dtype=np.uint8)
C = np.array([[1, 2, 3, 4]], dtype=np.uint8)  # same cells as A, different shape
D = np.array([[0, 0], [0, 7]], dtype=np.uint8)


def P(grid, halt=0.5, task="t", i=0):
    return Prediction(task, i, None if grid is None else np.array(grid, dtype=np.uint8), halt)


def grids(cands):
    return [c.grid.tolist() for c in cands]


def test_votes_rank_first_then_mean_halt_probability():
    preds = [P(A, 0.1), P(B, 0.9), P(A, 0.3), P(D, 0.99), P(B, 0.8), P(B, 0.7)]
    ranked = rank_candidates(preds)
    cands = ranked[("t", 0)]
    assert grids(cands) == [B.tolist(), A.tolist(), D.tolist()]
    assert [c.votes for c in cands] == [3, 2, 1]
    assert cands[0].mean_halt_prob == pytest.approx(0.8)
    assert cands[1].mean_halt_prob == pytest.approx(0.2)


def test_equal_votes_broken_by_mean_halt_probability():
    # D sorts before A by grid bytes, so only the halt probability can put A first.
    assert grid_key(D) < grid_key(A)
    ranked = rank_candidates([P(D, 0.1), P(A, 0.8), P(D, 0.3), P(A, 0.6), P(B, 0.95)])
    cands = ranked[("t", 0)]
    assert grids(cands) == [A.tolist(), D.tolist(), B.tolist()]  # A mean 0.7 > D mean 0.2
    ranked = rank_candidates([P(A, 0.2), P(A, 0.4), P(D, 0.9), P(D, 0.1)])
    assert grids(ranked[("t", 0)]) == [D.tolist(), A.tolist()]  # D mean 0.5 > A mean 0.3


def test_full_ties_are_deterministic_whatever_the_order():
    preds = [P(A, 0.5), P(D, 0.5), P(B, 0.5), P(C, 0.5)]
    first = grids(rank_candidates(preds)[("t", 0)])
    for perm in ([3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]):
        assert grids(rank_candidates([preds[i] for i in perm])[("t", 0)]) == first
    assert len(first) == 4


def test_same_cells_different_shape_are_different_candidates():
    ranked = rank_candidates([P(A), P(C)])
    assert [c.votes for c in ranked[("t", 0)]] == [1, 1]
    assert grid_key(A) != grid_key(C)


def test_none_and_invalid_grids_cast_no_vote():
    preds = [P(None, 0.99), P(None, 0.99), P(A, 0.1), P(np.full((2, 2), 10), 0.9),
             P(np.zeros((31, 1)), 0.9), P(None, 0.9, task="u")]
    # An empty grid, built explicitly (np.array of [] would be 1-D).
    preds.append(Prediction("t", 0, np.zeros((0, 3), dtype=np.uint8), 0.9))
    ranked = rank_candidates(preds)
    assert grids(ranked[("t", 0)]) == [A.tolist()]
    assert ranked[("t", 0)][0].votes == 1
    assert ranked[("u", 0)] == []  # the test input is known, but nothing was decodable


def test_groups_by_task_and_test_index():
    ranked = rank_candidates([P(A, i=0), P(B, i=1), P(B, i=1), P(A, task="v", i=0)])
    assert set(ranked) == {("t", 0), ("t", 1), ("v", 0)}
    assert ranked[("t", 1)][0].votes == 2


def test_attempts_are_the_top_two_distinct_grids():
    cands = [Candidate(A, 5, 0.9), Candidate(A.copy(), 4, 0.9), Candidate(B, 3, 0.2), Candidate(D, 1, 0.99)]
    a1, a2 = choose_attempts(cands, fallback=D)
    assert a1.tolist() == A.tolist() and a2.tolist() == B.tolist()


def test_attempts_follow_rank_not_list_order():
    a1, a2 = choose_attempts([Candidate(B, 1, 0.5), Candidate(A, 3, 0.1)], fallback=D)
    assert (a1.tolist(), a2.tolist()) == (A.tolist(), B.tolist())


def test_one_candidate_second_attempt_is_the_fallback():
    a1, a2 = choose_attempts([Candidate(A, 2, 0.5)], fallback=D)
    assert a1.tolist() == A.tolist() and a2.tolist() == D.tolist()


def test_one_candidate_equal_to_fallback_repeats_as_last_resort():
    a1, a2 = choose_attempts([Candidate(A, 2, 0.5)], fallback=A.copy())
    assert a1.tolist() == a2.tolist() == A.tolist()


def test_no_candidate_both_attempts_are_the_fallback():
    a1, a2 = choose_attempts([], fallback=D)
    assert a1.tolist() == a2.tolist() == D.tolist()
    assert a1.dtype == np.uint8
