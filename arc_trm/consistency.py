"""Consistency rescoring: rank a test input's candidates by how probable all its views find them.

Each view of a test input stops with a distribution over output tokens: its logits at the step it
halted. A candidate grid, mapped into a view's frame (the view's augmentation applied) and encoded
as training labels, has a log-probability under that view: the sum over the supervised positions
(colours and EOS; PAD is never supervised). A candidate scores

    log(votes) + mean over views of log p_view(candidate)

the log of its votes times the geometric mean of the views' probabilities, a product of experts
weighted by how many views decoded it (submission.vote.consistency_score). The logits are the ones
the views computed anyway (no extra forward pass), and views are streamed per test input: an
input's log-probabilities are freed once its last view has finished.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from augment.encoding import IGNORE_LABEL, encode_grid, labels_from_tokens
from augment.transforms import Augmentation
from submission.vote import Candidate, Key, Prediction, rank_candidates, sort_candidates

MAX_RESCORED = 32  # the most-voted candidates of an input that are rescored; the rest follow them
SCORINGS = ("votes", "consistency")


def add_scoring_argument(p: argparse.ArgumentParser) -> None:
    """--scoring, the same for predict and ttt."""
    p.add_argument("--scoring", choices=SCORINGS, default="votes",
                   help="votes: rank candidates by how many views decoded them; consistency: by votes times "
                        "the geometric mean of the candidate's probability under every view (the same forward "
                        "passes; see benchmarks/RESULTS.md)")


@dataclass(frozen=True)
class ViewRecord:
    prediction: Prediction  # the view's decoded answer, in the original frame
    augmentation: Augmentation
    logprobs: np.ndarray | None  # (L, V) log-softmax at the view's last step; None: input did not fit
    view: int | None = None  # the view this noisy trajectory belongs to (None: a view of its own)


def best_trajectories(records: list[ViewRecord]) -> list[ViewRecord]:
    """One record per view: of a view's trajectories, the one the Q head is surest of (the highest
    halt probability; the first to arrive on a tie)."""
    best: dict[int, ViewRecord] = {}
    own = []
    for r in records:
        if r.view is None:
            own.append(r)
        elif r.view not in best or r.prediction.halt_prob > best[r.view].prediction.halt_prob:
            best[r.view] = r
    return own + list(best.values())


def labels_in_frame(grid: np.ndarray, augmentation: Augmentation, side: int) -> np.ndarray:
    """(side*side,) labels of `grid` as the view with `augmentation` would have been trained on it."""
    return labels_from_tokens(encode_grid(augmentation.apply(grid), side))


def sequence_logprobs(logprobs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(L, V) log-probabilities, (C, L) labels -> (C,) summed over the supervised positions."""
    supervised = labels != IGNORE_LABEL
    tokens = np.where(supervised, labels, 0)
    picked = np.take_along_axis(logprobs[None], tokens[..., None], axis=2)[..., 0]  # (C, L)
    return (picked * supervised).sum(1)


def rescore(key: Key, records: list[ViewRecord], side: int, max_rescored: int = MAX_RESCORED) -> list[Candidate]:
    """The candidates of one test input in consistency order (the top `max_rescored` by votes are
    rescored under every view that ran on the input; the rest keep their votes order after them).
    Of noisy trajectories, each view's best one votes and scores (best_trajectories)."""
    records = best_trajectories(records)
    ranked = rank_candidates(r.prediction for r in records).get(key, [])
    head, tail = ranked[:max_rescored], ranked[max_rescored:]
    experts = [r for r in records if r.logprobs is not None]
    if not head or not experts:
        return ranked
    total = np.zeros(len(head))
    for r in experts:
        labels = np.stack([labels_in_frame(c.grid, r.augmentation, side) for c in head])
        total += sequence_logprobs(r.logprobs.astype(np.float64), labels)
    rescored = [replace(c, mean_logprob=float(t / len(experts))) for c, t in zip(head, total)]
    return sort_candidates(rescored) + tail


class InputStream:
    """Finished views arrive in any order; an input is rescored, and its log-probabilities freed,
    once every one of its views has arrived. `close` rescores inputs cut short (a deadline)."""

    def __init__(self, keys: list[Key], side: int):
        self.expected = Counter(keys)
        self.side = side
        self.pending: dict[Key, list[ViewRecord]] = {}
        self.ranked: dict[Key, list[Candidate]] = {}

    def add(self, record: ViewRecord) -> None:
        key = (record.prediction.task_id, record.prediction.test_index)
        records = self.pending.setdefault(key, [])
        records.append(record)
        if len(records) == self.expected[key]:
            self.ranked[key] = rescore(key, self.pending.pop(key), self.side)

    def close(self) -> dict[Key, list[Candidate]]:
        for key in list(self.pending):
            self.ranked[key] = rescore(key, self.pending.pop(key), self.side)
        return self.ranked
