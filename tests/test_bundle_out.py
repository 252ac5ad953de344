"""`kaggle bundle --out` a run folder (train's or ttt's) is refused in one line naming it, before
any work, as `export --out` is: the bundle's dataset/ and kernel/ do not belong in a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import cli_in_process, write_tiny_checkpoint


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["train", "ttt", "ttt --per-task"])
def test_bundle_out_a_run_folder_is_refused_in_one_line(tmp_path: Path, kind: str) -> None:
    source = tmp_path / "source"
    write_tiny_checkpoint(source)
    run = tmp_path / "run"
    if kind == "train":
        write_tiny_checkpoint(run)
    else:  # what a ttt run holds before its first checkpoint
        (run / "tasks" if "per-task" in kind else run).mkdir(parents=True)
        (run / "ttt_run.json").write_text('{"checkpoint": null, "tasks": []}')
        (run / "submission.json").write_text("{}")
    before = files_under(tmp_path)
    proc = cli_in_process("kaggle", "bundle", "--checkpoint", source, "--out", run, "--no-download")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert f"--out {run} holds a run" in line, line
    assert files_under(tmp_path) == before and not (run / "dataset").exists() and not (run / "kernel").exists()
