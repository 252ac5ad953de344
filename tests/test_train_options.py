"""The reference's behaviours behind options (constant EMA rate, dropping an epoch's last incomplete
batch, cosine-with-warmup), and evaluation during a compiled run using the EMA weights."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

import arc_trm.train as train_module
from arc_trm.common import CompiledOrEager
from arc_trm.data import GroupSampler, host_batch, make_sampler
from arc_trm.model import TRM
from arc_trm.train import TrainOptions, build_model, ema_rate_at, lr_at, train
from augment.store import BuiltSet
from augment.errors import InputError

from conftest import cli_in_process, tiny_config
from test_train import final_state


# ----------------------------------------------------------------------------------------------
# lr_min_ratio: the reference's cosine_schedule_with_warmup_lr_lambda (pretrain.py)


def reference_lr(current_step, *, base_lr, num_warmup_steps, num_training_steps, min_ratio=0.0, num_cycles=0.5):
    if current_step < num_warmup_steps:
        return base_lr * float(current_step) / float(max(1, num_warmup_steps))
    progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    return base_lr * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * float(num_cycles)
                                                                                    * 2.0 * progress))))


@pytest.mark.parametrize("min_ratio", [0.0, 0.1, 0.5, 1.0])
def test_lr_schedule_is_the_references(min_ratio):
    for step in range(1, 70):  # the reference increments its step before the rate: steps count from 1
        expected = reference_lr(step, base_lr=1e-4, num_warmup_steps=7, num_training_steps=60, min_ratio=min_ratio)
        assert lr_at(step, 1e-4, 7, 60, min_ratio) == expected, step
    assert lr_at(60, 1e-4, 7, 60, min_ratio) == pytest.approx(1e-4 * min_ratio)
    # 1.0, the default: linear warmup then constant, as before the option existed.
    assert lr_at(3, 1e-4, 7, 60) == pytest.approx(1e-4 * 3 / 7) and lr_at(10**6, 1e-4, 7, 60) == 1e-4


def test_the_loop_runs_the_cosine_and_the_constant_ema_rate(tmp_path, small_build):
    """lr_min_ratio=0 logs the reference's rates; ema_warmup=false averages at the constant rate
    from the first step: ema_1 = r init + (1 - r) w_1, ema_2 = r ema_1 + (1 - r) w_2."""
    built = BuiltSet.open(small_build)
    cfg = tiny_config("train.max_steps=6", "train.lr_warmup_steps=2", "train.lr_min_ratio=0",
                      "train.ema_warmup=false", "train.ema_rate=0.9", "train.checkpoint_every=1")
    run = tmp_path / "run"
    init = build_model(cfg, built.num_identifiers, torch.device("cpu")).state_dict()
    train(cfg, run, TrainOptions(stop_at=1, progress=False, built=built))
    first = final_state(run)
    train(cfg, run, TrainOptions(resume=True, stop_at=2, progress=False, built=built))
    second = final_state(run)
    r = 0.9
    for name, ema1 in first["ema"].items():
        torch.testing.assert_close(ema1, r * init[name] + (1 - r) * first["model"][name], rtol=0, atol=1e-7)
        torch.testing.assert_close(second["ema"][name], r * ema1 + (1 - r) * second["model"][name],
                                   rtol=0, atol=1e-7)
    assert ema_rate_at(1, r) != r and ema_rate_at(1, r, warmup=False) == ema_rate_at(10**6, r) == r

    train(cfg, run, TrainOptions(resume=True, progress=False, built=built))
    logged = {x["step"]: x["lr"] for x in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    assert sorted(logged) == [1, 2, 3, 4, 5, 6]
    for step, lr in logged.items():
        assert lr == reference_lr(step, base_lr=cfg.train.lr, num_warmup_steps=2, num_training_steps=6, min_ratio=0.0)


# ----------------------------------------------------------------------------------------------
# drop_last: the reference's PuzzleDataset._iter_train / _sample_batch epoch boundary


def reference_batches(rng, starts, ends, num_examples, batch_size, count, drop_last):
    """The reference's rule, drawing from one generator in the same order as GroupSampler: each
    epoch permutes the groups; a batch takes a random puzzle of each group in turn and up to the
    batch's remaining room of its examples. With drop_last an epoch's incomplete last batch is
    dropped (`if global_effective_batch_size < global_batch_size: break`); without it the batch
    runs on into the next epoch."""
    out, rows, examples, size, epoch = [], [], [], 0, 0
    while len(out) < count:
        order, i = rng.permutation(len(starts)), 0
        epoch += 1
        if drop_last:
            rows, examples, size = [], [], 0
        while i < len(order):
            while i < len(order) and size < batch_size:
                g = order[i]
                row = int(rng.integers(starts[g], ends[g]))
                i += 1
                take = min(int(num_examples[row]), batch_size - size)
                examples.append(rng.choice(int(num_examples[row]), take, replace=False))
                rows.append(np.full(take, row))
                size += take
            if size < batch_size:
                break
            out.append((np.concatenate(rows), np.concatenate(examples), epoch))
            rows, examples, size = [], [], 0
    return out[:count]


@pytest.mark.parametrize("drop_last", [True, False])
def test_drop_last_is_the_references_epoch_boundary(drop_last):
    starts, ends = np.array([0, 2, 3, 6]), np.array([2, 3, 6, 8])
    num_examples = np.array([3, 3, 2, 4, 4, 4, 1, 1])  # an epoch holds 3 + 2 + 4 + 1 = 10 examples
    sampler = GroupSampler(starts, ends, num_examples, np.random.default_rng(7), side=6, drop_last=drop_last)
    expected = reference_batches(np.random.default_rng(7), starts, ends, num_examples, 4, 12, drop_last)
    for i, (rows, examples, epoch) in enumerate(expected):
        draw = sampler.next_batch(4)
        assert np.array_equal(draw.rows, rows) and np.array_equal(draw.examples, examples), f"batch {i}"
        assert sampler.epoch == epoch, f"batch {i}"
    if drop_last:  # an epoch smaller than a batch would never yield one: refused in one line
        with pytest.raises(InputError, match="fewer than one batch"):
            GroupSampler(starts, ends, num_examples, np.random.default_rng(7), side=6, drop_last=True).next_batch(11)


def test_drop_last_with_an_epoch_smaller_than_a_batch_is_refused_before_the_run_folder(tmp_path, small_build):
    """The refusal came at the first batch, after config.json and metrics.jsonl were written: the
    corrected command then met "already holds a run"."""
    from conftest import SMALL_TASKS, TINY, sets

    out = tmp_path / "run"
    args = ["train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--build", small_build, "--out", out,
            "--no-progress", *sets(TINY + ["train.max_steps=1"])]
    res = cli_in_process(*args, "--set", "train.drop_last=true", "--set", "train.global_batch_size=4096")
    assert res.returncode == 2 and "fewer than one batch of 4096" in res.stderr.strip().splitlines()[-1]
    assert not (out / "config.json").exists() and not (out / "metrics.jsonl").exists()
    assert cli_in_process(*args).returncode == 0


def test_eval_every_without_a_test_split_says_nothing_is_evaluated(tmp_path):
    """train.eval_every on tasks that all train evaluated nothing, without a word."""
    from conftest import TINY, sets

    res = cli_in_process("train", "--tasks", "arc-agi-1:training/3c9b0459", "--preset", "cpu-quick",
                         "--out", tmp_path / "run", "--build", tmp_path / "b", "--no-progress",
                         *sets(TINY + ["train.max_steps=2", "train.eval_every=1"]))
    assert res.returncode == 0, res.stderr
    assert "warning: train.eval_every=1: the tasks have no test split, so nothing is evaluated" in res.stderr
    assert not any("eval_" in line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())


def test_drop_last_reaches_the_samplers(small_build):
    built = BuiltSet.open(small_build)
    assert make_sampler(built, 0, False, drop_last=True).drop_last
    assert all(s.drop_last for s in make_sampler(built, 0, True, drop_last=True).samplers.values())
    assert not make_sampler(built, 0, False).drop_last


# ----------------------------------------------------------------------------------------------
# Evaluation during a compiled run


def test_evaluation_in_a_compiled_run_computes_with_the_ema_weights(tmp_path, small_build, monkeypatch):
    """train.compile=on (eager backend on CPU): the model evaluate_built receives must compute with
    the EMA weights. A deep copy of the compiled model would hold the EMA weights in its state
    dict but run the training model's compiled `step`, and so the raw weights."""
    built = BuiltSet.open(small_build)
    compiled, evaluated = [], []

    class Recording(CompiledOrEager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            compiled.append(self)

    real = train_module.evaluate_built

    def spy(model, *args, **kwargs):
        evaluated.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(train_module, "CompiledOrEager", Recording)
    monkeypatch.setattr(train_module, "evaluate_built", spy)
    cfg = tiny_config("train.max_steps=2", "train.eval_every=2", "train.eval_views=2", "train.compile=on",
                      "train.compile_backend=eager", "train.ema_rate=0.5")
    train(cfg, tmp_path / "run", TrainOptions(progress=False, built=built))
    assert len(compiled) == 1 and not compiled[0].failed  # the training step did run compiled
    assert len(evaluated) == 1
    state = final_state(tmp_path / "run")  # the checkpoint of step 2, the step evaluated

    def outputs(model: TRM) -> torch.Tensor:
        model.eval()
        sampler = make_sampler(built, 0, False)
        draw = sampler.next_batch(8)
        batch = host_batch(*built.train_batch(draw.rows, draw.examples, draw.side), draw.rows)
        with torch.no_grad():
            return model(model.initial_carry(batch), batch).logits

    def fresh(weights: dict) -> TRM:
        model = TRM(cfg.model)
        model.load_state_dict({**state["model"], **weights})
        return model

    got = outputs(evaluated[0])
    assert torch.equal(got, outputs(fresh(state["ema"])))
    assert not torch.allclose(got, outputs(fresh({})), atol=1e-4)  # the raw weights answer otherwise


# ----------------------------------------------------------------------------------------------
# A deadline stop before the first step resumes exactly


def test_a_deadline_stop_before_the_first_step_resumes_bit_identically(tmp_path, small_build):
    """The step-0 checkpoint of a deadline stop holds the untouched sampler (the prefetch thread had
    not yet drawn when its state was read), so the resumed run is the uninterrupted one."""
    built = BuiltSet.open(small_build)
    cfg = tiny_config("train.max_steps=4", "train.checkpoint_every=1000")
    train(cfg, tmp_path / "straight", TrainOptions(progress=False, built=built))
    stopped = train(cfg, tmp_path / "resumed", TrainOptions(progress=False, built=built, deadline=time.time() - 1))
    assert stopped.steps == 0
    assert final_state(tmp_path / "resumed")["sampler"] == make_sampler(built, cfg.train.seed, False).state_dict()
    train(cfg, tmp_path / "resumed", TrainOptions(resume=True, progress=False, built=built))
    a, b = final_state(tmp_path / "straight"), final_state(tmp_path / "resumed")
    assert a["step"] == b["step"] == 4 and a["sampler"] == b["sampler"]
    for part in ("model", "ema"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after resume"


def test_train_s_deadline_sets_the_first_step_aside(tmp_path, small_build, monkeypatch):
    """train() handed the deadline check twice a running mean that started from the first step (a
    compile on a GPU, here a 2 s sleep), so for tens of steps it asked for about 4 s where a step
    takes a fraction of one. The check before each step records what it was asked for."""
    built = BuiltSet.open(small_build)
    cfg = tiny_config("train.max_steps=4", "train.checkpoint_every=1000")
    asked: list[float] = []
    check = train_module.stop_reason
    monkeypatch.setattr(train_module, "stop_reason", lambda deadline, needed, *a, **k: (
        asked.append(needed), check(deadline, needed, *a, **k))[1])
    step, calls = train_module.train_step, []
    monkeypatch.setattr(train_module, "train_step", lambda *a, **k: (
        calls.append(0), time.sleep(2.0 if len(calls) == 1 else 0.0), step(*a, **k))[2])
    result = train(cfg, tmp_path / "run", TrainOptions(progress=False, built=built, deadline=time.time() + 3600))
    assert result.steps == 4 and len(asked) == 4
    assert asked[1] >= 4.0  # after the first step, its time is all there is
    assert max(asked[2:]) < 2.0, asked  # after the second, the first is set aside
    assert result.step_s < 1.0


def test_a_preset_given_with_resume_draws_no_warning_about_a_config_not_used(tiny_run):
    """`train --resume --preset paper` warned that paper is slow on a CPU, then used the run's
    saved config (as --resume's help now says). A line saying the preset is ignored was tried, but
    a resume refused later (another data.bucketing) then gave two lines, not one."""
    proc = cli_in_process("train", "--out", tiny_run, "--resume", "--preset", "paper", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("warning")], proc.stderr


def test_optimiser_settings_given_at_resume_are_used(tmp_path, small_build):
    """The resumed optimiser's loaded param groups kept the saved weight decay and betas, though
    the run's config recorded the new ones (only lr is set each step)."""
    built = BuiltSet.open(small_build)
    run = tmp_path / "run"
    train(tiny_config("train.max_steps=3"), run, TrainOptions(stop_at=1, progress=False, built=built))
    cfg = tiny_config("train.max_steps=3", "train.weight_decay=0.5", "train.beta1=0.5", "train.beta2=0.8")
    train(cfg, run, TrainOptions(resume=True, progress=False, built=built))
    groups = final_state(run)["optim"]["param_groups"]
    assert final_state(run)["step"] == 3
    assert [(g["weight_decay"], tuple(g["betas"])) for g in groups] == [(0.5, (0.5, 0.8))] * len(groups)


def test_an_ema_turned_on_at_resume_starts_from_the_restored_weights(tmp_path, small_build):
    """It started from the fresh model's initial weights: the checkpoint had no EMA to restore."""
    built = BuiltSet.open(small_build)
    run = tmp_path / "run"
    train(tiny_config("train.max_steps=3", "train.ema_rate=0"), run,
          TrainOptions(stop_at=1, progress=False, built=built))
    first = final_state(run)
    assert first["ema"] is None
    cfg = tiny_config("train.max_steps=3", "train.ema_rate=0.9", "train.ema_warmup=false")
    train(cfg, run, TrainOptions(resume=True, stop_at=2, progress=False, built=built))
    second = final_state(run)
    for name, ema in second["ema"].items():
        torch.testing.assert_close(ema, 0.9 * first["model"][name] + 0.1 * second["model"][name], rtol=0, atol=1e-7)
