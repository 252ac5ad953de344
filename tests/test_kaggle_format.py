"""Kaggle submission files: building with fallbacks, validation, atomic writes, candidates file."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest

import augment.files as files
from augment.errors import InputError
from augment.tasks import Pair, Task
from augment.files import write_json_atomic
from submission.kaggle import (build_submission, candidates_path, fallback_submission, load_submission,
                               read_candidates, validate_submission, write_candidates, write_submission)
from submission.vote import Candidate, Prediction, rank_candidates


def g(rows):
    return np.array(rows, dtype=np.uint8)


def make_tasks() -> list[Task]:
    demo = (Pair(g([[1]]), g([[2]])),)
    return [
        Task("aaa", demo, (Pair(g([[1, 1], [0, 1]]), None),), "test"),
        Task("bbb", demo, (Pair(g([[3]]), None), Pair(g([[4, 4, 4]]), None)), "test"),
    ]


@pytest.fixture
def tasks():
    return make_tasks()


@pytest.fixture
def good(tasks):
    return fallback_submission(tasks)


def test_fallback_submission_is_valid_and_uses_test_inputs(tasks, good):
    validate_submission(good, tasks)
    assert list(good) == ["aaa", "bbb"]
    assert good["bbb"][1] == {"attempt_1": [[4, 4, 4]], "attempt_2": [[4, 4, 4]]}
    assert isinstance(good["aaa"][0]["attempt_1"][0][0], int)


def test_undecodable_prediction_never_reaches_the_file(tasks, tmp_path):
    preds = [
        Prediction("aaa", 0, None, 0.99),  # nothing decodable
        Prediction("aaa", 0, None, 0.99),
        Prediction("bbb", 0, g([[7, 7]]), 0.6),
        Prediction("bbb", 0, np.zeros((0, 0), dtype=np.uint8), 0.9),  # empty: not a grid
        Prediction("bbb", 1, g([[12]]), 0.9),  # colour out of range
    ]
    sub = build_submission(tasks, rank_candidates(preds))
    path = tmp_path / "submission.json"
    write_submission(path, sub, tasks)
    back = load_submission(path)
    validate_submission(back, tasks)
    assert back["aaa"][0] == {"attempt_1": [[1, 1], [0, 1]], "attempt_2": [[1, 1], [0, 1]]}
    assert back["bbb"][0] == {"attempt_1": [[7, 7]], "attempt_2": [[3]]}  # candidate, then the test input
    assert back["bbb"][1] == {"attempt_1": [[4, 4, 4]], "attempt_2": [[4, 4, 4]]}


def test_build_submission_takes_two_distinct_candidates(tasks):
    ranked = {("aaa", 0): [Candidate(g([[5]]), 3, 0.5), Candidate(g([[5]]), 2, 0.5), Candidate(g([[6]]), 1, 0.1)]}
    sub = build_submission(tasks, ranked)
    assert sub["aaa"][0] == {"attempt_1": [[5]], "attempt_2": [[6]]}


def _broken(good, edit):
    sub = copy.deepcopy(good)
    edit(sub)
    return sub


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("bbb"), "missing 1 task"),
    (lambda s: s.update(zzz=s["aaa"]), "not in the task set"),
    (lambda s: s["bbb"].pop(), "1 entries for 2 test input"),
    (lambda s: s["bbb"][1].pop("attempt_2"), "attempt_2 is missing"),
    (lambda s: s["aaa"][0].update(attempt_1=[[1, 10]]), "colours are integers 0-9"),
    (lambda s: s["aaa"][0].update(attempt_1=[[1, 2], [3]]), "ragged"),
    (lambda s: s["aaa"][0].update(attempt_2=[[0] * 31]), "sides must be 1 to 30"),
    (lambda s: s["aaa"][0].update(attempt_2=[]), "non-empty"),
    (lambda s: s["aaa"][0].update(attempt_2=[[1.0]]), "colours are integers"),
    (lambda s: s.update(aaa={"attempt_1": [[1]]}), "list with one entry per test input"),
    (lambda s: s["aaa"].__setitem__(0, [[1]]), "must be an object"),
    (lambda s: s["aaa"][0].update(attempt_3=[[1]]), "unexpected key"),
])
def test_validation_rejects(tasks, good, edit, message):
    with pytest.raises(InputError, match=message):
        validate_submission(_broken(good, edit), tasks)


def test_validation_rejects_non_object(tasks):
    with pytest.raises(InputError, match="JSON object"):
        validate_submission([], tasks)


def test_validation_error_names_the_task_and_input(tasks, good):
    sub = _broken(good, lambda s: s["bbb"][1].update(attempt_1=[[1, 2], [3]]))
    with pytest.raises(InputError) as e:
        validate_submission(sub, tasks)
    assert "'bbb'" in str(e.value) and "test[1].attempt_1" in str(e.value)


def test_write_submission_refuses_invalid_and_leaves_no_file(tasks, good, tmp_path):
    path = tmp_path / "submission.json"
    with pytest.raises(InputError):
        write_submission(path, _broken(good, lambda s: s.pop("aaa")), tasks)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["dump", "replace", "fsync"])
def test_atomic_write_failure_keeps_old_file_and_no_temp(tmp_path, monkeypatch, target):
    path = tmp_path / "out.json"
    write_json_atomic(path, {"old": 1})
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    if target == "dump":
        def partial_dump(obj, f, **k):
            f.write('{"new": [1, 2')  # half a file reaches the temporary, then the failure
            raise OSError("disk full")
        monkeypatch.setattr(files.json, "dump", partial_dump)
    else:
        monkeypatch.setattr(files.os, target, boom)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(path, {"new": list(range(1000))})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_write_replaces_content(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"b": [2]})
    assert json.loads(path.read_text()) == {"b": [2]}
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_load_submission_errors(tmp_path):
    bad = tmp_path / "s.json"
    bad.write_text('{"a": [')
    with pytest.raises(InputError, match=r"malformed JSON.*line 1"):
        load_submission(bad)
    with pytest.raises(InputError, match="not found"):
        load_submission(tmp_path / "nope.json")
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        load_submission(bad)
    bad.write_bytes(b"\xff\xfe{")
    with pytest.raises(InputError, match="UTF-8"):
        load_submission(bad)


def test_candidates_path_naming(tmp_path):
    assert candidates_path(tmp_path / "submission.json") == tmp_path / "submission.candidates.json"
    assert candidates_path("runs/x/sub.json").name == "sub.candidates.json"


def test_candidates_round_trip(tmp_path):
    ranked = rank_candidates([
        Prediction("t1", 0, g([[1, 2]]), 0.25), Prediction("t1", 0, g([[1, 2]]), 0.75),
        Prediction("t1", 0, g([[3]]), 0.9), Prediction("t1", 1, g([[4]]), 0.5), Prediction("t2", 0, None, 0.5),
    ])
    path = tmp_path / "submission.candidates.json"
    write_candidates(path, ranked)
    data = json.loads(path.read_text())
    assert data["format"] == "arc-trm-candidates" and data["version"] == 1
    assert data["tasks"]["t1"]["0"][0] == {"grid": [[1, 2]], "votes": 2, "mean_halt_prob": 0.5}
    back = read_candidates(path)
    assert set(back) == {("t1", 0), ("t1", 1), ("t2", 0)}
    assert [(c.grid.tolist(), c.votes, c.mean_halt_prob) for c in back[("t1", 0)]] == \
        [([[1, 2]], 2, 0.5), ([[3]], 1, 0.9)]
    assert back[("t2", 0)] == []


def test_read_candidates_rejects_bad_files(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"tasks": {}}))
    with pytest.raises(InputError, match="not an arc-trm candidates file"):
        read_candidates(path)
    path.write_text(json.dumps({"format": "arc-trm-candidates", "version": 1,
                                "tasks": {"t": {"0": [{"grid": [[1]], "votes": 0, "mean_halt_prob": 0.1}]}}}))
    with pytest.raises(InputError, match="votes"):
        read_candidates(path)
    path.write_text(json.dumps({"format": "arc-trm-candidates", "version": 1,
                                "tasks": {"t": {"0": [{"grid": [[11]], "votes": 1, "mean_halt_prob": 0.1}]}}}))
    with pytest.raises(InputError, match="colours"):
        read_candidates(path)
    for bad in ({"mean_halt_prob": "high"}, {"mean_halt_prob": True}, {"mean_halt_prob": 0.1, "mean_logprob": "x"}):
        path.write_text(json.dumps({"format": "arc-trm-candidates", "version": 1,
                                    "tasks": {"t": {"0": [{"grid": [[1]], "votes": 1, **bad}]}}}))
        with pytest.raises(InputError, match=f"{list(bad)[-1]} must be a number"):
            read_candidates(path)


def test_validation_against_counts_mapping(good):
    validate_submission(good, {"aaa": 1, "bbb": 2})
    with pytest.raises(InputError, match="2 entries for 3"):
        validate_submission(good, {"aaa": 1, "bbb": 3})


def test_os_replace_is_what_publishes(tmp_path, monkeypatch):
    # The final name only ever appears through os.replace (never written in place).
    seen = []
    real = os.replace
    monkeypatch.setattr(files.os, "replace", lambda a, b: (seen.append((a, b)), real(a, b)))
    write_json_atomic(tmp_path / "x.json", [1])
    assert len(seen) == 1 and str(seen[0][1]).endswith("x.json") and str(seen[0][0]) != str(seen[0][1])
