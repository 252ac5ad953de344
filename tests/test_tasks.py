"""Task loading and validation (augment/tasks.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from augment.errors import InputError, TaskError
from augment.json_kind import json_kind
from augment.task_hash import content_hash, grid_hash, task_hash
from augment.specs import is_bundled
from augment.tasks import Reading, absolute_spec, load_source, load_tasks, safe_name, task_from_json
from conftest import CONCEPTARC, cli_in_process

GOOD = {"train": [{"input": [[1, 2], [3, 4]], "output": [[4, 3], [2, 1]]}], "test": [{"input": [[0, 1]]}]}


def write(path: Path, obj) -> Path:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def bad_task(**change):
    t = json.loads(json.dumps(GOOD))
    for k, v in change.items():
        t[k] = v
    return t


def test_good_task_loads(tmp_path):
    p = write(tmp_path / "x_challenges.json", {"abc": GOOD})
    write(tmp_path / "x_solutions.json", {"abc": [[[5, 6]]]})
    (task,) = load_source(str(p))
    assert task.id == "abc" and task.role == "train"
    assert task.train[0].input.dtype == np.uint8 and task.train[0].input.tolist() == [[1, 2], [3, 4]]
    assert task.test[0].output.tolist() == [[5, 6]]
    assert task.has_solutions


def test_without_solutions_file_outputs_are_hidden(tmp_path):
    p = write(tmp_path / "y_test_challenges.json", {"abc": GOOD})
    (task,) = load_source(str(p))
    assert task.test[0].output is None and not task.has_solutions
    assert task.role == "test"  # 'test' in the file name


@pytest.mark.parametrize("grid, fragment", [
    ([[1, 2], [3]], "ragged"),
    ([[0] * 31], "1 to 30"),
    ([[0]] * 31, "1 to 30"),
    ([[10]], "colours are integers 0-9"),
    ([[-1]], "colours are integers 0-9"),
    ([[1.0]], "colours are integers 0-9"),
    ([[True]], "colours are integers 0-9"),
    ([], "non-empty"),
    ([[]], "non-empty"),
    ("x", "non-empty"),
    ([[10 ** 400]], "is 100000000000000000...0000000000000000000; colours"),  # the cell in full was 400 digits
    ([["0123456789" * 30]], "is '012345678901...7890123456789'; colours"),
])
def test_bad_grid_names_file_task_and_example(tmp_path, grid, fragment):
    t = bad_task()
    t["train"].append({"input": [[1]], "output": grid})
    p = write(tmp_path / "c.json", {"t1": t})
    with pytest.raises(TaskError) as e:
        load_source(str(p))
    msg = str(e.value)
    assert fragment in msg
    assert str(p) in msg and "'t1'" in msg and "train[1].output" in msg
    assert "\n" not in msg


def test_bad_test_input_named(tmp_path):
    t = bad_task(test=[{"input": [[1]]}, {"input": [[1, 2], [1]]}])
    p = write(tmp_path / "c.json", {"t2": t})
    with pytest.raises(TaskError, match=r"test\[1\]\.input.*ragged"):
        load_source(str(p))


@pytest.mark.parametrize("change, fragment", [
    ({"train": []}, "'train' must be a non-empty list"),
    ({"test": []}, "'test' must be a non-empty list"),
    ({"train": [{"input": [[1]]}]}, "demonstration has no 'output'"),
    ({"test": [{"output": [[1]]}]}, "example must be an object with 'input'"),
])
def test_task_structure(tmp_path, change, fragment):
    p = write(tmp_path / "c.json", {"t3": bad_task(**change)})
    with pytest.raises(TaskError, match=fragment):
        load_source(str(p))


def test_a_null_demonstration_output_is_refused_and_skipped(tmp_path):
    """Before: `"output": null` in a demonstration passed validation (only a missing key was refused),
    and the build then crashed with a traceback, --skip-bad-tasks or not."""
    d = tmp_path / "f"
    d.mkdir()
    write(d / "good.json", GOOD)
    write(d / "nul.json", bad_task(train=[{"input": [[1]], "output": [[2]]}, {"input": [[1]], "output": None}]))
    with pytest.raises(TaskError) as e:
        load_tasks(str(d))
    assert str(e.value) == f"{d / 'nul.json'}: task 'nul': train[1]: demonstration has no 'output'"
    r = cli_in_process("build", "--tasks", d, "--out", tmp_path / "out", "--augmentations", "2", "--workers", "1",
                       "--no-progress", "--skip-bad-tasks")
    assert r.returncode == 0, r.stderr
    assert "skipping bad task" in r.stderr and "'nul'" in r.stderr and "1 skipped as invalid" in r.stdout
    # A test example's null output is a hidden answer, as before.
    write(d / "nul.json", bad_task(test=[{"input": [[1]], "output": None}]))
    assert load_tasks(f"{d}/nul")[0].test[0].output is None


def test_malformed_json(tmp_path):
    p = write(tmp_path / "c.json", '{"a": {"train": [}')
    with pytest.raises(TaskError) as e:
        load_source(str(p))
    assert "malformed JSON" in str(e.value) and str(p) in str(e.value)



def test_a_byte_order_mark_is_read_past_and_utf_16_is_named(tmp_path):
    """Before: a file saved by a Windows editor with a UTF-8 byte-order mark was refused with
    "Unexpected UTF-8 BOM (decode using utf-8-sig)", a hint for programmers, and a UTF-16 file
    (PowerShell 5's `>`) with "not UTF-8 text (invalid start byte)"."""
    p = tmp_path / "x_challenges.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps({"abc": GOOD}).encode())
    (tmp_path / "x_solutions.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({"abc": [[[5, 6]]]}).encode())
    (task,) = load_source(str(p))
    assert task.train[0].input.tolist() == [[1, 2], [3, 4]] and task.test[0].output.tolist() == [[5, 6]]
    p.write_text(json.dumps({"abc": GOOD}), encoding="utf-16")
    with pytest.raises(TaskError) as e:
        load_source(str(p))
    assert str(e.value) == f"{p}: task file is UTF-16 text; save it as UTF-8"


def test_json_nested_too_deeply_is_one_line(tmp_path):
    # Python's parser raised RecursionError (a traceback) on 100,000 open brackets.
    from augment.files import read_jsonl
    p = write(tmp_path / "deep.json", "[" * 100_000)
    with pytest.raises(TaskError, match="deep.json: .* nests its JSON too deeply"):
        load_source(str(p))
    p.write_text('{"step": 1}\n' + "[" * 100_000 + "\n")
    with pytest.raises(InputError, match="deep.json: line 2 of metrics nests its JSON too deeply"):
        read_jsonl(p, "metrics")

def test_a_task_id_named_twice_is_one_line_not_a_task_lost(tmp_path):
    """json kept the last of two tasks under one id: `built: 2 tasks kept`, one silently gone."""
    p = tmp_path / "dup_challenges.json"
    p.write_text('{"abc": %s, "xyz": %s, "abc": %s}' % ((json.dumps(GOOD),) * 3))
    with pytest.raises(TaskError) as e:
        load_source(str(p))
    assert str(e.value) == f"{p}: task file names the key 'abc' twice in one object (JSON keeps only the last); rename or remove one"


def test_a_number_too_long_to_read_is_one_line(tmp_path):
    """A 5,000-digit colour ended in Python's ValueError traceback (its 4,300-digit limit)."""
    from augment.files import read_jsonl
    p = write(tmp_path / "big.json", '{"train": [{"input": [[%s]], "output": [[1]]}], "test": []}' % ("9" * 5000))
    with pytest.raises(TaskError, match=r"big.json: task file cannot be read: Exceeds the limit \(4300 digits\)"):
        load_source(str(tmp_path))
    p.write_text('{"step": 1}\n' + "9" * 5000 + "\n")
    with pytest.raises(InputError, match="big.json: line 2 of metrics cannot be read"):
        read_jsonl(p, "metrics")


def test_missing_file():
    with pytest.raises(TaskError, match="unknown task source|file not found"):
        load_source("/nonexistent/dir/x_challenges.json")
    with pytest.raises(TaskError, match="unknown task source"):
        load_source("no-such-dataset")


def test_solution_count_mismatch(tmp_path):
    p = write(tmp_path / "x_challenges.json", {"abc": GOOD})
    write(tmp_path / "x_solutions.json", {"abc": [[[1]], [[2]]]})
    with pytest.raises(TaskError) as e:
        load_source(str(p))
    assert "solutions hold 2 grids for 1 test inputs" in str(e.value) and "'abc'" in str(e.value)
    with pytest.raises(TaskError, match="solutions"):
        task_from_json("abc", GOOD, [[[1, 2]], [[3]]])


@pytest.mark.parametrize("solutions, fragment", [
    ({"abc": [[[1, 2], [3]]]}, r"task 'abc': solutions\[0\]: ragged grid"),
    ({"abc": []}, r"task 'abc': solutions: solutions hold 0 grids for 1 test inputs"),
    ([[[[1]]]], "solutions must map task ids to lists of grids"),
])
def test_a_fault_in_the_solutions_file_names_that_file(tmp_path, solutions, fragment):
    """Before: a bad grid in x_solutions.json was reported against x_challenges.json, the file that
    holds no fault, so a user searched the wrong file."""
    p = write(tmp_path / "x_challenges.json", {"abc": GOOD})
    sol = write(tmp_path / "x_solutions.json", solutions)
    with pytest.raises(TaskError, match=fragment) as e:
        load_source(str(p))
    assert str(e.value).startswith(f"{sol}: ") and str(p) not in str(e.value)


def test_bad_solution_grid(tmp_path):
    with pytest.raises(TaskError, match=r"solutions\[0\].*colours"):
        task_from_json("abc", GOOD, [[[12]]])


def test_skip_mode_warns_and_keeps_good_tasks(tmp_path):
    p = write(tmp_path / "c.json", {"good": GOOD, "bad": bad_task(train=[])})
    warnings = []
    tasks = load_tasks(str(p), Reading(skip=True, warn=warnings.append))
    assert [t.id for t in tasks] == ["good"]
    assert len(warnings) == 1 and "'bad'" in warnings[0]
    with pytest.raises(TaskError):
        load_tasks(str(p))


@pytest.mark.parametrize("as_folder", [False, True])
def test_a_selection_reads_only_the_tasks_it_names(tmp_path, as_folder):
    """`FILE/good` read every task of FILE before selecting: a bad task not selected was warned
    about and salvaged (predict and ttt then answered it in the submission), and `FILE/bad`, skipped
    as bad, was refused as "not found"."""
    bad = bad_task(train=[])  # its test input is readable: salvaged when skipped
    if as_folder:
        source = tmp_path / "tasks"
        source.mkdir()
        write(source / "good.json", GOOD)
        write(source / "bad.json", bad)
    else:
        source = write(tmp_path / "c.json", {"good": GOOD, "bad": bad})
    warnings: list[str] = []
    salvaged: list = []
    skip = Reading(skip=True, warn=warnings.append, salvaged=salvaged)
    tasks = load_tasks(f"{source}/good", skip)
    assert [t.id for t in tasks] == ["good"] and salvaged == [] and warnings == []
    assert [t.id for t in load_tasks(f"{source}/good")] == ["good"]  # the unselected bad task raises nothing
    assert load_tasks(f"{source}/bad", skip) == []
    assert [t.id for t in salvaged] == ["bad"] and len(warnings) == 1 and "'bad'" in warnings[0]
    with pytest.raises(TaskError, match="'bad'"):
        load_tasks(f"{source}/good+bad")
    with pytest.raises(TaskError, match="task ids not found .*: nope"):
        load_tasks(f"{source}/good+nope", skip)


def test_folder_source_and_roles(tmp_path):
    d = tmp_path / "evaluation"
    d.mkdir()
    write(d / "aa.json", GOOD)
    write(d / "bb.json", GOOD)
    tasks = load_tasks(str(d))
    assert [t.id for t in tasks] == ["aa", "bb"] and {t.role for t in tasks} == {"test"}
    assert {t.role for t in load_tasks(f"{d}@train")} == {"train"}
    with pytest.raises(TaskError, match="unknown role"):
        load_tasks(f"{d}@bogus")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TaskError, match="no .json"):
        load_tasks(str(empty))


@pytest.mark.parametrize("name, role", [("latest", "train"), ("contest_challenges.json", "train"),
                                        ("attestation", "train"), ("arc-agi_test_challenges.json", "test"),
                                        ("my-evaluation-set", "test"), ("tests", "test"), ("test2", "test")])
def test_the_default_role_comes_from_a_word_of_the_name_not_a_substring(tmp_path, name, role):
    """`latest/` and `contest_challenges.json` made every task a test task: "test" was matched inside words."""
    source = tmp_path / name
    if name.endswith(".json"):
        write(source, {"abc": GOOD})
    else:
        source.mkdir()
        write(source / "abc.json", GOOD)
    assert {t.role for t in load_tasks(str(source))} == {role}


@pytest.mark.parametrize("spec", [".", "./", "sub/..", "../evaluation"])
def test_a_folder_named_by_dots_gets_the_role_of_its_own_name(tmp_path, monkeypatch, spec):
    """Before: `--tasks .` inside a folder named `evaluation` gave its tasks the train role (the
    name of `.` is ''), while `../evaluation` gave them the test role."""
    d = tmp_path / "evaluation"
    (d / "sub").mkdir(parents=True)
    write(d / "aa.json", GOOD)
    monkeypatch.chdir(d)
    assert [(t.id, t.role) for t in load_tasks(spec)] == [("aa", "test")]


def test_at_sign_inside_a_path_is_not_a_role(tmp_path, monkeypatch):
    """Google Drive for desktop mounts at .../GoogleDrive-me@example.com/My Drive: the `@` is part of
    the path (file, folder, picked ids, a role after it), and predict records the path absolute."""
    d = tmp_path / "GoogleDrive-me@example.com" / "My Drive"
    d.mkdir(parents=True)
    p = write(d / "x_challenges.json", {"abc": GOOD, "def": GOOD})
    assert [t.id for t in load_tasks(str(p))] == ["abc", "def"]
    assert [t.role for t in load_tasks(f"{p}@test")] == ["test", "test"]
    assert [t.id for t in load_tasks(f"{p}/def")] == ["def"]
    (folder := d / "tasks").mkdir()
    write(folder / "aa.json", GOOD)
    assert [t.id for t in load_tasks(str(folder))] == ["aa"]
    with pytest.raises(TaskError, match="unknown role 'bogus'"):
        load_tasks(f"{p}@bogus")
    monkeypatch.chdir(tmp_path)
    rel = "GoogleDrive-me@example.com/My Drive/x_challenges.json"
    assert absolute_spec(f"{rel}@test,arc-agi-1") == f"{p.resolve()}@test,arc-agi-1"
    assert absolute_spec(rel) == str(p.resolve())


def test_a_comma_inside_a_path_is_part_of_it(tmp_path, monkeypatch):
    """--tasks splits on commas, which split a folder like `ARC, copy` into two sources that do not
    exist; a comma inside an existing path now stays in it (with ids, a role, and beside others)."""
    d = tmp_path / "ARC, copy"
    d.mkdir()
    p = write(d / "x_challenges.json", {"abc": GOOD, "def": GOOD})
    (other := tmp_path / "more").mkdir()
    write(other / "gg.json", GOOD)
    assert [t.id for t in load_tasks(str(p))] == ["abc", "def"]
    assert [(t.id, t.role) for t in load_tasks(f"{p}/def@test, {other}")] == [("def", "test"), ("gg", "train")]
    assert [t.id for t in load_tasks(f"{other},{d}/x_challenges.json/abc")] == ["abc", "gg"]
    monkeypatch.chdir(tmp_path)
    assert absolute_spec("ARC, copy/x_challenges.json@train,arc-agi-1") == f"{p.resolve()}@train,arc-agi-1"
    with pytest.raises(TaskError):  # a comma between two missing paths still separates them
        load_tasks("ARC, nothing")
    r = _cli("--tasks", f"{p}/abc", "--out", str(tmp_path / "out"), "--augmentations", "2", "--workers", "1",
             "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [t["id"] for t in json.loads((tmp_path / "out" / "metadata.json").read_text())["tasks"]] == ["abc"]


def test_a_path_whose_first_folder_is_named_like_a_bundled_set_is_a_path(tmp_path, monkeypatch):
    """Before: `arc-agi-2/data/evaluation` (a clone of the arc-agi-2 repository) was read as the
    bundled arc-agi-2 with the task ids 'data/evaluation'; only `./arc-agi-2/...` worked."""
    d = tmp_path / "arc-agi-2" / "data" / "evaluation"
    d.mkdir(parents=True)
    write(d / "aaaa1111.json", GOOD)
    write(d / "bbbb2222.json", GOOD)
    (k := tmp_path / "kaggle2025").mkdir()
    write(k / "x_challenges.json", {"abc": GOOD, "def": GOOD})
    monkeypatch.chdir(tmp_path)
    assert [(t.id, t.role) for t in load_tasks("arc-agi-2/data/evaluation")] == [("aaaa1111", "test"),
                                                                                ("bbbb2222", "test")]
    assert [t.id for t in load_tasks("arc-agi-2/data/evaluation/bbbb2222")] == ["bbbb2222"]
    assert [(t.id, t.role) for t in load_tasks("kaggle2025/x_challenges.json/def@test, arc-agi-2/data/evaluation/"
                                               "aaaa1111")] == [("aaaa1111", "test"), ("def", "test")]
    assert absolute_spec("arc-agi-2/data/evaluation@train,arc-agi-2:evaluation") == (
        f"{d.resolve()}@train,arc-agi-2:evaluation")
    r = cli_in_process("show", "aaaa1111", "--tasks", "arc-agi-2/data/evaluation")
    assert r.returncode == 0, r.stderr
    # The bundled names stay bundled, a folder of that name beside them or not.
    assert is_bundled("arc-agi-2") and is_bundled("arc-agi-1:training/3c9b0459+6150a2bd")
    assert [t.id for t in load_tasks("arc-agi-1:training/3c9b0459")] == ["3c9b0459"]


def test_a_task_file_and_a_challenges_file_given_the_other_way_round_say_so(tmp_path):
    """Before: one ARC task file given as --tasks said "task 'train': task must be an object with
    'train' and 'test'" (its keys read as task ids), and a folder holding a Kaggle challenges file
    (the Kaggle dataset's folder) said "task 'x_challenges': 'train' must be a non-empty list"."""
    one = write(tmp_path / "abc.json", GOOD)
    with pytest.raises(TaskError) as e:
        load_source(str(one))
    assert str(e.value) == (f"{one}: holds one task, not a Kaggle challenges file of many: give the folder of "
                            "such task files as the source")
    d = tmp_path / "kaggle"
    d.mkdir()
    many = write(d / "arc-agi_evaluation_challenges.json", {"abc": GOOD, "def": GOOD})
    with pytest.raises(TaskError) as e:
        load_source(str(d))
    assert str(e.value) == (f"{many}: holds many tasks (a Kaggle challenges file), not one: give the file itself "
                            "as the source, not its folder")
    assert [t.id for t in load_source(str(many))] == ["abc", "def"]
    odd = write(tmp_path / "odd.json", {"train": GOOD, "test": GOOD})  # task ids that read like the keys
    assert [t.id for t in load_source(str(odd))] == ["train", "test"]


def test_folder_source_leaves_out_hidden_files(tmp_path):
    """macOS writes a binary `._ID.json` beside every file it copies to a USB drive or a share; such
    a folder was refused ("malformed JSON") or, with --skip-bad-tasks, warned about per file."""
    d = tmp_path / "evaluation"
    d.mkdir()
    write(d / "aa.json", GOOD)
    (d / "._aa.json").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    write(d / ".draft.json", "{not json")
    assert [t.id for t in load_tasks(str(d))] == ["aa"]
    (d / "aa.json").unlink()
    with pytest.raises(TaskError, match="no .json task files"):
        load_tasks(str(d))


def test_folder_source_reads_upper_case_json_suffixes(tmp_path):
    """Before: a folder's `ID.JSON` files were left out silently (and one of only such files was 'no .json')."""
    d = tmp_path / "tasks"
    d.mkdir()
    write(d / "AA.JSON", GOOD)
    write(d / "bb.Json", GOOD)
    write(d / "cc.json", GOOD)
    write(d / "._AA.JSON", "{not json")
    write(d / "notes.txt", "not a task")
    assert [t.id for t in load_tasks(str(d))] == ["AA", "bb", "cc"]
    assert [t.id for t in load_tasks(f"{d}/AA+cc")] == ["AA", "cc"]


def test_duplicate_ids(tmp_path):
    a = write(tmp_path / "a.json", {"t": GOOD})
    b = write(tmp_path / "b_test.json", {"t": GOOD})
    (task,) = load_tasks([str(a), str(b)])
    assert task.role == "test"  # the test role wins
    c = write(tmp_path / "c.json", {"t": bad_task(test=[{"input": [[7]]}])})
    with pytest.raises(TaskError, match="different content"):
        load_tasks([str(a), str(c)])


def test_safe_name():
    for bad in ["../../etc/passwd", "a/b", "a\\b", ".hidden", "x y:z*?", "", "é"]:
        name = safe_name(bad)
        assert name and "/" not in name and "\\" not in name and not name.startswith(".")
        assert all(ch.isalnum() or ch in "._-" for ch in name)
        assert name not in (".", "..")
    assert safe_name("007bbfd7") == "007bbfd7"
    assert len(safe_name("x" * 500)) <= 120


def test_grid_hash_includes_shape():
    g = np.arange(4, dtype=np.uint8)
    assert grid_hash(g.reshape(1, 4)) != grid_hash(g.reshape(2, 2))
    assert grid_hash(g.reshape(2, 2)) == grid_hash(g.reshape(2, 2).copy())


def test_task_hash_content():
    a = task_from_json("a", GOOD)
    b = task_from_json("b", GOOD)
    assert task_hash(a) == task_hash(b)
    c = task_from_json("a", bad_task(test=[{"input": [[0, 2]]}]))
    assert task_hash(a) != task_hash(c)


def test_content_hash_leaves_out_the_test_outputs_and_its_bytes_are_fixed():
    """identifiers.json stores content hashes: a change of the bytes hashed would make every imported
    or trained run's tasks read as changed. The value is the one the first release wrote."""
    hidden = task_from_json("a", GOOD)
    solved = task_from_json("a", {**GOOD, "test": [{"input": [[0, 1]], "output": [[1, 0]]}]})
    assert content_hash(hidden) == content_hash(solved) == "71abfb4a855c48bc87ffa31b2071ac2d"
    assert task_hash(hidden) == content_hash(hidden) != task_hash(solved)


def test_json_kind_names_each_kaggle_file_by_its_shape():
    grid = [[1, 2]]
    assert json_kind(GOOD) == "task"
    assert json_kind({"t1": GOOD}) == "challenges"
    assert json_kind({"t1": [{"attempt_1": grid, "attempt_2": grid}]}) == "submission"
    assert json_kind({"t1": [grid]}) == "solutions"
    assert json_kind({}) is json_kind([GOOD]) is json_kind({"t1": 3}) is None


def test_bundled_datasets():
    tasks = load_tasks("arc-agi-1:training")
    assert len(tasks) == 400 and {t.role for t in tasks} == {"train"} and all(t.has_solutions for t in tasks)
    ev = load_tasks("arc-agi-1:evaluation")
    assert len(ev) == 400 and {t.role for t in ev} == {"test"}
    with pytest.raises(TaskError, match="unknown split"):
        load_tasks("arc-agi-1:bogus")
    with pytest.raises(InputError):
        load_tasks([])


def _cli(*args, cwd):
    """Run `arc-trm build ...` (the installed console script, or the module if it is not installed)."""
    script = Path(sys.executable).with_name("arc-trm")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "arc_trm.cli"]
    return subprocess.run(cmd + ["build", *args], cwd=cwd, env=dict(os.environ), capture_output=True, text=True,
                          timeout=120)


def test_cli_bad_file_one_line_error(tmp_path):
    p = write(tmp_path / "bad_challenges.json", {"ok": GOOD, "broken": bad_task(
        train=[{"input": [[1]], "output": [[1]]}, {"input": [[1, 2], [3]], "output": [[1]]}])})
    r = _cli("--tasks", str(p), "--out", str(tmp_path / "out"), "--augmentations", "3", "--workers", "1",
             "--no-progress", cwd=tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(p) in lines[0] and "'broken'" in lines[0] and "train[1].input" in lines[0]
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "out").exists()

    # The same file with --skip-bad-tasks builds the good task and warns about the bad one.
    r = _cli("--tasks", str(p), "--out", str(tmp_path / "out"), "--augmentations", "3", "--workers", "1",
             "--no-progress", "--skip-bad-tasks", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "'broken'" in r.stderr
    assert "1 skipped as invalid" in r.stdout, r.stdout  # the summary counts the task it skipped
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert [t["id"] for t in meta["tasks"]] == ["ok"]


def test_cli_missing_and_malformed_file(tmp_path):
    r = _cli("--tasks", str(tmp_path / "nope_challenges.json"), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    p = write(tmp_path / "m.json", "{not json")
    r = _cli("--tasks", str(p), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "malformed JSON" in r.stderr and str(p) in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not CONCEPTARC.exists(), reason="ConceptARC is read from ../shared/data beside the checkout")
def test_paper_recipe_combines_arc_agi_2_with_conceptarc_from_a_path(tmp_path):
    tasks = load_tasks(f"arc-agi-2,{CONCEPTARC}")
    concept = [t for t in tasks if t.source == str(CONCEPTARC)]
    assert len(tasks) == 1000 + 120 + 160
    assert len(concept) == 160 and all(t.role == "train" and t.has_solutions for t in concept)
    assert sum(t.role == "test" for t in tasks) == 120  # ARC-AGI-2 evaluation is the test split
    # A few of them build together into one set, ConceptARC solutions training as test pairs.
    from augment.build import BuildOptions, ensure_built

    spec = f"arc-agi-2:evaluation/0934a4d8,{CONCEPTARC}/{concept[0].id}"
    built = ensure_built(spec, tmp_path / "b", BuildOptions(augmentations=2, progress=False))
    assert {built.task_of_row(r)[0] for r in range(1, built.num_identifiers)} == {"0934a4d8", concept[0].id}
