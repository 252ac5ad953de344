"""Repeated "Run All" in the Kaggle notebook: each moves the last ttt run aside (ttt --force), and
every moved-aside run kept its checkpoints until /kaggle/working (20 GB) filled up.
`submission.runtime.prune_earlier_runs`, which the notebook calls before it starts ttt, removes the
checkpoints and builds of the runs moved aside before, keeps their submissions and logs, and touches
nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from submission import runtime as rt

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "kaggle_submission.ipynb"


def ttt_run(folder: Path, per_task: bool = False) -> Path:
    """A ttt run's files as ttt writes them: checkpoints and a build (bulky), its record, plan and answers."""
    owners = [folder / "tasks" / "abc", folder / "tasks" / "def"] if per_task else [folder]
    folder.mkdir(parents=True)
    (folder / "ttt_run.json").write_text(json.dumps({"checkpoint": None, "tasks": ["abc"]}))
    for owner in owners:
        (owner / "checkpoints" / "step_0000010").mkdir(parents=True)
        (owner / "checkpoints" / "step_0000010" / "state.pt").write_bytes(b"w" * 200_000)
        (owner / "build").mkdir()
        (owner / "build" / "grids.npy").write_bytes(b"g" * 100_000)
        (owner / "submission.json").write_text("{}")
        (owner / "metrics.jsonl").write_text('{"step": 1}\n')
        (owner / "ttt_plan.json").write_text("{}")
    return folder


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_only_the_checkpoints_and_builds_of_earlier_moved_aside_runs_go(tmp_path: Path) -> None:
    working, outside = tmp_path / "working", tmp_path / "elsewhere"
    run = ttt_run(working / "ttt_run")  # the last run: ttt --force moves it aside next, with its checkpoints
    older = ttt_run(working / "ttt_run.old-20260101-120000")
    per_task = ttt_run(working / "ttt_run.old-20260101-120000-2", per_task=True)
    kept = [ttt_run(working / "other.old-20260101-120000"),  # another run's asides
            ttt_run(working / "ttt_run.old-notes"),  # not a name --force gives
            ttt_run(outside / "target")]
    strange = working / "ttt_run.old-20260101-130000"  # the name, but no ttt run: someone's folder
    (strange / "checkpoints").mkdir(parents=True)
    (strange / "checkpoints" / "mine.txt").write_text("mine")
    (working / "ttt_run.old-20260101-140000").symlink_to(outside / "target")  # a link: never followed
    linked = ttt_run(working / "ttt_run.old-20260101-150000")
    for name in ("checkpoints", "build"):  # links inside an old run: left, with what they point to
        (linked / name).rename(linked / f"{name}-moved")
    (outside / "shared" / "checkpoints").mkdir(parents=True)
    (outside / "shared" / "checkpoints" / "state.pt").write_text("w")
    (linked / "checkpoints").symlink_to(outside / "shared" / "checkpoints")
    before = files_under(tmp_path)

    said: list[str] = []
    removed = rt.prune_earlier_runs(run, log=said.append)
    assert sorted(removed) == sorted([older / "checkpoints", older / "build",
                                      *(per_task / "tasks" / t / n for t in ("abc", "def") for n in ("checkpoints", "build"))])
    after = files_under(tmp_path)
    assert before - after == {f for f in before if f.startswith((f"working/{older.name}/", f"working/{per_task.name}/"))
                              and ("/checkpoints/" in f or "/build/" in f)}
    for old in (older, per_task / "tasks" / "abc"):  # answers, plan and log stay
        assert {p.name for p in old.iterdir()} >= {"submission.json", "metrics.jsonl", "ttt_plan.json"}
    assert (run / "checkpoints" / "step_0000010" / "state.pt").is_file() and all((k / "checkpoints").is_dir() for k in kept)
    assert (strange / "checkpoints" / "mine.txt").is_file() and (outside / "shared" / "checkpoints" / "state.pt").is_file()
    assert said == [f"removed the checkpoints and builds of 2 earlier runs ({older.name}, {per_task.name}): "
                    "0.90 MB freed; their submissions and logs stay"]

    said.clear()  # nothing left to remove: nothing said
    assert rt.prune_earlier_runs(run, log=said.append) == [] and said == []
    assert rt.prune_earlier_runs(tmp_path / "no-such" / "ttt_run", log=said.append) == [] and said == []


def test_the_notebook_prunes_before_it_starts_ttt() -> None:
    code = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    cell = next(src for src in code if "run_watched(cmd" in src)
    assert "prune_earlier_runs(RUN)" in cell and cell.index("prune_earlier_runs(RUN)") < cell.index("run_watched(cmd")
