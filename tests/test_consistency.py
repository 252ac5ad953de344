"""Consistency rescoring: log-probabilities of candidates under every view, on hand-made logits
with known answers, the streaming per input, and the same forward passes as plain voting."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from arc_trm.common import Dist
from arc_trm.consistency import (InputStream, ViewRecord, best_trajectories, labels_in_frame, rescore,
                                 sequence_logprobs)
from arc_trm.infer import vote_views
from arc_trm.views import View, ViewRun, encode_views, run_views
from arc_trm.model import Batch
from augment.encoding import IGNORE_LABEL, VOCAB_SIZE, encode_grid
from augment.tasks import Pair, Task
from augment.transforms import Augmentation
from submission.kaggle import candidates_path, load_submission, read_candidates, validate_submission, write_candidates
from submission.vote import Candidate, Prediction, consistency_score, sort_candidates

from conftest import cli_in_process, write_tiny_checkpoint
from test_infer import tiny_model

SIDE = 6
X = np.array([[1, 2], [3, 4]], np.uint8)
Y = np.array([[1, 2], [3, 5]], np.uint8)  # differs from X in one cell


def confident_logprobs(grid: np.ndarray, aug: Augmentation, p_main: float, alt: np.ndarray | None = None,
                       p_alt: float = 0.0) -> np.ndarray:
    """(L, V) log-probabilities that put p_main on `grid`'s labels in the view's frame and p_alt
    on `alt`'s where they differ; the rest of the mass is spread evenly."""
    labels = labels_in_frame(grid, aug, SIDE)
    alt_labels = labels_in_frame(alt, aug, SIDE) if alt is not None else labels
    probs = np.full((SIDE * SIDE, VOCAB_SIZE), 0.0)
    for pos, (tok, alt_tok) in enumerate(zip(labels, alt_labels)):
        if tok == IGNORE_LABEL:
            probs[pos] = 1.0 / VOCAB_SIZE
            continue
        if alt_tok != tok:
            probs[pos] = (1 - p_main - p_alt) / (VOCAB_SIZE - 2)
            probs[pos, tok], probs[pos, alt_tok] = p_main, p_alt
        else:
            probs[pos] = (1 - 0.9) / (VOCAB_SIZE - 1)
            probs[pos, tok] = 0.9
    return np.log(probs)


def test_sequence_logprobs_sums_the_supervised_positions_only():
    logprobs = np.log(np.random.default_rng(0).dirichlet(np.ones(VOCAB_SIZE), SIDE * SIDE))
    labels = labels_in_frame(X, Augmentation.identity(), SIDE)
    expected = sum(logprobs[i, t] for i, t in enumerate(labels) if t != IGNORE_LABEL)
    assert (labels != IGNORE_LABEL).sum() == 4 + 2 + 2  # 2x2 colours, EOS row and column
    assert sequence_logprobs(logprobs, labels[None])[0] == pytest.approx(expected)


def test_a_confident_minority_outranks_two_hesitant_votes_and_frames_are_mapped():
    # Views 1 and 2 decode X but give Y almost as much mass at the differing cell; view 3 decodes Y
    # and gives X almost none. Votes rank X first; consistency ranks Y first.
    augs = [Augmentation(0, tuple(range(10))), Augmentation(1, (0, 2, 1, 3, 4, 5, 6, 7, 8, 9)),
            Augmentation(4, tuple(range(10)))]
    records = [
        ViewRecord(Prediction("t", 0, X, 0.5), augs[0], confident_logprobs(X, augs[0], 0.5, Y, 0.45)),
        ViewRecord(Prediction("t", 0, X, 0.5), augs[1], confident_logprobs(X, augs[1], 0.5, Y, 0.45)),
        ViewRecord(Prediction("t", 0, Y, 0.5), augs[2], confident_logprobs(Y, augs[2], 0.98, X, 0.001)),
    ]
    by_votes = sort_candidates([Candidate(X, 2, 0.5), Candidate(Y, 1, 0.5)])
    assert np.array_equal(by_votes[0].grid, X)
    ranked = rescore(("t", 0), records, SIDE)
    assert [c.votes for c in ranked] == [1, 2] and np.array_equal(ranked[0].grid, Y)
    # The differing cell decides: mean log-probability of each candidate, worked by hand.
    shared = 7 * math.log(0.9)  # the seven cells and EOS labels the candidates agree on
    x_mean = shared + (2 * math.log(0.5) + math.log(0.001)) / 3
    y_mean = shared + (2 * math.log(0.45) + math.log(0.98)) / 3
    got = {c.votes: c.mean_logprob for c in ranked}
    assert got[2] == pytest.approx(x_mean) and got[1] == pytest.approx(y_mean)
    assert consistency_score(ranked[0]) == pytest.approx(y_mean)
    assert consistency_score(ranked[1]) == pytest.approx(math.log(2) + x_mean)


