"""An output the machine refuses (a read-only or busy folder, a path under a file, a full disk) is
one line naming the path, from any command: the CLI entry turns an OSError that names a path into
that line (arc_trm.cli.os_error_line); one that names none stays a traceback, as a bug."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pytest

from arc_trm.cli import os_error_line
from conftest import SMALL_TASKS, cli_in_process, run_cli

ONE_TASK = "arc-agi-1:training/3c9b0459"

# Commands that write under --out, each run with OUT for its output path.
WRITERS = {
    "build": ["build", "--tasks", ONE_TASK, "--out", "OUT"],
    "show": ["show", "--tasks", "arc-agi-1:training", "3c9b0459", "--out", "OUT"],
    "kaggle": ["kaggle", "bundle", "--no-download", "--user", "me", "--out", "OUT"],
}


def assert_one_line(proc: subprocess.CompletedProcess, command: str, path: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"arc-trm {command}: error: "), proc.stderr
    assert path in lines[-1], proc.stderr


@pytest.mark.parametrize("command", WRITERS)
def test_an_out_under_a_file_is_one_line_naming_the_path(tmp_path, command):
    """NotADirectoryError / FileExistsError carry the path; no privileges needed to cause them."""
    (tmp_path / "f").write_text("a file, not a folder")
    argv = [str(tmp_path / "f" / "out") if a == "OUT" else a for a in WRITERS[command]]
    proc = run_cli(*argv, cwd=tmp_path)
    assert_one_line(proc, command, str(tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "a file, not a folder"


@pytest.fixture
def immutable_folder(tmp_path):
    """A folder no one may write in, root included (`chattr +i`: chmod does not stop root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("chattr +i is unavailable here (no e2fs tools, or not allowed)")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_out_folder_is_one_line(immutable_folder):
    proc = run_cli("build", "--tasks", SMALL_TASKS, "--out", immutable_folder / "b")
    assert_one_line(proc, "build", str(immutable_folder))
    assert list(immutable_folder.iterdir()) == []


def test_the_line_names_both_paths_of_a_rename():
    e = OSError(errno.EBUSY, "Device or resource busy", "a/.tmp", None, "a/out")
    assert os_error_line(e) == "a/.tmp -> a/out: Device or resource busy"


def test_a_full_disk_is_one_line_without_a_path():
    assert os_error_line(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"


def test_an_os_error_naming_no_path_stays_a_traceback(monkeypatch):
    """A socket's or a bad call's OSError is the code's to fix: it must not pass for bad input."""
    from augment import build_cli

    def broken(args):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(build_cli, "run", broken)
    with pytest.raises(OSError, match="Invalid argument"):
        cli_in_process("build", "--tasks", ONE_TASK, "--out", str(Path("unused")))
