"""Interrupts keep work: SIGINT and SIGTERM sent to a real `train` or `ttt` process finish the
step, checkpoint and print the command that continues; that command continues the run. Resume
says what it did; checks that need no build come before it."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from arc_trm.stopping import Interrupted, StopRequest
from submission.kaggle import load_submission, validate_submission
from submission.runfolder import latest_checkpoint
from augment.tasks import load_tasks

from conftest import SMALL_TASKS, TINY, cli_in_process, run_cli, sets, write_tiny_checkpoint

STEPS = 100  # far more than run before the signal lands (a tiny step takes ~30 ms)


def train_args(build: Path, out: Path) -> list[str]:
    return ["train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--build", str(build), "--out", str(out),
            "--no-progress", *sets(TINY + [f"train.max_steps={STEPS}", "train.checkpoint_every=1000"])]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "arc_trm.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True, start_new_session=True)


def interrupt_after_first_step(proc: subprocess.Popen, run: Path, signum: int) -> tuple[str, str]:
    """Send `signum` to the process once it has logged a training step; its (stdout, stderr)."""
    metrics = run / "metrics.jsonl"
    end = time.time() + 240
    while not (metrics.exists() and metrics.read_text().strip()):
        if proc.poll() is not None or time.time() > end:
            out, err = proc.communicate()
            pytest.fail(f"no step logged (exit {proc.returncode}):\n{out}\n{err}")
        time.sleep(0.02)
    proc.send_signal(signum)
    return proc.communicate(timeout=240)


def stopped(stderr: str, signum: int, run: Path) -> tuple[int, list[str]]:
    """The one stop line: its step (a checkpoint of that step exists) and the command it gives."""
    name = signal.Signals(signum).name
    lines = [line for line in stderr.splitlines() if "continue with:" in line]
    assert len(lines) == 1, stderr
    m = re.fullmatch(rf"{name}: stopped at step (\d+), checkpoint ([^,;]+)(, .*)?; continue with: (.+)", lines[0])
    assert m is not None, lines[0]
    step = int(m.group(1))
    assert Path(m.group(2)) == latest_checkpoint(run) and (Path(m.group(2)) / "state.pt").is_file()
    assert torch.load(Path(m.group(2)) / "state.pt", weights_only=True)["step"] == step
    command = shlex.split(m.group(4))
    assert command[-1] == "--resume", command
    return step, command[1:] if command[0] == "arc-trm" else command


def final_state(run: Path) -> dict:
    return torch.load(latest_checkpoint(run) / "state.pt", map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_ctrl_c_in_train_checkpoints_the_step_and_the_printed_command_continues_exactly(
        tmp_path, small_build, straight_run):
    """SIGINT here; SIGTERM goes to one torchrun worker and to ttt below."""
    run, signum = tmp_path / "run", signal.SIGINT
    proc = start(train_args(small_build, run))
    out, err = interrupt_after_first_step(proc, run, signum)
    assert proc.returncode == 128 + signum, err
    step, command = stopped(err, signum, run)
    assert 0 < step < STEPS
    assert "Traceback" not in err

    resumed = run_cli(*command)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {step} " in resumed.stdout
    a, b = final_state(straight_run), final_state(run)
    assert a["step"] == b["step"] == STEPS
    for part in ("model", "ema"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs from the uninterrupted run"
    assert a["sampler"] == b["sampler"]

    again = cli_in_process(*command)  # a run already at its last step says so
    assert again.returncode == 0, again.stderr
    assert f"nothing to train: {run} is already at step {STEPS}" in again.stdout
    assert f"checkpoint: {latest_checkpoint(run)}" in again.stdout and "trained to step" not in again.stdout


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, small_build) -> Path:
    run = tmp_path_factory.mktemp("straight") / "run"
    proc = run_cli(*train_args(small_build, run))
    assert proc.returncode == 0, proc.stderr
    return run


def worker_of_rank(launcher: int, rank: int) -> int:
    """The pid of torchrun's worker process of `rank` (Linux /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        if ppid == launcher and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    pytest.fail(f"no worker of rank {rank} under {launcher}")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds torchrun's workers through /proc")
