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

from conftest import SMALL_TASKS, TINY, run_cli

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
    views, untrained, _ = make_views(tasks, idents, augs)
    assert untrained == []
    assert [(v.task_id, v.test_index, v.row) for v in views] == [
        ("25ff71a9", 0, 1), ("25ff71a9", 1, 1), ("a85d4709", 0, 3), ("25ff71a9", 0, 2), ("25ff71a9", 1, 2)]
    views, untrained, _ = make_views(tasks, idents[:3], augs[:3], max_views=1)
    assert untrained == ["a85d4709"] and len(views) == 2


def test_rows_match_a_task_by_its_content_and_a_lean_exports_mean_row_is_no_tasks():
    """ttt from a lean export (identifiers `<blank>`, `<mean>`) read its rows as task ids and
    stopped with a traceback; a row recorded under other content is no row of the task."""
    from arc_trm.views import trained_rows
    from augment.task_hash import content_hash

    tasks = load_tasks("arc-agi-1:training/25ff71a9+a85d4709")
    assert trained_rows(tasks, ["<blank>", "<mean>"], {}) == ({}, [])
    idents = ["<blank>", "25ff71a9#0", "a85d4709#0"]
    rows_of, other = trained_rows(tasks, idents, {"25ff71a9": content_hash(tasks[0]), "a85d4709": "another task's"})
    assert rows_of == {"25ff71a9": [(0, 1)]} and other == ["a85d4709"]
    assert make_views(tasks, idents, ["", "t0p0123456789", "t0p0123456789"],
                      task_hashes={"25ff71a9": content_hash(tasks[0]), "a85d4709": "x"}).untrained == ["a85d4709"]


