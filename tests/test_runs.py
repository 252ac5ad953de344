"""Run folders: one run per folder (--force moves the old one aside), metrics cut back on resume,
and a run killed with SIGKILL five times ends bit-identical to one never interrupted."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from arc_trm.checkpoint import latest_checkpoint
from arc_trm.runs import claim_run_folder, truncate_metrics
from submission.runfolder import TTT_FILES
from augment.errors import InputError

from conftest import SMALL_TASKS, TINY, cli_in_process, run_cli, sets
from test_train import assert_ok, final_state, train_args


def train_steps(run: Path) -> list[int]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x["step"] for x in lines if "loss" in x]


@pytest.mark.slow
def test_a_second_run_into_a_run_folder_is_refused_and_force_moves_the_old_one_aside(tmp_path, small_build):
    run = tmp_path / "run"
    assert_ok(run_cli(*train_args(small_build, run, 2)))
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}

    again = run_cli(*train_args(small_build, run, 3))
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert "already holds a run" in again.stderr and "--resume" in again.stderr and "--force" in again.stderr
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

    both = run_cli(*train_args(small_build, run, 3, "--resume", "--force"))
    assert both.returncode == 2 and "Traceback" not in both.stderr

    forced = run_cli(*train_args(small_build, run, 3, "--force"))
    assert_ok(forced)
    [old] = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert f"aside to {old}" in forced.stdout
    # The old run is whole, where it was moved: nothing deleted, its `latest` names a checkpoint.
    assert {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()} == before
    assert final_state(old)["step"] == 2 and train_steps(old) == [1, 2]
    # The new run is alone in its folder.
    assert final_state(run)["step"] == 3 and train_steps(run) == [1, 2, 3]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_0000003"]


def test_ttt_refuses_an_out_folder_that_holds_a_run(tmp_path):
    out = tmp_path / "ttt"
    out.mkdir()
    (out / "submission.json").write_text('{"earlier": "run"}')
    proc = run_cli("ttt", "--tasks", SMALL_TASKS, "--budget", "5s", "--out", out, "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "already holds a run" in proc.stderr
    assert (out / "submission.json").read_text() == '{"earlier": "run"}'  # no fallback written over it
    # --force (the same helper ttt calls) moves it aside instead.
    moved = claim_run_folder(out, force=True, names=TTT_FILES)
    assert (moved / "submission.json").read_text() == '{"earlier": "run"}' and not out.exists()
    assert claim_run_folder(out, force=False, names=TTT_FILES) is None  # nothing there: free


def test_train_refuses_a_ttt_run_with_or_without_resume(tmp_path):
    """`train --out TTTRUN --resume` trained the ttt run on: its submission and plan then no longer
    matched its checkpoints (ttt refuses a train run; this is the mirror)."""
    out = tmp_path / "ttt"
    assert cli_in_process("ttt", "--tasks", SMALL_TASKS, "--budget", "1s", "--out", out, "--no-progress",
                          *sets(TINY)).returncode == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for extra in (["--resume"], ["--tasks", SMALL_TASKS, *sets(TINY)]):
        proc = cli_in_process("train", "--out", out, "--no-progress", *extra)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "holds a ttt run" in proc.stderr and f"arc-trm ttt --out {out} --resume" in proc.stderr, proc.stderr
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_claim_never_overwrites_an_earlier_aside_folder(tmp_path):
    names = []
    for _ in range(3):  # within one second: the timestamp repeats, the name must not
        run = tmp_path / "run"
        run.mkdir()
        (run / "config.json").write_text(str(len(names)))
        names.append(claim_run_folder(run, force=True))
    assert len(set(names)) == 3 and [(p / "config.json").read_text() for p in names] == ["0", "1", "2"]
    with pytest.raises(InputError):
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "checkpoints").mkdir()
        claim_run_folder(tmp_path / "run", force=False)


def test_truncate_metrics_keeps_steps_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.9}, {"step": 2, "eval_pass@2": 0.5},
             {"step": 3, "loss": 0.8}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 4, "lo')  # cut by a kill
    assert truncate_metrics(path, 2) == 2
    assert [json.loads(x) for x in path.read_text().splitlines()] == lines[:3]
    assert truncate_metrics(path, 2) == 0 and truncate_metrics(tmp_path / "absent.jsonl", 2) == 0


def test_truncate_metrics_drops_lines_that_are_no_metrics_record(tmp_path):
    """Before: a line with "step": "a" (an edit, another tool's line) stopped `train --resume` with
    a ValueError traceback from int(), after the build; a list or a line without a step was kept,
    and `plot` then refused the file."""
    path = tmp_path / "metrics.jsonl"
    good = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.9}]
    path.write_text("".join(json.dumps(x) + "\n" for x in [good[0], {"step": "a"}, [1, 2], {"loss": 1}, {"step": True},
                                                            good[1]]))
    assert truncate_metrics(path, 2) == 4
    assert [json.loads(x) for x in path.read_text().splitlines()] == good


@pytest.mark.slow
def test_resume_cuts_metrics_back_to_the_checkpoint(tmp_path, small_build):
    run = tmp_path / "run"
    assert_ok(run_cli(*train_args(small_build, run, 6, "--stop-at", "4")))
    # A run killed after step 6 logged steps 5 and 6 (and half of 7) past its checkpoint at 4.
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 9.0}\n{"step": 6, "loss": 9.0}\n{"step": 7, "lo')
    assert_ok(run_cli(*train_args(small_build, run, 6, "--resume")))
    assert train_steps(run) == [1, 2, 3, 4, 5, 6]
    assert all(x.get("loss") != 9.0 for x in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()))


@pytest.mark.slow
def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_afresh(tmp_path, small_build):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')
    assert_ok(run_cli(*train_args(small_build, run, 2, "--resume")))
    assert final_state(run)["step"] == 2 and train_steps(run) == [1, 2]
    missing = run_cli(*train_args(small_build, tmp_path / "typo", 2, "--resume"))
    assert missing.returncode == 2 and "no such run folder" in missing.stderr


# ----------------------------------------------------------------------------------------------
# Fault injection


STEPS = 24


def fault_args(build: Path, out: Path, *extra: str) -> list[str]:
    return train_args(build, out, STEPS, "--set", "train.checkpoint_every=3", *extra)


def last_logged_step(run: Path) -> int:
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = [0]
    for line in lines:
        try:
            steps.append(int(json.loads(line)["step"]))
        except (ValueError, KeyError):
            pass  # a line being written
    return max(steps)


def run_until_killed(args: list[str], run: Path, at_step: int, delay: float) -> int:
    """Start training, SIGKILL it `delay` seconds after it logs step `at_step`; its exit status."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "arc_trm.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None and last_logged_step(run) < at_step:
            time.sleep(0.002)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read()
    return proc.returncode


@pytest.mark.slow
def test_five_sigkills_then_resume_end_bit_identical(tmp_path, small_build):
    rng = random.Random(10)
    moments = sorted(rng.sample(range(1, STEPS - 4), 5))  # logged step after which the kill comes
    delays = [rng.uniform(0.0, 0.03) for _ in moments]  # mid-step, mid-checkpoint, mid-log line
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert_ok(run_cli(*fault_args(small_build, straight)))

    kills = 0
    for i, (at, delay) in enumerate(zip(moments, delays)):
        status = run_until_killed(fault_args(small_build, killed, *(["--resume"] if i else [])), killed, at, delay)
        kills += status == -signal.SIGKILL
    assert kills == 5, f"only {kills} of 5 kills landed before the run ended"
    assert_ok(run_cli(*fault_args(small_build, killed, "--resume")))

    a, b = final_state(straight), final_state(killed)
    assert a["step"] == b["step"] == STEPS
    for part in ("model", "ema"):  # the model's state holds the puzzle table
        assert a[part].keys() == b[part].keys()
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after 5 kills"
    assert torch.equal(a["model"]["puzzle_table"], b["model"]["puzzle_table"])
    assert a["optim"]["param_groups"] == b["optim"]["param_groups"]
    for pid, st in a["optim"]["state"].items():
        for key, value in st.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optim"]["state"][pid][key])), \
                f"optimiser state {pid}.{key} differs after 5 kills"
    assert a["sampler"] == b["sampler"] and torch.equal(a["explore_rng"], b["explore_rng"])
    # The curve was cut back at every resume: each step logged once, with the same loss.
    assert train_steps(killed) == list(range(1, STEPS + 1))
    losses = lambda run: [x["loss"] for x in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]  # noqa: E731
    assert losses(straight) == losses(killed)
    assert latest_checkpoint(killed).name == f"step_{STEPS:07d}"


def test_train_force_into_the_folder_one_is_in_is_one_line_and_moves_nothing(tmp_path, monkeypatch):
    """`train --out . --force` from inside a run raised ValueError ("PosixPath('.') has an empty
    name") building the aside name; moving the folder the shell is in aside would strand it."""
    from conftest import write_tiny_checkpoint
    from submission.runfolder import aside_name

    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.chdir(run)
    r = cli_in_process("train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--out", ".", "--force",
                       "--build", tmp_path / "b", "--no-progress")  # not the default build, which `.` would hold
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "holds the folder you are in" in lines[0], r.stderr
    assert "--force" in lines[0] and "run from another folder" in lines[0], lines[0]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert aside_name(Path(".")).parent == tmp_path and aside_name(Path(".")).name.startswith("run.old-")
