"""Voted inference: inversion of every augmentation, batched halting with slot refill, predict CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from arc_trm.config import ModelConfig
from arc_trm.views import View, ViewOutputs, ViewRun, make_views, predictions_from, run_views
from arc_trm.model import TRM, Batch
from augment.encoding import encode_grid
from augment.tasks import load_tasks
from augment.transforms import Augmentation
from submission.kaggle import candidates_path, load_submission, read_candidates, validate_submission
from submission.vote import rank_candidates

from conftest import SMALL_TASKS, run_cli

CPU = torch.device("cpu")


def tiny_model(seed: int = 0, **overrides) -> TRM:
    torch.manual_seed(seed)
    cfg = ModelConfig(hidden_size=32, num_heads=2, H_cycles=2, L_cycles=1, halt_max_steps=5, puzzle_emb_len=2,
                      seq_len=36, num_puzzle_ids=8, forward_dtype="float32", **overrides)
    model = TRM(cfg).eval()
    with torch.no_grad():  # a Q head whose halt logit straddles 0, so views halt at different steps
        model.q_head.weight.normal_(0, 2.0)
        model.q_head.bias.zero_()
        model.puzzle_table.normal_()
    return model


def test_inverted_views_vote_for_the_solution_across_all_dihedral_ids():
    task = load_tasks("arc-agi-1:training/a85d4709")[0]  # 3x3 grids
    solution = task.test[0].output
    rng = np.random.default_rng(0)
    views, tokens = [], []
    for t in range(8):
        perm = tuple([0] + list(rng.permutation(np.arange(1, 10))))
        aug = Augmentation(t, perm)
        views.append(View(task.id, 0, t + 1, aug))
        # A perfect model answers in the augmented frame; voting must undo the augmentation.
        tokens.append(encode_grid(aug.apply(solution), 6))
    views.append(View(task.id, 0, 9, Augmentation.identity()))
    tokens.append(np.zeros(36, np.uint8))  # no decodable grid: must not vote
    outputs = ViewOutputs(np.stack(tokens), np.full(9, 0.7, np.float32), np.ones(9, np.int32), 0.0)
    preds = predictions_from(views, outputs, np.ones(9, bool), 6)
    assert preds[-1].grid is None
    for p in preds[:-1]:
        assert np.array_equal(p.grid, solution)
    ranked = rank_candidates(preds)[(task.id, 0)]
    assert len(ranked) == 1 and ranked[0].votes == 8 and np.array_equal(ranked[0].grid, solution)


def test_batched_halting_with_refill_matches_views_run_alone():
    model = tiny_model()
    rng = np.random.default_rng(1)
    n = 7
    inputs = np.stack([encode_grid(rng.integers(0, 10, (3, 3)), 6) for _ in range(n)])
    ids = rng.integers(1, 8, n).astype(np.int32)
    with torch.no_grad():  # centre the halt logit so about half the views halt at the first step
        batch = Batch(torch.from_numpy(inputs.astype(np.int32)), torch.zeros(n, 36, dtype=torch.long),
                      torch.from_numpy(ids))
        first = model(model.initial_carry(batch), batch).q_halt_logits
        model.q_head.bias[0] -= first.median() + 1e-3
    batched = run_views(model, inputs, ids, ViewRun(6, batch_size=3, halting=True), CPU)
    alone = [run_views(model, inputs[i:i + 1], ids[i:i + 1], ViewRun(6, batch_size=1, halting=True), CPU)
             for i in range(n)]
    assert len(set(batched.steps.tolist())) > 1, "test needs views that halt at different steps"
    assert batched.steps.min() >= 1 and batched.steps.max() <= 5
    for i, single in enumerate(alone):
        assert batched.steps[i] == single.steps[0], f"view {i} ran a different number of steps"
        assert np.array_equal(batched.tokens[i], single.tokens[0]), f"view {i} answer differs"
        assert batched.halt_prob[i] == pytest.approx(single.halt_prob[0], abs=1e-5)
        # A view that halted early had its halt logit above 0 there.
        if single.steps[0] < 5:
            assert single.halt_prob[0] > 0.5


def test_halting_off_runs_the_cap_and_on_stops_when_confident():
    model = tiny_model()
    with torch.no_grad():
        model.q_head.weight.zero_()
        model.q_head.bias.fill_(5.0)  # always confident
    inputs = np.stack([encode_grid(np.eye(3, dtype=np.uint8), 6)] * 5)
    ids = np.ones(5, np.int32)
    on = run_views(model, inputs, ids, ViewRun(6, batch_size=2, halting=True), CPU)
    off = run_views(model, inputs, ids, ViewRun(6, batch_size=2, halting=False), CPU)
    assert on.steps.tolist() == [1] * 5
    assert off.steps.tolist() == [5] * 5


def test_a_passed_deadline_runs_no_view():
    model = tiny_model()
    inputs = np.zeros((4, 36), np.uint8)
    out = run_views(model, inputs, np.ones(4, np.int32), ViewRun(6, batch_size=2, deadline=0.0), CPU)
    assert out.steps.tolist() == [0, 0, 0, 0]


def test_views_come_round_by_round_and_untrained_tasks_are_reported():
    tasks = load_tasks("arc-agi-1:training/25ff71a9+a85d4709")  # 25ff71a9 has two test inputs
    idents = ["<blank>", "25ff71a9#0", "25ff71a9#1", "a85d4709#0"]
    augs = ["", Augmentation.identity().to_str(), Augmentation(2, tuple(range(10))).to_str(),
            Augmentation.identity().to_str()]
    views, untrained = make_views(tasks, idents, augs)
    assert untrained == []
    assert [(v.task_id, v.test_index, v.row) for v in views] == [
        ("25ff71a9", 0, 1), ("25ff71a9", 1, 1), ("a85d4709", 0, 3), ("25ff71a9", 0, 2), ("25ff71a9", 1, 2)]
    views, untrained = make_views(tasks, idents[:3], augs[:3], max_views=1)
    assert untrained == ["a85d4709"] and len(views) == 2


@pytest.mark.slow
def test_predict_cli_writes_valid_files_with_fallback_for_untrained_tasks(tmp_path, tiny_run):
    run = tiny_run
    tasks = SMALL_TASKS.replace("@test", "+a85d4709@test")  # one task the model never trained on
    sub = tmp_path / "out" / "submission.json"
    sub.parent.mkdir()
    proc = run_cli("predict", "--checkpoint", run, "--tasks", tasks, "--out", sub, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "1 tasks have no puzzle embedding trained on their content" in proc.stdout
    loaded = load_tasks(tasks)
    data = load_submission(sub)
    validate_submission(data, loaded)
    fallback = [t for t in loaded if t.id == "a85d4709"][0]
    assert data["a85d4709"][0]["attempt_1"] == fallback.test[0].input.tolist()
    ranked = read_candidates(candidates_path(sub))
    assert {k[0] for k in ranked} == {"3c9b0459", "6150a2bd", "74dd1130"}
    info = json.loads((sub.parent / "submission.predict.json").read_text())
    assert info["untrained_tasks"] == ["a85d4709"] and info["views"] == 3 * 4 and info["halting"] is True
    assert 1 <= info["mean_steps"] <= 3

    proc = run_cli("predict", "--checkpoint", tmp_path / "nowhere", "--tasks", tasks, "--out", sub)
    assert proc.returncode == 2 and "no checkpoint found" in proc.stderr and "Traceback" not in proc.stderr

    # A truncated checkpoint (a copy cut short) is named in one line, and the old submission stays.
    before = sub.read_text()
    state = next((run / "checkpoints").glob("step_*")) / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    proc = run_cli("predict", "--checkpoint", run, "--tasks", tasks, "--out", sub)
    assert proc.returncode == 2, proc.stderr
    assert "truncated" in proc.stderr and str(state) in proc.stderr and "Traceback" not in proc.stderr
    assert sub.read_text() == before


def test_vectorised_augmentation_records_match_each_row(small_build):
    from augment.store import BuiltSet

    built = BuiltSet.open(small_build)
    records = built.augmentation_records()
    assert records[0] == "" and len(records) == built.num_identifiers
    assert records[1:] == [built.augmentation(r).to_str() for r in range(1, built.num_identifiers)]
    assert len(set(records[1:5])) > 1  # not all identity
