"""Length bucketing: bucket choice, rendering on a bucket canvas, positions, the bucket sampler,
exact resume, 2 gloo processes == 1, inference and TTT with buckets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from arc_trm.config import ModelConfig
from arc_trm.data import BucketSampler
from arc_trm.model import TRM, Batch
from augment.buckets import bucket_of, bucket_sides, predicted_side, remap_offsets
from augment.encoding import encode_grid
from augment.store import BuiltSet
from augment.tasks import load_tasks

from conftest import TINY, cli_in_process, run_cli, sets
from test_train import assert_ok, final_state

# Three ARC-AGI-1 training tasks whose pairs fall in both buckets of a 15 x 15 canvas (10 and 15).
MIXED_TASKS = "arc-agi-1:training/2dc579da+3ac3eb23+54d82841@test"
MIXED = [o for o in TINY if not o.startswith("data.canvas")] + ["data.canvas=15", "data.bucketing=true"]


@pytest.fixture(scope="module")
def mixed_build(tmp_path_factory) -> Path:
    from augment.build import BuildOptions, ensure_built

    out = tmp_path_factory.mktemp("built") / "mixed"
    ensure_built(MIXED_TASKS, out, BuildOptions(augmentations=4, canvas=15, progress=False))
    return out


def test_bucket_choice_leaves_room_for_eos():
    assert bucket_sides(30) == (10, 15, 20, 30) and bucket_sides(15) == (10, 15) and bucket_sides(8) == (8,)
    np.testing.assert_array_equal(bucket_of(np.array([1, 9, 10, 14, 19, 20, 29, 30]), 30),
                                  [10, 10, 15, 15, 20, 30, 30, 30])


def test_offsets_move_into_the_bucket_and_keep_the_top_left():
    offsets = np.array([[0, 0], [25, 0], [12, 25]])
    extent = np.array([[5, 5], [5, 3], [8, 5]])
    moved = remap_offsets(offsets, extent, side=10, canvas=30)
    np.testing.assert_array_equal(moved[0], [0, 0])
    assert ((moved >= 0) & (moved + extent <= 10)).all()
    np.testing.assert_array_equal(moved[1], [25 * 6 // 26, 0])


def test_answer_side_covers_every_grid_and_the_scaled_test_input():
    task = load_tasks("arc-agi-1:training/c3e719e8")[0]  # 3x3 inputs scaled to 9x9 outputs
    assert predicted_side(task, 0, 30) == 10
    big = load_tasks("arc-agi-1:training/2dc579da")[0]
    assert predicted_side(big, 0, 15) == 15


@pytest.mark.parametrize("spec", ["arc-agi-2:evaluation/bf45cf4b",  # 14x13 -> 25x25, demonstrations <= 17
                                  "arc-agi-1:training/91413438",  # 3x3 -> 21x21, demonstrations <= 18
                                  "arc-agi-2:training/5587a8d0"])  # 8x8 -> 11x11, demonstrations <= 9
def test_answer_side_holds_answers_whose_size_depends_on_the_content(spec):
    task = load_tasks(spec)[0]
    assert predicted_side(task, 0, 30) >= max(task.test[0].output.shape)


def _caps_benchmark():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bucket_caps.py"
    spec = importlib.util.spec_from_file_location("bucket_caps", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_caps_benchmark_counts_outputs_larger_than_their_canvas():
    from augment.tasks import Pair, Task

    bench = _caps_benchmark()
    grid = lambda n: np.zeros((n, n), np.uint8)  # noqa: E731
    tasks = [Task("a", (Pair(grid(2), grid(2)),), (Pair(grid(3), grid(3)), Pair(grid(3), grid(12)))),
             Task("b", (Pair(grid(2), grid(2)),), (Pair(grid(3), grid(10)), Pair(grid(3), None)))]
    count = bench.count_caps(tasks, lambda task, i, canvas: 10, canvas=30, flops=lambda side: side * side)
    assert count.outputs == 3 and count.capped == ["a/1"] and count.filled == 1
    assert count.sides == {10: 3} and count.flops_share == pytest.approx(100 / 900)
    # A 7-wide grid filling its pair in bucket 10 touches the edge at 6 of the 24 full-canvas offsets.
    assert bench.touch_probability(7, 7, 10, 30) == pytest.approx(6 / 24)
    assert bench.touch_probability(7, 7, 30, 30) == pytest.approx(1 / 24) and bench.touch_probability(5, 7, 10, 30) == 0
    # The old rule capped the three named tasks' outputs; the shipped one caps none of them.
    named = load_tasks("arc-agi-1:training/91413438")
    assert bench.count_caps(named, bench.rule_before, flops=float).capped == ["91413438/0"]
    assert bench.count_caps(named, predicted_side, flops=float).capped == []


def test_bucket_batches_are_the_full_canvas_crop_at_the_moved_offsets(mixed_build):
    built = BuiltSet.open(mixed_build)
    sides = built.pair_sides()
    assert set(sides.tolist()) == {10, 15}
    for side in (10, 15):
        for g, examples in enumerate(built.group_examples(side)):
            rows = np.full(len(examples), built.groups[g].stop - 1)  # an augmented version
            inputs, labels = built.train_batch(rows, examples, side)
            full_in, full_out = built.train_batch(rows, examples)
            assert inputs.shape == (len(examples), side * side)
            for b in range(len(examples)):
                # Same grid (same augmentation), moved: find it via the colour cells of both canvases.
                got = inputs[b].reshape(side, side)
                ref = full_in[b].reshape(15, 15)
                grid = lambda c: c[np.ix_((c >= 2).any(1), (c >= 2).any(0))]  # noqa: E731
                np.testing.assert_array_equal(grid(got), grid(ref))
                r0, c0 = np.argwhere(got >= 2).min(0)
                h, w = grid(got).shape
                expect = encode_grid(grid(got) - 2, 15, (r0, c0)).reshape(15, 15)[:side, :side]
                np.testing.assert_array_equal(got, expect)
                assert labels[b].reshape(side, side).max() >= 2


def test_positions_keep_the_full_canvas_row_stride():
    cfg = ModelConfig(hidden_size=16, num_heads=2, puzzle_emb_len=2, seq_len=36, num_puzzle_ids=3,
                      forward_dtype="float32")
    model = TRM(cfg)
    assert model.positions(36, torch.device("cpu")) is None
    pos = model.positions(9, torch.device("cpu")).tolist()
    assert pos == [0, 1] + [2 + r * 6 + c for r in range(3) for c in range(3)]
    batch = Batch(torch.full((2, 9), 3, dtype=torch.int32), torch.full((2, 9), 3), torch.ones(2, dtype=torch.int32))
    out = model(model.initial_carry(batch), batch)
    assert out.logits.shape == (2, 9, cfg.vocab_size) and out.carry.y.shape == (2, 11, 16)


def test_bucket_sampler_follows_the_remaining_work_and_resumes(mixed_build):
    built = BuiltSet.open(mixed_build)
    a, b = BucketSampler.for_built(built, 3), BucketSampler.for_built(built, 3)
    seen = {10: 0, 15: 0}
    for _ in range(40):
        draw = a.next_batch(8)
        seen[draw.side] += 1
        pairs = built._ram("task_index")[built._ram("row_task")[draw.rows], 2] + draw.examples
        assert (built.pair_sides()[pairs] == draw.side).all()  # every example of the batch is of its bucket
    total = {s: int(sub.sizes.sum()) for s, sub in a.samplers.items()}
    # Over many batches each bucket's share follows its share of the examples.
    assert abs(seen[10] / 40 - total[10] / sum(total.values())) < 0.3
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for _ in range(5):
        x, y = a.next_batch(8), b.next_batch(8)
        assert x.side == y.side and (x.rows == y.rows).all() and (x.examples == y.examples).all()


def bucket_train_args(build: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "--tasks", MIXED_TASKS, "--preset", "cpu-quick", "--build", str(build), "--out", str(out),
            "--no-progress", *sets(MIXED + [f"train.max_steps={steps}", "train.checkpoint_every=1000"]), *extra]


@pytest.mark.slow
def test_bucketed_resume_is_exact_and_saves_a_carry_per_bucket(tmp_path, mixed_build):
    assert_ok(run_cli(*bucket_train_args(mixed_build, tmp_path / "straight", 8)))
    assert_ok(run_cli(*bucket_train_args(mixed_build, tmp_path / "resumed", 8, "--stop-at", "4")))
    assert_ok(run_cli(*bucket_train_args(mixed_build, tmp_path / "resumed", 8, "--resume")))
    a, b = final_state(tmp_path / "straight"), final_state(tmp_path / "resumed")
    for part in ("model", "ema"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after resume"
    assert a["sampler"] == b["sampler"] and set(a["sampler"]["buckets"]) == {"10", "15"}
    carry = torch.load(next((tmp_path / "straight" / "checkpoints").glob("step_*/carry_rank0.pt")),
                       weights_only=True)
    assert carry["10.y"].shape[1] == 2 + 100 and carry["15.y"].shape[1] == 2 + 225


@pytest.mark.slow
def test_bucketed_two_gloo_processes_match_one_then_resume_on_one(tmp_path, mixed_build):
    assert_ok(run_cli(*bucket_train_args(mixed_build, tmp_path / "one", 6)))
    two = run_cli("--standalone", "--nproc_per_node", "2", "-m", "arc_trm.cli",
                  *bucket_train_args(mixed_build, tmp_path / "two", 6, "--stop-at", "3"),
                  module=["-m", "torch.distributed.run"])
    assert_ok(two)
    resumed = run_cli(*bucket_train_args(mixed_build, tmp_path / "two", 6, "--resume"))
    assert_ok(resumed)
    assert "another local batch size" in resumed.stdout  # the per-rank carries restart, with one line
    straight = run_cli("--standalone", "--nproc_per_node", "2", "-m", "arc_trm.cli",
                       *bucket_train_args(mixed_build, tmp_path / "two_straight", 3), module=["-m", "torch.distributed.run"])
    assert_ok(straight)
    one3 = run_cli(*bucket_train_args(mixed_build, tmp_path / "one3", 3))
    assert_ok(one3)
    a, b = final_state(tmp_path / "one3"), final_state(tmp_path / "two_straight")
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_predict_and_ttt_with_buckets(tmp_path, mixed_build):
    run = tmp_path / "run"
    assert_ok(run_cli(*bucket_train_args(mixed_build, run, 4)))
    sub = tmp_path / "sub.json"
    assert_ok(run_cli("predict", "--checkpoint", run, "--tasks", MIXED_TASKS, "--out", sub, "--no-progress"))
    submission = json.loads(sub.read_text())
    assert set(submission) == {"2dc579da", "3ac3eb23", "54d82841"}
    ttt = run_cli("ttt", "--tasks", MIXED_TASKS, "--budget", "40s", "--out", tmp_path / "ttt", "--no-progress",
                  *sets(MIXED + ["train.eval_every=0"]))
    assert_ok(ttt)
    assert json.loads((tmp_path / "ttt" / "submission.json").read_text()).keys() == submission.keys()


def test_resuming_a_bucketed_run_without_bucketing_is_one_line(tmp_path, mixed_build):
    run = tmp_path / "run"
    assert cli_in_process(*bucket_train_args(mixed_build, run, 2)).returncode == 0
    proc = cli_in_process(*bucket_train_args(mixed_build, run, 4, "--resume", "--set", "data.bucketing=false"))
    assert proc.returncode == 2, proc.stderr
    assert "data.bucketing=true" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert final_state(run)["step"] == 2  # the checkpoint was left alone
