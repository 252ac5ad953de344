"""Kaggle submission files (REFERENCE §8): build, validate, write atomically, read back.

submission.json: {task_id: [{"attempt_1": grid, "attempt_2": grid} per test input, in order]}.
Every task and every test input is present and both attempts are always there; anything the model
did not answer falls back to the test input itself, so the file is valid whatever happened.

Beside it, `<stem>.candidates.json` keeps every ranked candidate (see `write_candidates`), which
`arc-trm score` uses for pass@k.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from augment.errors import InputError, TaskError, few_ids
from augment.files import read_json, write_json_atomic
from augment.json_kind import is_digits, is_number, json_kind
from augment.tasks import Task, grid_from_json
from submission.vote import Candidate, Key, choose_attempts

ATTEMPTS = ("attempt_1", "attempt_2")
CANDIDATES_FORMAT = "arc-trm-candidates"
CANDIDATES_VERSION = 1


def grid_to_list(grid: np.ndarray) -> list[list[int]]:
    """A grid as nested lists of Python ints (what JSON wants)."""
    return np.asarray(grid, dtype=np.uint8).astype(int).tolist()


def candidates_path(submission_path: str | Path) -> Path:
    """`dir/submission.json` -> `dir/submission.candidates.json`."""
    p = Path(submission_path)
    return p.with_name(f"{p.stem}.candidates.json")


# ---------------------------------------------------------------- building

def build_submission(tasks: Iterable[Task], ranked: Mapping[Key, Sequence[Candidate]] | None = None) -> dict:
    """The submission dict for `tasks`, attempts chosen from `ranked` (fallback: the test input)."""
    ranked = ranked or {}
    sub: dict[str, list[dict]] = {}
    for task in tasks:
        entries = []
        for i, pair in enumerate(task.test):
            a1, a2 = choose_attempts(ranked.get((task.id, i), ()), pair.input)
            entries.append({"attempt_1": grid_to_list(a1), "attempt_2": grid_to_list(a2)})
        sub[task.id] = entries
    return sub


def fallback_submission(tasks: Iterable[Task]) -> dict:
    """An always-valid submission: both attempts are the test input."""
    return build_submission(tasks, None)


def merge_submission(tasks: Iterable[Task], ranked: Mapping[Key, Sequence[Candidate]],
                     earlier: Mapping[str, list]) -> dict:
    """The submission for `tasks` where each test input `ranked` answers (one candidate or more)
    takes the new attempts and every other keeps its entry in `earlier` (an earlier file's valid
    entries by task, see earlier_entries), else the fallback: a prediction cut short by its
    deadline never replaces answers it did not produce."""
    tasks = list(tasks)
    sub = build_submission(tasks, ranked)
    for task in tasks:
        kept = earlier.get(task.id)
        for i in range(len(task.test) if kept is not None else 0):
            if not ranked.get((task.id, i)):
                sub[task.id][i] = kept[i]
    return sub


def earlier_entries(path: str | Path, tasks: Iterable[Task]) -> dict[str, list]:
    """The entries of the submission file at `path` that are valid for `tasks`, by task ({} when
    the file is missing or not a submission)."""
    try:
        sub = load_submission(path)
    except InputError:
        return {}
    kept = {}
    for task in tasks:
        try:
            validate_submission({task.id: sub.get(task.id)}, {task.id: len(task.test)})
        except InputError:
            continue
        kept[task.id] = sub[task.id]
    return kept


def is_submission_of(path: str | Path, tasks: Iterable[Task]) -> bool:
    """Whether the file at `path` is a valid submission for exactly `tasks`."""
    try:
        validate_submission(load_submission(path), list(tasks))
    except InputError:
        return False
    return True


def merge_candidates(path: str | Path, ranked: Mapping[Key, Sequence[Candidate]],
                     tasks: Iterable[Task]) -> dict[Key, Sequence[Candidate]]:
    """`ranked`, plus the candidates the candidates file at `path` holds for test inputs of `tasks`
    (those whose earlier answers the submission keeps) that `ranked` leaves without any (a missing
    or unreadable file adds none)."""
    try:
        earlier = read_candidates(path)
    except InputError:
        earlier = {}
    keys = {(t.id, i) for t in tasks for i in range(len(t.test))}
    merged = dict(ranked)
    for key, cands in earlier.items():
        if key in keys and not merged.get(key):
            merged[key] = cands
    return merged


# ---------------------------------------------------------------- validation

def expected_counts(tasks: Iterable[Task] | Mapping[str, int]) -> dict[str, int]:
    """{task_id: number of test inputs} from Tasks or from such a mapping."""
    if isinstance(tasks, Mapping):
        return {str(k): int(v) for k, v in tasks.items()}
    return {t.id: len(t.test) for t in tasks}


def check_is_submission(sub: object, path: str | Path | None) -> None:
    """One line when the file is other JSON (a task file, solutions, candidates): a submission maps
    task ids to lists of {"attempt_1": grid, "attempt_2": grid}."""
    where = f"{path}: " if path else ""
    shape = 'a submission maps task ids to lists of {"attempt_1": grid, "attempt_2": grid}'
    if not isinstance(sub, dict):
        raise InputError(f"{where}not a submission: {shape}")
    if sub.get("format") == CANDIDATES_FORMAT:
        raise InputError(f"{where}is a candidates file, not a submission: use the submission beside it")
    if not sub:
        raise InputError(f"{where}not a submission: it holds no tasks")
    kind = json_kind(sub)
    if kind == "submission":
        return  # perhaps with faults that validate_submission names
    if kind == "challenges":
        raise InputError(f"{where}is a task (challenges) file, not a submission: pass it as --tasks; {shape}")
    if kind == "solutions":
        raise InputError(f"{where}is a solutions file, not a submission: pass it as --solutions; {shape}")
    raise InputError(f"{where}not a submission: {shape}")


def validate_submission(sub: object, tasks: Iterable[Task] | Mapping[str, int], *,
                        path: str | Path | None = None) -> None:
    """Raise InputError unless `sub` is a complete, well-formed submission for `tasks`.

    `tasks` is a list of Tasks or a mapping {task_id: number of test inputs}. Checks: the task
    ids match exactly (none missing, none extra), each task holds one entry per test input, each
    entry holds exactly attempt_1 and attempt_2, and each attempt is a rectangular list of
    integers 0-9 with sides 1 to 30.
    """
    counts = expected_counts(tasks)
    where = f"{path}: " if path else ""
    if not isinstance(sub, dict):
        raise InputError(f"{where}submission must be a JSON object mapping task ids to lists of attempts")
    missing = [repr(i) for i in sorted(set(counts) - set(sub))]
    if missing:
        raise InputError(f"{where}submission is missing {len(missing)} task(s): {few_ids(missing, 5)}")
    extra = [repr(i) for i in sorted(set(sub) - set(counts))]
    if extra:
        raise InputError(f"{where}submission has {len(extra)} task(s) not in the task set: {few_ids(extra, 5)}")
    for task_id, n in counts.items():
        entries = sub[task_id]
        if not isinstance(entries, list):
            raise TaskError("must be a list with one entry per test input", path=path, task_id=task_id)
        if len(entries) != n:
            raise TaskError(f"submission holds {len(entries)} entries for {n} test input(s)",
                            path=path, task_id=task_id)
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise TaskError("entry must be an object with attempt_1 and attempt_2",
                                path=path, task_id=task_id, where=f"test[{i}]")
            for name in ATTEMPTS:
                if name not in entry:
                    raise TaskError(f"{name} is missing", path=path, task_id=task_id, where=f"test[{i}]")
                grid_from_json(entry[name], path=path, task_id=task_id, where=f"test[{i}].{name}")
            unknown = set(entry) - set(ATTEMPTS)
            if unknown:
                raise TaskError(f"unexpected key(s) {sorted(unknown)}; only attempt_1 and attempt_2",
                                path=path, task_id=task_id, where=f"test[{i}]")


# ---------------------------------------------------------------- files

def write_submission(path: str | Path, sub: dict, tasks: Iterable[Task] | Mapping[str, int]) -> None:
    """Validate `sub` against `tasks`, then write it atomically."""
    validate_submission(sub, tasks)
    write_json_atomic(path, sub)


def load_submission(path: str | Path) -> dict:
    """Read a submission.json (structure is checked by validate_submission)."""
    sub = read_json(path, "submission")
    if not isinstance(sub, dict):
        raise InputError(f"{path}: submission must be a JSON object mapping task ids to lists of attempts")
    return sub


def submission_grids(sub: dict, *, path: str | Path | None = None) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """{task_id: [(attempt_1, attempt_2) as uint8 arrays per test input]} from a validated submission."""
    out = {}
    for task_id, entries in sub.items():
        out[task_id] = [tuple(grid_from_json(e[a], path=path, task_id=task_id, where=f"test[{i}].{a}")
                              for a in ATTEMPTS) for i, e in enumerate(entries)]
    return out


def load_solutions(path: str | Path) -> dict[str, list[np.ndarray]]:
    """A Kaggle solutions file {task_id: [output grid per test input]} as uint8 arrays."""
    data = read_json(path, "solutions file")
    kind = json_kind(data)
    if kind in ("challenges", "submission"):  # else "task X: solutions must be a list of grids", as if X were at fault
        use = "pass it as --tasks" if kind == "challenges" else "pass it as SUBMISSION"
        raise InputError(f"{path}: is a {kind} file, not a solutions file: {use}")
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: solutions must be a non-empty JSON object mapping task ids to lists of grids")
    out = {}
    for task_id, grids in data.items():
        if not isinstance(grids, list) or not grids:
            raise TaskError("solutions must be a non-empty list of grids", path=path, task_id=task_id)
        out[task_id] = [grid_from_json(g, path=path, task_id=task_id, where=f"solutions[{i}]")
                        for i, g in enumerate(grids)]
    return out


# ---------------------------------------------------------------- candidates file

def write_candidates(path: str | Path, ranked: Mapping[Key, Sequence[Candidate]]) -> None:
    """Write every ranked candidate, in rank order, atomically.

    Schema: {"format": "arc-trm-candidates", "version": 1,
             "tasks": {task_id: {"<test index>": [{"grid": [[...]], "votes": int,
                                                  "mean_halt_prob": float,
                                                  "mean_logprob": float (rescored only)}, ...]}}}
    """
    tasks: dict[str, dict[str, list]] = {}
    for (task_id, index), cands in sorted(ranked.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        tasks.setdefault(task_id, {})[str(int(index))] = [
            {"grid": grid_to_list(c.grid), "votes": int(c.votes), "mean_halt_prob": float(c.mean_halt_prob),
             **({} if c.mean_logprob is None else {"mean_logprob": float(c.mean_logprob)})}
            for c in cands
        ]
    write_json_atomic(path, {"format": CANDIDATES_FORMAT, "version": CANDIDATES_VERSION, "tasks": tasks})


def read_candidates(path: str | Path) -> dict[Key, list[Candidate]]:
    """Read a candidates file back into {(task_id, test index): [Candidate, ...]} (stored order)."""
    data = read_json(path, "candidates file")
    if not isinstance(data, dict) or data.get("format") != CANDIDATES_FORMAT or not isinstance(data.get("tasks"), dict):
        raise InputError(f"{path}: not an arc-trm candidates file (expected format {CANDIDATES_FORMAT!r})")
    if data.get("version") != CANDIDATES_VERSION:
        raise InputError(f"{path}: candidates file version {data.get('version')!r}; this code reads {CANDIDATES_VERSION}")
    out: dict[Key, list[Candidate]] = {}
    for task_id, per_test in data["tasks"].items():
        if not isinstance(per_test, dict):
            raise TaskError("must map test indices to candidate lists", path=path, task_id=task_id)
        for index, cands in per_test.items():
            if not is_digits(index) or not isinstance(cands, list):
                raise TaskError(f"bad entry for test index {index!r}", path=path, task_id=task_id)
            lst = []
            for j, c in enumerate(cands):
                where = f"test[{index}].candidates[{j}]"
                if not isinstance(c, dict):
                    raise TaskError("candidate must be an object", path=path, task_id=task_id, where=where)
                votes = c.get("votes")
                if not isinstance(votes, int) or isinstance(votes, bool) or votes < 1:
                    raise TaskError(f"votes must be a positive integer, got {votes!r}", path=path,
                                    task_id=task_id, where=where)

                def number(name: str, optional: bool = False) -> float | None:
                    value = c.get(name)
                    if optional and value is None:
                        return None
                    if not is_number(value):
                        raise TaskError(f"{name} must be a number, got {value!r}", path=path, task_id=task_id,
                                        where=where)
                    return float(value)

                prob, logprob = number("mean_halt_prob"), number("mean_logprob", optional=True)
                grid = grid_from_json(c.get("grid"), path=path, task_id=task_id, where=f"{where}.grid")
                lst.append(Candidate(grid, votes, prob, logprob))
            out[(task_id, int(index))] = lst
    return out