@pytest.mark.slow
def test_under_torchrun_a_signal_to_one_rank_stops_every_rank_at_the_same_step(tmp_path, small_build, straight_run):
    run = tmp_path / "two"
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "arc_trm.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, *torchrun, *train_args(small_build, run)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True, start_new_session=True)
    metrics = run / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    os.kill(worker_of_rank(proc.pid, 1), signal.SIGTERM)  # the rank that does not print or write state.pt
    out, err = proc.communicate(timeout=240)
    step, _ = stopped(err, signal.SIGTERM, run)  # rank 0 stopped too, and said so
    assert 0 < step < STEPS
    assert (latest_checkpoint(run) / "carry_rank1.pt").is_file()  # both ranks wrote the same step's checkpoint
    launcher = "torchrun --nproc_per_node 2 -m arc_trm.cli"
    assert f"continue with: {launcher} train --out {run} --resume" in err

    resumed = run_cli("train", "--out", run, "--resume", "--no-progress", module=torchrun)
    assert resumed.returncode == 0, resumed.stderr
    a, b = final_state(straight_run), final_state(run)
    assert b["step"] == STEPS
    for name, tensor in a["model"].items():  # two processes reduce in another order than one: not bit-equal
        rel = (tensor - b["model"][name]).norm() / tensor.norm().clamp_min(1e-12)
        assert rel < 1e-5, f"{name}: relative error {rel:.2e}"


