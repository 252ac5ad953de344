"""Output files of a prediction: checks before any compute, and the per-submission record.

    NAME.json              the submission
    NAME.candidates.json   every ranked candidate
    NAME.predict.json      what was run: task source, checkpoint (absolute), submission (relative)

Torch-free: `score` and `report` read the record, `predict` and `ttt` check paths with it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

from augment.console import counted, warn_once
from augment.errors import InputError, few_ids
from augment.files import read_json
from augment.specs import source_folder
from submission.kaggle import candidates_path, check_is_submission, load_submission


def record_path(submission: str | Path) -> Path:
    """`dir/NAME.json` -> `dir/NAME.predict.json` (the record of the run that wrote it)."""
    sub = Path(submission)
    return sub.with_name(f"{sub.stem}.predict.json")


def check_output_file(path: str | Path, flag: str = "--out") -> None:
    """One line unless `path` can be written as a file: not a directory, its folder exists and
    takes new files (probed with a temporary file, which also catches read-only mounts)."""
    if str(path).endswith(("/", os.sep)):  # `results/` means a folder, which Path would forget
        raise InputError(f"{flag} {path}: names a folder; give a file name, e.g. {Path(path) / 'submission.json'}")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a directory; give a file name, e.g. {path / 'submission.json'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"{flag} {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: {parent} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".write-test-"):
            pass
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot write in {parent} ({e.strerror or e})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{flag} {path}: file is not writable")


def check_not_other_json(path: str | Path, flag: str = "--out") -> None:
    """One line when `path` holds JSON that is not a submission (the challenges, solutions or
    candidates file, a slip of --out), or is no JSON and no .json file (notes, a model): an earlier
    submission is merged and replaced, those are not. A broken NAME.json counts as a submission."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        data = read_json(path, "file")
    except InputError:
        if path.suffix.lower() == ".json":
            return  # an earlier submission cut short is replaced, as before
        raise InputError(f"{flag} {path}: the file there is not JSON (no submission) and would be overwritten: "
                         f"give another {flag}") from None
    try:
        if data != {}:
            check_is_submission(data, path)
    except InputError:
        raise InputError(f"{flag} {path}: the file there is JSON but not a submission (a task, solutions or "
                         f"candidates file?) and would be overwritten: give another {flag}") from None


def check_prediction_outputs(submission: str | Path, flag: str = "--out", tasks: Sequence[str] = ()) -> None:
    """The submission and the files written beside it; `tasks`: the sources, none of whose folders
    may receive them (the next read of the folder would take them for tasks)."""
    check_output_file(submission, flag)
    for spec in tasks:
        folder = source_folder(spec)
        if folder is not None and Path(submission).resolve().parent == folder.resolve():
            raise InputError(f"{flag} {submission}: is in the --tasks folder {folder}, whose every .json is read "
                             f"as a task: the next run would read this submission and its records as tasks; write "
                             f"it elsewhere")
    check_not_other_json(submission, flag)
    for extra in (candidates_path(Path(submission)), record_path(submission)):
        if extra.is_dir():
            raise InputError(f"{flag} {submission}: {extra} (written beside it) is a directory")
    check_record_is_ours(submission, flag)


def check_record_is_ours(submission: str | Path, flag: str = "--out") -> None:
    """One line when the record beside `submission` belongs to another submission: `d1` and
    `d1.json` share d1.predict.json and d1.candidates.json (named by the stem), so writing one
    would replace the other's and `score` would read the wrong tasks."""
    owner = other_owner(submission)
    if owner is not None:
        raise InputError(f"{flag} {submission}: {record_path(Path(submission)).name} beside it is the record of "
                         f"{owner}, whose candidates and record this run would replace: give {flag} another name")


def other_owner(submission: str | Path) -> str | None:
    """The name of another submission whose record (and candidates) stand beside `submission`, or
    None: `d1` and `d1.json` share d1.predict.json and d1.candidates.json, named by the stem."""
    sub = Path(submission)
    record = record_path(sub)
    try:
        info = read_json(record, "predict record") if record.is_file() else None
    except InputError:
        return None  # unreadable: predict_info names it where it is read
    owner = info.get("submission") if isinstance(info, dict) else None
    return owner if isinstance(owner, str) and owner != sub.name else None


def check_no_other_tasks(submission: str | Path, task_ids: list[str], flag: str = "--out") -> None:
    """One line when the submission at `submission` answers tasks outside `task_ids`: the new file
    holds these tasks only, so their answers would be lost (a rerun of the same tasks, or of more,
    replaces it)."""
    try:
        earlier = load_submission(submission)
        check_is_submission(earlier, submission)  # a task file's ids are not answers
    except InputError:  # none, or not one (check_not_other_json judges it)
        return
    others = sorted(set(earlier) - set(task_ids))
    if others:
        raise InputError(f"{flag} {submission}: holds answers for {counted(len(others), 'task')} this run does not "
                         f"answer ({few_ids(others)}), which the new file would drop: give another {flag}, or move "
                         "it aside")


def predict_info(submission: str | Path) -> dict | None:
    """The record of the prediction that wrote `submission` (NAME.predict.json beside NAME.json),
    or None if absent. An older folder-wide predict.json counts only when it names this file."""
    sub = Path(submission)
    path = record_path(sub)
    legacy = sub.parent / "predict.json"
    if not path.exists():
        if not legacy.exists():
            return None
        path = legacy
    info = read_json(path, "predict record")
    if not isinstance(info, dict):
        raise InputError(f"{path}: expected a JSON object with 'tasks'")
    if info.get("submission", sub.name) != sub.name:
        if path != legacy:
            warn_once(f"{path} is the record of {info['submission']}, not of {sub.name}: not read")
        return None
    return info


def recorded_source(submission: str | Path) -> str:
    """The task source recorded for `submission`; one line when there is none."""
    info = predict_info(submission)
    spec = info.get("tasks") if info else None
    if not isinstance(spec, str) or not spec:
        raise InputError(f"no --tasks or --solutions given and no task source recorded in "
                         f"{record_path(submission)}")
    return spec


def named_source(source: str, submission: str | Path) -> str | None:
    """The task source as the user named it, when `source` (what was scored) is a run's own copy of
    the tasks: a ttt run scores against RUN/ttt_challenges.json@test, and its record names what the
    user passed as "source". None when `source` is what the user named, or (with a warning) when the
    record is unreadable: here it only names the source."""
    try:
        info = predict_info(submission)
    except InputError as e:  # without --tasks/--solutions, recorded_source read it first and stopped
        warn_once(f"{e}; the record is not read (scoring the sources given)")
        return None
    named = info.get("source") if isinstance(info, dict) and info.get("tasks") == source else None
    return named if isinstance(named, str) and named and named != source else None
