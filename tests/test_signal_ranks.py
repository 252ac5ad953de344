"""Under torchrun a signal ends every rank with the same code and one line. Each test starts two
real CPU (gloo) ranks under torchrun and sends a real signal at one exact point of their run
(tests/signal_at.py): to every rank, as a Ctrl-C that torchrun forwards to each, or to one rank."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from conftest import SMALL_TASKS, TINY, run_cli, sets
from test_signal_points import stop_lines

HOOK = Path(__file__).with_name("signal_at.py")
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
LAUNCHER = "torchrun --nproc_per_node 2 -m arc_trm.cli"


def signalled_ranks(target: str, signum: int, rank: int | None, *args: str | Path) -> subprocess.CompletedProcess:
    """`arc-trm ARGS` on two torchrun ranks; `signum` at the first call of `target` on `rank` (None: each)."""
    env = {"SIGNAL_AT_RANK": str(rank)} if rank is not None else {}
    proc = run_cli(*args, module=[*TORCHRUN, str(HOOK), target, "1", signal.Signals(signum).name], env=env)
    sent = proc.stderr.count(f"signal_at: {signal.Signals(signum).name} at call 1 of {target}")
    assert sent == (2 if rank is None else 1), proc.stderr
    return proc


def one_line_on_agreeing_ranks(proc: subprocess.CompletedProcess, signum: int, starts: str) -> str:
    """Both ranks exited 128 + signum (signal_at reports each), and one line was said, no traceback."""
    for rank in (0, 1):
        assert f"signal_at: rank {rank} exits {128 + signum}" in proc.stderr, proc.stderr
    assert "[rank" not in proc.stderr, proc.stderr  # torch's prefix of a rank's uncaught exception
    lines = stop_lines(proc.stderr, signum)
    assert len(lines) == 1 and lines[0].startswith(starts), proc.stderr
    return lines[0]


def train_args(build: Path, run: Path) -> list[str]:
    return ["train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--build", str(build), "--out", str(run),
            "--no-progress", *sets(TINY + ["train.max_steps=2", "train.checkpoint_every=1000"])]


@pytest.mark.slow
@pytest.mark.parametrize("signum, rank", [(signal.SIGTERM, 1), (signal.SIGINT, None)], ids=["rank-1", "every-rank"])
def test_a_signal_in_the_last_step_under_torchrun_ends_every_rank_with_its_code_and_one_line(
        tmp_path, small_build, signum, rank):
    """Before: a SIGTERM to rank 1 in the last step (after the loop's last check) exited rank 1 with
    143 and rank 0 with 0 (or torchrun killed it); a Ctrl-C, which reaches every rank, gave the line
    once per rank. The run is whole (step 2 of 2): the line says so, with no command to continue."""
    run = tmp_path / "run"
    proc = signalled_ranks("arc_trm.train:save_checkpoint", signum, rank, *train_args(small_build, run))
    line = one_line_on_agreeing_ranks(proc, signum, f"{signal.Signals(signum).name}: received at the end; the "
                                                    f"training finished first: checkpoint "
                                                    f"{run / 'checkpoints' / 'step_0000002'}")
    assert "continue with" not in line


@pytest.mark.slow
def test_a_ctrl_c_in_the_build_under_torchrun_gives_one_line(tmp_path, small_build):
    """Before: every rank stopped at once and said the same line (two lines for two ranks)."""
    run = tmp_path / "run"
    proc = signalled_ranks("arc_trm.train:load_or_build", signal.SIGINT, None, *train_args(small_build, run))
    one_line_on_agreeing_ranks(proc, signal.SIGINT, f"SIGINT: stopped before training began (no checkpoint); "
                                                    f"continue with: {LAUNCHER} train --tasks")


@pytest.mark.slow
def test_a_signal_to_rank_1_alone_in_the_build_is_still_said(tmp_path, small_build):
    """Rank 0 has no signal to say: the rank that has it says its line (the first to get there)."""
    run = tmp_path / "run"
    proc = signalled_ranks("arc_trm.train:load_or_build", signal.SIGTERM, 1, *train_args(small_build, run))
    assert "signal_at: rank 1 exits 143" in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("SIGTERM: stopped before training began")]
    assert len(lines) == 1, proc.stderr


@pytest.mark.slow
def test_a_signal_to_rank_1_in_ttt_s_final_prediction_ends_both_ranks_alike(tmp_path):
    """Before: the prediction finished on both ranks, then rank 1 exited 143 with the line and rank 0 exited 0."""
    run = tmp_path / "run"
    args = ["ttt", "--tasks", SMALL_TASKS, "--budget", "300s", "--out", str(run), "--no-progress", "--preset",
            "cpu-quick", *sets(TINY + ["train.max_steps=2"])]
    proc = signalled_ranks("arc_trm.ttt_phases:predict_now", signal.SIGTERM, 1, *args)
    one_line_on_agreeing_ranks(proc, signal.SIGTERM, "SIGTERM: received at the end; the run (its final prediction "
                                                     f"included) finished first: submission {run / 'submission.json'}")