@pytest.mark.slow
def test_predict_cli_writes_valid_files_with_fallback_for_untrained_tasks(tmp_path, tiny_run):
    run = tiny_run
    tasks = SMALL_TASKS.replace("@test", "+a85d4709@test")  # one task the model never trained on
    sub = tmp_path / "out" / "submission.json"
    sub.parent.mkdir()
    proc = run_cli("predict", "--checkpoint", run, "--tasks", tasks, "--out", sub, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "1 task has no puzzle embedding trained on its content" in proc.stdout
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


def _solutions_submission(tasks) -> dict:
    return {t.id: [{"attempt_1": p.output.tolist(), "attempt_2": p.output.tolist()} for p in t.test] for t in tasks}


def test_a_prediction_cut_before_any_view_leaves_the_submission_byte_identical(tmp_path, small_build):
    from arc_trm.common import Dist
    from arc_trm.config import preset
    from arc_trm.overrides import apply_overrides
    from arc_trm.infer import LoadedModel, PredictOptions, predict
    from augment.store import BuiltSet
    from submission.kaggle import write_candidates, write_submission
    from submission.vote import Candidate

    built = BuiltSet.open(small_build)
    cfg = apply_overrides(preset("cpu-quick"), TINY)
    cfg.model.num_puzzle_ids, cfg.model.seq_len = built.num_identifiers, cfg.data.canvas ** 2
    loaded = LoadedModel(TRM(cfg.model).eval(), cfg, built.identifier_map(), tmp_path)
    tasks = load_tasks(SMALL_TASKS)
    sub = tmp_path / "submission.json"
    write_submission(sub, _solutions_submission(tasks), tasks)  # real answers, not the fallback
    write_candidates(candidates_path(sub), {(t.id, i): [Candidate(p.output, 3, 0.9)]
                                            for t in tasks for i, p in enumerate(t.test)})
    before = sub.read_bytes(), candidates_path(sub).read_bytes()
    expired = loaded.view_run(progress=False, deadline=0.0)
    summary = predict([loaded], tasks, sub, PredictOptions(SMALL_TASKS), expired, Dist())
    assert summary.views == 0
    assert (sub.read_bytes(), candidates_path(sub).read_bytes()) == before
    # Without an earlier file the same cut prediction still writes a valid (fallback) submission.
    fresh = tmp_path / "fresh.json"
    predict([loaded], tasks, fresh, PredictOptions(SMALL_TASKS), expired, Dist())
    validate_submission(load_submission(fresh), tasks)


def test_only_answered_test_inputs_replace_earlier_entries(tmp_path):
    from submission.kaggle import earlier_entries, merge_candidates, merge_submission, write_candidates
    from submission.vote import Candidate

    tasks = load_tasks("arc-agi-1:training/25ff71a9+a85d4709")  # 25ff71a9 has two test inputs
    path = tmp_path / "sub.json"
    earlier = _solutions_submission(tasks)
    earlier["a85d4709"] = "not a list"  # an invalid task entry is not kept: it falls back
    path.write_text(json.dumps(earlier))
    new = np.full((2, 2), 7, np.uint8)
    ranked = {("25ff71a9", 1): [Candidate(new, 2, 0.5)], ("25ff71a9", 0): []}  # input 0: no view decoded a grid
    merged = merge_submission(tasks, ranked, earlier_entries(path, tasks))
    validate_submission(merged, tasks)
    assert merged["25ff71a9"][0] == earlier["25ff71a9"][0] and merged["25ff71a9"][1]["attempt_1"] == new.tolist()
    fallback = [t for t in tasks if t.id == "a85d4709"][0].test[0].input.tolist()
    assert merged["a85d4709"][0] == {"attempt_1": fallback, "attempt_2": fallback}
    cands = tmp_path / "sub.candidates.json"
    old = Candidate(np.ones((3, 3), np.uint8), 4, 0.8)
    write_candidates(cands, {("25ff71a9", 0): [old], ("25ff71a9", 1): [old], ("gone", 0): [old]})
    kept = merge_candidates(cands, ranked, tasks)
    assert [c.votes for c in kept[("25ff71a9", 0)]] == [4] and kept[("25ff71a9", 1)] is ranked[("25ff71a9", 1)]
    assert ("gone", 0) not in kept


def _votes_by_grid(path) -> dict:
    return {key: {c.grid.tobytes() + bytes(c.grid.shape): c.votes for c in cands}
            for key, cands in read_candidates(path).items()}


@pytest.mark.slow
def test_an_ensemble_pools_each_checkpoints_votes(tmp_path):
    """Two checkpoints given to predict: each view votes once per checkpoint, so every candidate's
    votes are the sum of its votes under each checkpoint alone."""
    from conftest import write_tiny_checkpoint

    write_tiny_checkpoint(tmp_path / "base")
    state = torch.load(next((tmp_path / "base" / "checkpoints").glob("step_*")) / "state.pt", weights_only=True)
    g = torch.Generator().manual_seed(1)
    for name, scale in (("a", 0.0), ("b", 0.5)):
        weights = {k: v + scale * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
                   for k, v in state["model"].items()}
        weights["lm_head.weight"][:2] = 0  # PAD and EOS never win: every view decodes a full-canvas grid
        write_tiny_checkpoint(tmp_path / name, state_patch={"model": weights})
    tasks = "arc-agi-1:training/3c9b0459@test"
    subs = {}
    for name, runs in (("a", ["a"]), ("b", ["b"]), ("ab", ["a", "b"])):
        subs[name] = tmp_path / name / "submission.json" if name != "ab" else tmp_path / "ab.json"
        flags = [arg for r in runs for arg in ("--checkpoint", tmp_path / r)]
        proc = run_cli("predict", *flags, "--tasks", tasks, "--out", subs[name], "--no-progress", "--halting", "off")
        assert proc.returncode == 0, proc.stderr
    a, b, ab = (_votes_by_grid(candidates_path(subs[n])) for n in ("a", "b", "ab"))
    total = {n: sum(sum(v.values()) for v in votes.values()) for n, votes in (("a", a), ("b", b), ("ab", ab))}
    assert total == {"a": 2, "b": 2, "ab": 4}  # 2 views, each voting once per checkpoint
    for key in ab:
        for grid in set(a.get(key, {})) | set(b.get(key, {})) | set(ab[key]):
            assert ab[key].get(grid, 0) == a.get(key, {}).get(grid, 0) + b.get(key, {}).get(grid, 0)
    record = json.loads(subs["ab"].with_name("ab.predict.json").read_text())
    assert record["views"] == 4 and len(record["checkpoints"]) == 2
    proc = run_cli("predict", "--checkpoint", tmp_path / "a", "--checkpoint", tmp_path / "b", "--tasks", tasks,
                   "--out", tmp_path / "c.json", "--scoring", "consistency")
    assert proc.returncode == 2 and "one --checkpoint" in proc.stderr and "Traceback" not in proc.stderr


def test_an_ensemble_names_only_the_tasks_no_checkpoint_answers_as_other_content(tmp_path):
    """With several checkpoints, the "differ in content" line (and the record's other_content_tasks)
    listed every task any checkpoint held under other content, also one another checkpoint answers.
    Now only tasks no checkpoint answers: a holds A and B (B under other content), b holds B and C
    (C under other content): B is answered by b, C by neither."""
    from augment.task_hash import content_hash
    from conftest import cli_in_process, write_tiny_checkpoint

    tasks = load_tasks(SMALL_TASKS)
    (a, hash_a), (b, hash_b), (c, _) = ((t.id, content_hash(t)) for t in tasks)
    for name, rows in (("a", ((a, hash_a), (b, "other content"))), ("b", ((b, hash_b), (c, "other content")))):
        write_tiny_checkpoint(tmp_path / name, ids={"identifiers": ["<blank>", *(f"{t}#0" for t, _ in rows)],
                                                    "augmentations": ["", "t0p0123456789", "t0p0123456789"],
                                                    "task_hashes": ["", *(h for _, h in rows)]})
    out = tmp_path / "ab.json"
    proc = cli_in_process("predict", "--checkpoint", tmp_path / "a", "--checkpoint", tmp_path / "b", "--tasks",
                          SMALL_TASKS, "--out", out, "--no-progress", "--max-steps", "1")
    assert proc.returncode == 0, proc.stderr
    line, = [x for x in proc.stdout.splitlines() if "in content from the tasks" in x]
    assert line.startswith("1 task differs in content") and line.endswith(f": {c}"), line
    assert "a checkpoint's puzzle rows" in line and "no checkpoint has rows of their content" in line, line
    record = json.loads(out.with_name("ab.predict.json").read_text())
    assert record["other_content_tasks"] == [c] and record["untrained_tasks"] == [c]


def test_pooled_rankings_equal_one_ranking_of_all_predictions():
    from submission.vote import Prediction, pool_candidates

    rng = np.random.default_rng(0)
    grids = [rng.integers(0, 10, (2, 3)) for _ in range(3)]
    preds = [Prediction("t", i % 2, grids[rng.integers(0, 3)], float(rng.random())) for i in range(40)]
    pooled = pool_candidates([rank_candidates(preds[:15]), rank_candidates(preds[15:])])
    whole = rank_candidates(preds)
    assert pooled.keys() == whole.keys()
    for key in whole:
        assert [(c.grid.tobytes(), c.votes) for c in pooled[key]] == [(c.grid.tobytes(), c.votes) for c in whole[key]]
        assert np.allclose([c.mean_halt_prob for c in pooled[key]], [c.mean_halt_prob for c in whole[key]])