@pytest.mark.slow
def test_a_signal_to_ttt_keeps_the_submission_and_ttt_resume_continues(tmp_path):
    run = tmp_path / "ttt"
    proc = start(["ttt", "--tasks", SMALL_TASKS, "--budget", "90s", "--out", str(run), "--no-progress",
                  *sets(TINY + ["train.max_steps=40"])])
    out, err = interrupt_after_first_step(proc, run, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, out + err
    step, command = stopped(err, signal.SIGTERM, run)
    assert f"the best submission so far in {run / 'submission.json'}" in err
    tasks = load_tasks(SMALL_TASKS)
    validate_submission(load_submission(run / "submission.json"), tasks)
    assert command[0] == "ttt" and "--budget" in command and "--tasks" in command

    resumed = run_cli(*command, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from step {step} " in resumed.stdout and "keeping the submission" in resumed.stdout
    plan = json.loads((run / "ttt_plan.json").read_text())
    assert plan["steps"] == 40 and plan["stops"][-1] == 40  # train.max_steps caps the run, not the rest
    assert final_state(run)["step"] == 40
    validate_submission(load_submission(run / "submission.json"), tasks)
    assert json.loads((run / "submission.predict.json").read_text())["views"] > 0


def test_a_first_signal_waits_for_the_step_and_a_second_stops_at_once(monkeypatch):
    stop = StopRequest()
    with stop.installed():
        with pytest.raises(Interrupted):  # outside the polled loop (a build, a plan): at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        with stop.polled():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # a handler runs between bytecodes
            assert stop.name == "SIGINT"
            monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # as torchrun starts a worker
            os.kill(os.getpid(), signal.SIGTERM)  # torchrun's forward of a signal this worker had: still stopping
            time.sleep(0.1)
            assert stop.name == "SIGINT"
            monkeypatch.delenv("TORCHELASTIC_RUN_ID")
            for second in (signal.SIGTERM, signal.SIGINT):  # elsewhere a second signal of either kind
                with pytest.raises(Interrupted) as caught:
                    os.kill(os.getpid(), second)
                    time.sleep(1)
                assert caught.value.signum == second
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the previous handler is back


def test_a_broken_latest_checkpoint_is_skipped_with_a_warning_naming_both(tmp_path, capsys):
    run = tmp_path / "run"
    older = write_tiny_checkpoint(run, step=10)
    newer = write_tiny_checkpoint(run, step=20)
    (newer / "state.pt").unlink()  # a checkpoint cut short, say by a full disk
    assert latest_checkpoint(run) == older
    err = capsys.readouterr().err
    assert f"names {newer.name}, which is missing" in err and str(older) in err
    # predict reaches it through the same function
    proc = cli_in_process("predict", "--checkpoint", run, "--tasks", SMALL_TASKS, "--out", tmp_path / "s.json")
    assert f"names {newer.name}" in proc.stderr


def test_resume_checks_come_before_any_build(tmp_path):
    build = tmp_path / "build"
    proc = cli_in_process("train", "--out", tmp_path / "nowhere", "--resume", "--tasks", SMALL_TASKS,
                          "--build", build)
    assert proc.returncode == 2 and f"{tmp_path / 'nowhere'}: --resume given but there is no such run folder" in proc.stderr
    proc = cli_in_process("ttt", "--out", tmp_path / "nowhere", "--resume", "--tasks", SMALL_TASKS)
    assert proc.returncode == 2 and "--resume given but there is no such run folder" in proc.stderr

    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    other = "arc-agi-1:training/a85d4709@test"
    proc = cli_in_process("train", "--out", run, "--resume", "--tasks", other, "--build", build)
    assert proc.returncode == 2, proc.stderr
    assert f"the run was trained on {SMALL_TASKS}; you asked for {other}" in proc.stderr
    assert not build.exists()

    (run / "ttt_challenges.json").write_text(json.dumps({"aaaa0000": {}, "bbbb1111": {}}))
    proc = cli_in_process("ttt", "--out", run, "--resume", "--tasks", SMALL_TASKS, "--budget", "10s")
    assert proc.returncode == 2 and "was trained on 2 tasks (aaaa0000, bbbb1111); you asked for 3" in proc.stderr


def test_a_resumed_ttt_plan_counts_in_the_run_s_steps():
    from arc_trm.ttt_plan import Plan, resumed_plan

    plan = Plan(0.1, 0.1, 12, 1.0, 0.2, steps=100, freeze_steps=20, stops=[10, 20, 50, 80, 100], quick_stops=[20, 50])
    assert resumed_plan(plan, 0, 0) is plan
    moved = resumed_plan(plan, 30, 0)  # 100 more steps after step 30
    assert (moved.steps, moved.freeze_steps, moved.stops, moved.quick_stops) == (130, 50, [40, 50, 80, 110, 130],
                                                                                   [50, 80])
    capped = resumed_plan(plan, 30, 90)  # train.max_steps=90 caps the run: 60 more
    assert (capped.steps, capped.stops, capped.quick_stops) == (90, [40, 50, 80, 90], [50, 80])
    assert resumed_plan(plan, 90, 90).stops == []  # at the cap already: nothing to train


def break_latest(run: Path) -> Path:
    """A newer checkpoint cut short (no state.pt) that `latest` names, as a full disk can leave."""
    broken = run / "checkpoints" / "step_0009999"
    broken.mkdir()
    (run / "checkpoints" / "latest").write_text(broken.name)
    return broken


def broken_latest_warnings(proc: subprocess.CompletedProcess, broken: Path) -> list[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line for line in proc.stderr.splitlines() if f"names {broken.name}, which is missing" in line]


def test_a_broken_latest_warns_once_per_command_that_resumes(tmp_path, tiny_run, small_build):
    """ttt --resume looks the checkpoint up for its plan, then trains (or predicts) from it; train
    --resume restores it, then names it: each says so once."""
    broken = break_latest(tiny_run)
    proc = cli_in_process("train", "--out", tiny_run, "--resume", "--build", small_build, "--no-progress")
    assert f"nothing to train: {tiny_run} is already at step 3" in proc.stdout
    assert len(broken_latest_warnings(proc, broken)) == 1, proc.stderr

    run = tmp_path / "ttt"
    args = ["ttt", "--tasks", "arc-agi-1:training/3c9b0459@test", "--out", run, "--budget", "120s", "--no-progress",
            "--preset", "cpu-quick"]
    first = cli_in_process(*args, *sets(TINY + ["train.max_steps=2"]))
    assert first.returncode == 0, first.stderr
    broken = break_latest(run)
    done = cli_in_process(*args, "--resume", *sets(TINY + ["train.max_steps=2"]))  # no step left: predicts from it
    assert "submission updated" in done.stdout and len(broken_latest_warnings(done, broken)) == 1, done.stderr
    more = cli_in_process(*args, "--resume", *sets(TINY + ["train.max_steps=3"]))  # trains on from it
    assert "resumed from step 2 " in more.stdout and len(broken_latest_warnings(more, broken)) == 1, more.stderr
