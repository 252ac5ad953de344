"""Options of `arc-trm predict` that only work together are refused alone, in one line."""

from __future__ import annotations

from conftest import SMALL_TASKS, cli_in_process, write_tiny_checkpoint


def test_noise_without_trajectories_is_refused_in_one_line(tmp_path):
    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    args = ["predict", "--checkpoint", run, "--tasks", SMALL_TASKS, "--out", tmp_path / "s.json", "--no-progress"]
    bad = cli_in_process(*args, "--noise", "0.5")  # --trajectories defaults to 1: the noise would never be used
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "--trajectories" in lines[0], bad.stderr
    assert not (tmp_path / "s.json").exists()
    assert cli_in_process(*args, "--noise", "0.5", "--trajectories", "2", "--views", "1", "--max-steps", "1").returncode == 0
    assert (tmp_path / "s.json").exists()
