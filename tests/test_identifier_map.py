"""The identifier map saved beside every checkpoint (identifiers.json): one content hash per task,
not per puzzle row (a published-size map has 1.2 M rows over about 1,000 tasks), and the older
per-row files still read the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arc_trm.checkpoint import load_checkpoint
from augment.errors import InputError
from augment.identifier_map import IdentifierMap
from augment.store import BuiltSet
from augment.task_hash import content_hash

from conftest import cli_in_process, write_tiny_checkpoint

ROWS = ["<blank>", "3c9b0459#0", "3c9b0459#1"]
AUGS = ["", "t0p0123456789", "t1p0123456789"]


def per_row(built: BuiltSet) -> list[str]:
    """The task hash of every row, as identifiers.json held it before: "" for row 0."""
    hashes = {t.id: content_hash(t) for t in built.tasks}
    return [""] + [hashes[i.rpartition("#")[0]] for i in built.identifiers[1:]]


def test_the_saved_map_holds_one_hash_per_task(small_build):
    built = BuiltSet.open(small_build)
    written = json.loads(json.dumps(built.identifier_map().to_json()))
    assert written["task_hashes"] == {t.id: content_hash(t) for t in built.tasks}
    assert len(written["identifiers"]) > 3 * len(written["task_hashes"])  # 5 rows a task and the blank


def test_an_old_per_row_file_loads_to_the_same_map(small_build, tmp_path):
    built = BuiltSet.open(small_build)
    new = built.identifier_map()
    old = {"identifiers": list(built.identifiers), "augmentations": built.augmentation_records(),
           "task_hashes": per_row(built)}
    assert IdentifierMap.from_json(old, tmp_path / "identifiers.json") == new
    assert IdentifierMap.from_json(json.loads(json.dumps(new.to_json())), tmp_path / "identifiers.json") == new
    assert all(new.row_key(r)[2] == old["task_hashes"][r] for r in range(len(old["identifiers"])))
    unrecorded = {k: v for k, v in old.items() if k != "task_hashes"}  # files from before hashes were kept
    assert IdentifierMap.from_json(unrecorded, tmp_path / "identifiers.json").task_hashes is None


def test_a_checkpoint_with_per_row_hashes_loads_per_task(tmp_path):
    run = write_tiny_checkpoint(tmp_path / "run", ids={"identifiers": ROWS, "augmentations": AUGS,
                                                      "task_hashes": ["", "h", "h"]})
    loaded = load_checkpoint(run).id_map
    assert loaded.task_hashes == {"3c9b0459": "h"} and loaded.row_key(2) == ("3c9b0459#1", AUGS[2], "h")


def test_rows_of_one_task_under_two_contents_are_refused_in_one_line(tmp_path):
    run = write_tiny_checkpoint(tmp_path / "run", ids={"identifiers": ROWS, "augmentations": AUGS,
                                                      "task_hashes": ["", "h", "other"]})
    with pytest.raises(InputError) as e:
        load_checkpoint(run)
    line = str(e.value)
    assert "\n" not in line and "identifiers.json" in line and "task 3c9b0459" in line, line
    proc = cli_in_process("predict", "--checkpoint", run, "--tasks", "arc-agi-1:training/3c9b0459@test",
                          "--out", tmp_path / "p.json", "--no-progress")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "task 3c9b0459" in proc.stderr, proc.stderr


@pytest.mark.parametrize("hashes, said", [({}, "no content hash for task 3c9b0459"),
                                          ({"3c9b0459": 5}, "expected a JSON object of task id -> hash"),
                                          (["", "h"], "2 task hashes for 3 rows")])
def test_a_damaged_hash_record_is_refused_in_one_line(hashes, said: str) -> None:
    with pytest.raises(InputError) as e:
        IdentifierMap.from_json({"identifiers": ROWS, "augmentations": AUGS, "task_hashes": hashes},
                                Path("ck/identifiers.json"))
    assert str(e.value).startswith("ck/identifiers.json: ") and said in str(e.value), str(e.value)


def test_first_difference_names_a_changed_task(small_build):
    built = BuiltSet.open(small_build)
    before = built.identifier_map()
    task = built.task_ids[1]
    after = IdentifierMap(before.identifiers, before.augmentations, {**before.task_hashes, task: "changed"})
    row = before.identifiers.index(f"{task}#0")
    assert before.first_difference(after) == f"row {row} ({task}#0): the task's content changed"
    assert before.first_difference(IdentifierMap(before.identifiers, before.augmentations, None)) is None


def test_rows_of_no_task_carry_no_hash():
    """Row 0 and a lean export's mean row name no task: they have no hash to store, and read as ""."""
    lean = IdentifierMap.from_json({"identifiers": ["<blank>", "<mean>"], "augmentations": ["", ""],
                                    "task_hashes": ["", ""]}, Path("lean/identifiers.json"))
    assert lean.task_hashes == {} and lean.row_key(1) == ("<mean>", "", "")
    task = IdentifierMap(["<blank>", "a#b#0", "a#b#1", "a#2"], [""] * 4, {"a#b": "h1", "a": "h2"})
    assert [task.row_key(r)[2] for r in range(4)] == ["", "h1", "h1", "h2"]  # the task id is up to the last '#'
