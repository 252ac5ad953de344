"""What `arc-trm build` may replace and which values it refuses in one line before any work
(augment/build.py, augment/build_cli.py, augment/options.py); train's --out apart from its --build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from augment.errors import InputError
from augment.tasks import load_tasks, split_ids
from conftest import SMALL_TASKS, TINY, cli_in_process, sets

BUILD = ["--augmentations", "2", "--canvas", "6", "--workers", "1", "--no-progress"]


def one_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder`, hidden ones (an `.old-` copy) included, with the contents of its files."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def build(out: Path, *options: str) -> None:
    proc = cli_in_process("build", "--tasks", SMALL_TASKS, "--out", out, *BUILD, *options)
    assert proc.returncode == 0, proc.stderr


def test_a_rebuild_never_deletes_what_else_the_folder_holds(tmp_path):
    """A rebuild over a build beside which the user put notes and a folder deleted both."""
    out = tmp_path / "by"
    build(out)
    (out / "mynotes.txt").write_text("my notes")
    (out / "sub").mkdir()
    (out / "sub" / "keep.txt").write_text("keep")
    before = tree(tmp_path)
    proc = cli_in_process("build", "--tasks", SMALL_TASKS, "--out", out, *BUILD, "--augmentations", "3")
    assert f"{out} exists and is not a build; refusing to replace it" in one_error_line(proc)
    assert tree(tmp_path) == before


def test_a_forced_build_never_replaces_a_folder_that_also_holds_a_run(tmp_path):
    """`build --force` over a build folder that also held a run deleted the run, with no .old- copy."""
    out = tmp_path / "by"
    build(out)
    (out / "config.json").write_text("{}")
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    (out / "checkpoints" / "step_0000001").mkdir(parents=True)
    before = tree(tmp_path)
    proc = cli_in_process("build", "--tasks", SMALL_TASKS, "--out", out, *BUILD, "--force")
    assert "is not a build; refusing to replace it" in one_error_line(proc)
    assert tree(tmp_path) == before


def test_a_forced_build_still_replaces_an_earlier_build_alone(tmp_path):
    out = tmp_path / "by"
    build(out)
    build(out, "--force", "--augmentations", "3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["by"]
    assert '"augmentations": 3' in (out / "metadata.json").read_text()


@pytest.mark.parametrize("where", ["same", "inside", "holds"])
def test_train_refuses_an_out_that_is_inside_or_holds_its_build_folder(where, tmp_path):
    """`train --out B --build B` was accepted: the run's files went into the build folder."""
    build_dir = tmp_path / "b"
    build(build_dir)
    out = {"same": build_dir, "inside": build_dir / "run", "holds": tmp_path}[where]
    before = tree(tmp_path)
    proc = cli_in_process("train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--out", out, "--build",
                          build_dir, "--no-progress")
    line = one_error_line(proc)
    assert f"--out {out} " in line and f"the --build folder {build_dir}: " in line
    assert tree(tmp_path) == before


@pytest.mark.parametrize("out", ["data/built", "data", "."])
def test_train_refuses_an_out_that_holds_the_default_build_folder(out, tmp_path, monkeypatch):
    """With no --build, `--out data/built` was accepted (the run's files among every cached build),
    and --force would then have moved all the builds aside with it."""
    monkeypatch.chdir(tmp_path)
    proc = cli_in_process("train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--out", out, "--no-progress",
                          *sets(TINY + ["train.max_steps=1"]))
    line = one_error_line(proc)
    assert line.startswith(f"arc-trm train: error: --out {out} holds the default build folder {tmp_path}/data/built/"), line
    assert tree(tmp_path) == {}


def test_train_refuses_a_build_folder_named_by_set_that_is_the_run_folder(tmp_path):
    """`--set data.build_dir=OUT` (applied after --build's check) built into the run folder."""
    out = tmp_path / "r3"
    proc = cli_in_process("train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--out", out, "--build",
                          tmp_path / "b", "--set", f"data.build_dir={out}", "--no-progress",
                          *sets(TINY + ["train.max_steps=1"]))  # before the fix it trained: keep that short
    assert f"--out {out} is the data.build_dir folder {out}: " in one_error_line(proc)
    assert tree(tmp_path) == {}


@pytest.mark.parametrize("spec", ["arc-agi-1:training/", "arc-agi-1:training/+", "arc-agi-1/"])
def test_a_task_selection_of_no_id_is_refused_not_read_as_all_tasks(spec, tmp_path):
    """`--tasks arc-agi-1:training/` built all 400 tasks."""
    with pytest.raises(InputError, match="names no task id after the '/'"):
        split_ids(spec)
    out = tmp_path / "out"
    proc = cli_in_process("build", "--tasks", spec, "--out", out, *BUILD)
    assert f"--tasks {spec!r} names no task id after the '/'" in one_error_line(proc)
    assert not out.exists()


def test_a_task_folder_with_a_trailing_slash_is_still_the_folder(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    for task in load_tasks(SMALL_TASKS):
        (folder / f"{task.id}.json").write_text(json.dumps(task.to_json()))
    assert split_ids(f"{folder}/") == (f"{folder}/", "")
    assert len(load_tasks(f"{folder}/")) == 3


@pytest.mark.parametrize("option, value, words", [
    ("--workers", "-2", "--workers must be at least 1 (leave it out for all cores), got -2"),
    ("--workers", "0", "--workers must be at least 1 (leave it out for all cores), got 0"),
    ("--max-tries", "0", "--max-tries must be at least 1, got 0"),
    ("--augmentations", "2903041", "--augmentations must be 1 (the identity version) to 2903040 (8 dihedral maps x "
                                   "9! colour permutations), got 2903041")])
def test_workers_tries_and_augmentations_out_of_range_are_refused_before_any_work(option, value, words, tmp_path):
    out = tmp_path / "out"
    proc = cli_in_process("build", "--tasks", SMALL_TASKS, "--out", out, *BUILD, option, value)
    assert one_error_line(proc) == f"arc-trm build: error: {words}"
    assert not out.exists()


def test_an_empty_out_is_refused_as_empty_not_read_as_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = cli_in_process("build", "--tasks", SMALL_TASKS, "--out", "", *BUILD)
    assert one_error_line(proc) == "arc-trm build: error: --out is empty; give a value"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out", [".", "./", ".."])
def test_an_out_holding_the_current_folder_is_refused(out, tmp_path, monkeypatch):
    """Before: `build --out .` from an empty folder staged its build inside it, then said ". exists
    and is not a build"; a build there would have left the shell in a removed folder."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    proc = cli_in_process("build", "--tasks", SMALL_TASKS, "--out", out, *BUILD)
    assert one_error_line(proc) == (f"arc-trm build: error: {Path(out)}: holds the folder you are in, and a build "
                                    "replaces its folder whole: give a folder inside it or run from another folder")
    assert list(here.iterdir()) == []