def test_agreeing_views_keep_the_votes_order_and_undecodable_views_are_no_expert():
    aug = Augmentation.identity()
    sure = confident_logprobs(X, aug, 0.9, Y, 0.05)
    records = [ViewRecord(Prediction("t", 0, X, 0.5), aug, sure), ViewRecord(Prediction("t", 0, X, 0.5), aug, sure),
               ViewRecord(Prediction("t", 0, Y, 0.5), aug, sure), ViewRecord(Prediction("t", 0, None, 0.1), aug, None)]
    ranked = rescore(("t", 0), records, SIDE)
    assert [c.votes for c in ranked] == [2, 1]
    assert ranked[0].mean_logprob == pytest.approx(7 * math.log(0.9) + math.log(0.9))  # three experts, all agree


def test_the_stream_rescores_an_input_once_all_its_views_arrive_and_frees_it():
    aug = Augmentation.identity()
    lp = confident_logprobs(X, aug, 0.9)
    stream = InputStream([("a", 0), ("b", 0), ("a", 0), ("b", 0)], SIDE)
    stream.add(ViewRecord(Prediction("a", 0, X, 0.5), aug, lp))
    stream.add(ViewRecord(Prediction("b", 0, Y, 0.5), aug, lp))
    assert stream.ranked == {} and set(stream.pending) == {("a", 0), ("b", 0)}
    stream.add(ViewRecord(Prediction("a", 0, X, 0.5), aug, lp))
    assert set(stream.ranked) == {("a", 0)} and set(stream.pending) == {("b", 0)}  # freed
    ranked = stream.close()  # ("b", 0) was cut short: rescored with the view it has
    assert ranked[("b", 0)][0].votes == 1 and ranked[("b", 0)][0].mean_logprob is not None
    assert stream.pending == {}


def test_candidates_file_keeps_the_consistency_order_and_scores(tmp_path):
    ranked = {("t", 0): [Candidate(Y, 1, 0.5, -1.0), Candidate(X, 2, 0.5, -3.0)]}
    write_candidates(tmp_path / "c.json", ranked)
    back = read_candidates(tmp_path / "c.json")[("t", 0)]
    assert [c.mean_logprob for c in back] == [-1.0, -3.0]
    assert np.array_equal(sort_candidates(back)[0].grid, Y)


def test_consistency_reranks_the_same_views_with_their_own_final_logits():
    """Same forward passes as plain voting (same candidates and votes), and each mean log-probability
    equals one recomputed from an independent run of the model for the views' step count."""
    model = tiny_model()
    rng = np.random.default_rng(3)
    tasks = {f"t{i}": Task(f"t{i}", (Pair(rng.integers(0, 10, (3, 3)).astype(np.uint8),
                                          rng.integers(0, 10, (3, 3)).astype(np.uint8)),),
                           (Pair(rng.integers(0, 10, (3, 3)).astype(np.uint8), None),), role="test")
             for i in range(3)}
    views = [View(f"t{i}", 0, 1 + (i + k) % 7, Augmentation(k, tuple(range(10)))) for k in range(4) for i in range(3)]
    run = ViewRun(SIDE, batch_size=5, halting=False)
    votes = vote_views(model, views, tasks, run, Dist())
    cons = vote_views(model, views, tasks, ViewRun(SIDE, batch_size=5, halting=False, scoring="consistency"), Dist())
    assert cons.views == votes.views == 12 and cons.mean_steps == votes.mean_steps == 5
    for key, cands in votes.ranked.items():
        assert sorted(c.votes for c in cands) == sorted(c.votes for c in cons.ranked[key])
    # Independent recomputation: every view of the input for the full 5 steps in one batch.
    for key, cands in cons.ranked.items():
        mine = [v for v in views if (v.task_id, v.test_index) == key]
        inputs, _ = encode_views(mine, tasks, SIDE)
        batch = Batch(torch.from_numpy(inputs.astype(np.int32)), torch.zeros(len(mine), SIDE * SIDE, dtype=torch.long),
                      torch.tensor([v.row for v in mine], dtype=torch.int32))
        with torch.no_grad():
            carry = model.initial_carry(batch)
            for _ in range(5):
                out = model(carry, batch, use_q_halt=False)
                carry = out.carry
            logprobs = torch.log_softmax(out.logits.float(), -1).numpy()
        for c in cands:
            expected = np.mean([sequence_logprobs(logprobs[j], labels_in_frame(c.grid, v.augmentation, SIDE)[None])[0]
                                for j, v in enumerate(mine)])
            assert c.mean_logprob == pytest.approx(expected, rel=1e-4, abs=1e-3)
        scores = [consistency_score(c) for c in cands]
        assert scores == sorted(scores, reverse=True)


