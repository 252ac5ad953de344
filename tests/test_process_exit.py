"""How a torchrun rank ends. Without the interpreter's finalization (augment.launch.exit_process):
a gloo worker thread that frees the last collective's tensors during finalization aborted ranks of
finished runs (SIGABRT, "terminate called without an active exception"; 1 CI run in 5). And with
one line when another rank has ended first (augment.launch.peer_gone), not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import run_cli

EXIT_SPY = """
import atexit
import os

atexit.register(lambda: os.write(1, b"exit handlers\\n"))


class Finalized:
    def __del__(self):  # module teardown, in the interpreter's finalization
        os.write(1, b"finalized\\n")


spy = Finalized()
"""


@pytest.mark.parametrize("world, finalized", [("1", True), ("2", False)])
def test_the_cli_entry_point_skips_finalization_under_torchrun_only(tmp_path, world, finalized):
    """`python -m arc_trm.cli` (and the console script, the same `entry`) exits through exit_process:
    its code kept, the exit handlers run, and the interpreter finalized only outside torchrun."""
    (tmp_path / "sitecustomize.py").write_text(EXIT_SPY)
    proc = run_cli("--version", env={"PYTHONPATH": str(tmp_path), "WORLD_SIZE": world})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("arc-trm ")
    assert "exit handlers" in proc.stdout and ("finalized" in proc.stdout) == finalized, proc.stdout
    unknown = run_cli("no-such-command", env={"PYTHONPATH": str(tmp_path), "WORLD_SIZE": world})
    assert unknown.returncode == 2 and "unknown command" in unknown.stderr


RANK_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    from augment.launch import exit_process

    def agree() -> int:  # the tensor is Python's; gloo's worker thread frees its own reference late
        flag = torch.tensor([float(dist.get_rank())])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    dist.init_process_group("gloo")
    for _ in range(3):
        agree()
    (exit_process if sys.argv[1] == "exit_process" else sys.exit)(0)
""")


@pytest.mark.slow
def test_gloo_ranks_that_exit_right_after_a_collective_do_not_abort(tmp_path):
    """Two gloo ranks exit right after their collectives, three times. Through sys.exit, 2 of 3
    such runs aborted here (the worker thread's late free met the finalizing interpreter); through
    exit_process none may."""
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    for attempt in range(3):
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               str(script), "exit_process"], capture_output=True, text=True, timeout=240,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0 and "terminate called" not in proc.stderr, (attempt, proc.stderr[-3000:])



GLOO_PEER_GONE = ("[third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:7092. "
                  "This is typically caused by a remote worker crashing.")  # torch 2.13's words, verbatim


@pytest.mark.parametrize("world, error, said", [("2", GLOO_PEER_GONE, True), ("1", GLOO_PEER_GONE, False),
                                               ("2", "mat1 and mat2 shapes cannot be multiplied", False)])
def test_a_rank_whose_peer_has_ended_says_one_line_not_a_traceback(monkeypatch, world, error, said):
    """A torchrun rank whose collective fails because another rank ended (its own error or signal)
    printed gloo's traceback after the other rank's line. Any other error, or the same words
    outside torchrun, still raises: it is a defect to see whole."""
    import importlib

    from arc_trm.cli import COMMANDS
    from conftest import cli_in_process

    def run(args):
        raise RuntimeError(error)

    monkeypatch.setattr(importlib.import_module(COMMANDS["config"][0]), "run", run)
    monkeypatch.setenv("WORLD_SIZE", world)
    if not said:
        with pytest.raises(RuntimeError, match=error[:20].replace("[", r"\[")):
            cli_in_process("config")
        return
    proc = cli_in_process("config")
    assert proc.returncode == 1
    assert proc.stderr == ("arc-trm config: stopped: another process of this torchrun job has ended (Connection closed "
                           "by peer); its line says why\n")


@pytest.mark.slow
def test_ranks_that_built_their_set_exit_promptly_and_leave_nothing_behind(tmp_path):
    """Rank 0 builds the set with joblib's workers, which the interpreter stops in its threads' exit
    and then waits for. Skipping finalization skipped that: the workers were orphaned and their
    folders in /dev/shm left ("leaked folder objects"); running the exit handlers alone waited on
    workers never told to stop, and the run hung after its last line."""
    from conftest import SMALL_TASKS, TINY, sets

    proc = run_cli("train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--build", tmp_path / "fresh_build",
                   "--out", tmp_path / "run", "--no-progress", *sets(TINY + ["train.max_steps=2"]),
                   module=["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "arc_trm.cli"],
                   timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "step_0000002").is_dir()
    assert "leaked" not in proc.stderr and "terminate called" not in proc.stderr, proc.stderr[-3000:]