def test_predict_and_ttt_take_scoring_consistency(tmp_path):
    """The flag's wiring (the untrained tiny checkpoint decodes no grid: the scores themselves are
    checked above)."""
    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    sub = tmp_path / "submission.json"
    spec = "arc-agi-1:training/3c9b0459@test"
    proc = cli_in_process("predict", "--checkpoint", run, "--tasks", spec, "--out", sub, "--scoring", "consistency",
                          "--no-progress", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    from augment.tasks import load_tasks
    validate_submission(load_submission(sub), load_tasks(spec))
    assert ("3c9b0459", 0) in read_candidates(candidates_path(sub))
    assert json.loads((tmp_path / "submission.predict.json").read_text())["scoring"] == "consistency"
    bad = cli_in_process("predict", "--checkpoint", run, "--tasks", spec, "--out", sub, "--scoring", "logits")
    assert bad.returncode == 2 and "--scoring" in bad.stderr
    bad = cli_in_process("ttt", "--tasks", spec, "--out", tmp_path / "ttt", "--scoring", "logits")
    assert bad.returncode == 2 and "--scoring" in bad.stderr


# ----------------------------------------------------------------------------------------------
# Noisy trajectories (PTRM): the first trajectory of a view is the clean run; the Q head picks


def test_the_q_head_picks_each_views_surest_trajectory():
    aug = Augmentation.identity()
    records = [ViewRecord(Prediction("t", 0, X, 0.2), aug, None, view=0),
               ViewRecord(Prediction("t", 0, Y, 0.9), aug, None, view=0),
               ViewRecord(Prediction("t", 0, X, 0.4), aug, None, view=1),
               ViewRecord(Prediction("t", 0, Y, 0.4), aug, None, view=1)]  # a tie keeps the first
    picked = best_trajectories(records)
    assert [(r.view, r.prediction.halt_prob) for r in picked] == [(0, 0.9), (1, 0.4)]
    assert np.array_equal(picked[1].prediction.grid, X)
    ranked = rescore(("t", 0), records, SIDE)  # no logits: votes order over the picked trajectories
    assert [(c.votes, c.mean_logprob) for c in ranked] == [(1, None), (1, None)]


def test_noisy_trajectories_keep_the_clean_run_and_are_seeded():
    model = tiny_model()
    rng = np.random.default_rng(4)
    inputs = np.stack([encode_grid(rng.integers(0, 10, (3, 3)), SIDE) for _ in range(4)])
    ids = np.arange(1, 5, dtype=np.int32)
    run = ViewRun(SIDE, batch_size=3, halting=False)
    clean = run_views(model, inputs, ids, run, torch.device("cpu"))
    sigma = np.array([0.0, 0.0, 2.0, 2.0], np.float32)
    noisy = run_views(model, inputs, ids, run, torch.device("cpu"), noise=sigma)
    again = run_views(model, inputs, ids, run, torch.device("cpu"), noise=sigma)
    assert np.array_equal(noisy.tokens[:2], clean.tokens[:2])  # zero noise is the clean run exactly
    assert not np.allclose(noisy.halt_prob[2:], clean.halt_prob[2:])  # the noise reaches the answer
    assert np.array_equal(noisy.tokens, again.tokens) and np.array_equal(noisy.halt_prob, again.halt_prob)


def test_trajectories_through_vote_views_and_the_cli_checks(tmp_path):
    model = tiny_model()
    rng = np.random.default_rng(5)
    task = Task("t", (Pair(rng.integers(0, 10, (3, 3)).astype(np.uint8), rng.integers(0, 10, (3, 3)).astype(np.uint8)),),
                (Pair(rng.integers(0, 10, (3, 3)).astype(np.uint8), None),), role="test")
    views = [View("t", 0, 1 + k, Augmentation(k, tuple(range(10)))) for k in range(3)]
    for scoring in ("votes", "consistency"):
        result = vote_views(model, views, {"t": task},
                            ViewRun(SIDE, batch_size=4, scoring=scoring, trajectories=3, noise=0.5), Dist())
        assert (result.views, result.runs) == (3, 9)  # every trajectory of the 3 views ran
        assert sum(c.votes for c in result.ranked[("t", 0)]) <= 3  # one vote per view
    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    bad = cli_in_process("predict", "--checkpoint", run, "--tasks", "arc-agi-1:training/3c9b0459@test",
                         "--out", tmp_path / "s.json", "--trajectories", "4")
    assert bad.returncode == 2 and "--noise" in bad.stderr and "Traceback" not in bad.stderr
