"""The layout of a run folder, and the one place that finds a checkpoint in it (torch-free, so
`arc-trm kaggle` uses it without importing torch).

    RUN/config.json                  resolved config of the run
    RUN/metrics.jsonl                one JSON line per logged step
    RUN/checkpoints/step_0000100/    one folder per checkpoint (see arc_trm/checkpoint.py)
    RUN/checkpoints/.tmp_step_0000100/   the same while it is being written
    RUN/checkpoints/latest           name of the newest complete checkpoint

An inference export (`arc-trm export`) is a folder with model.safetensors instead of state.pt,
and nothing besides the files its manifest.json lists.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from augment.console import eprint
from augment.errors import InputError
from augment.grids import BLANK_IDENTIFIER
from augment.launch import launch
from submission import checkpoint_manifest as manifest
from submission.checkpoint_manifest import MANIFEST

STATE = "state.pt"
EXPORT_WEIGHTS = "model.safetensors"
LEAN_IDENTIFIER = "<mean>"  # the lean export's one trained row; never a build row's (those are "task#k")
_STEP_DIR = re.compile(r"step_(\d+)$")
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoints")  # what `train` writes into a run folder
IMPORT_RECORD = "import.json"  # what `import-checkpoint` writes beside a run's config and checkpoints
TTT_OWN_FILES = ("ttt_plan.json", "ttt_challenges.json", "ttt_run.json", "tasks")  # only `ttt` writes these
TTT_FILES = RUN_FILES + ("submission.json", *TTT_OWN_FILES)  # what a ttt run holds (tasks/<id>/: --per-task)


def run_files(out: Path, names: tuple[str, ...] = RUN_FILES) -> list[str]:
    """The names of a run's files that `out` already holds."""
    return [name for name in names if (Path(out) / name).exists()]


def aside_name(out: Path, now: float | None = None) -> Path:
    """A free sibling name for an old run: RUN.old-YYYYmmdd-HHMMSS (with -2, -3... if taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    out = Path(out).resolve() if Path(out).name in ("", "..") else Path(out)  # `.` has no name to extend
    base = out.with_name(f"{out.name}.old-{stamp}")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def asides_of(run: Path) -> list[Path]:
    """The folders `--force` moved `run` aside to (aside_name's RUN.old-<time>[-n], real folders,
    not links), oldest first."""
    run = Path(run)
    named = re.compile(re.escape(run.name) + r"\.old-(\d{8}-\d{6})(?:-(\d+))?")
    try:
        found = [(m, p) for p in run.parent.iterdir() if (m := named.fullmatch(p.name))]
    except OSError:
        return []
    return [p for m, p in sorted(found, key=lambda mp: (mp[0].group(1), int(mp[0].group(2) or 1)))
            if p.is_dir() and not p.is_symlink()]


def check_holds_no_run(out: Path, never: str) -> None:
    """One line naming `out` when it holds a train or ttt run (`never`: why what the command
    writes may not go there), so that `export` and `kaggle bundle` never write into a run."""
    held = run_files(out, TTT_FILES)
    if held:
        raise InputError(f"--out {out} holds a run ({', '.join(held)}); {never}: use a new or empty folder")


def is_export(folder: Path) -> bool:
    """True when `folder` holds an inference export and nothing else: the only folder `export`
    replaces (a run, a checkpoint or a folder with other files never is one)."""
    folder = Path(folder)
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files")
        entries = {p.name: p.is_file() for p in folder.iterdir()}
    except (OSError, ValueError, AttributeError):
        return False
    return (isinstance(files, dict) and EXPORT_WEIGHTS in files and STATE not in files and all(entries.values())
            and set(entries) == set(files) | {MANIFEST})


def is_lean_export(folder: Path) -> bool:
    """True for a lean export (`arc-trm export --lean`): the blank row and the mean row only."""
    try:
        ids = json.loads((Path(folder) / "identifiers.json").read_text(encoding="utf-8")).get("identifiers")
    except (OSError, ValueError, AttributeError):
        return False
    return (Path(folder) / EXPORT_WEIGHTS).is_file() and ids == [BLANK_IDENTIFIER, LEAN_IDENTIFIER]


def checkpoint_dir(run: Path, step: int) -> Path:
    return Path(run) / "checkpoints" / f"step_{step:07d}"


def temporary_checkpoint_dir(run: Path, step: int) -> Path:
    return Path(run) / "checkpoints" / f".tmp_step_{step:07d}"


def latest_marker(run: Path) -> Path:
    return Path(run) / "checkpoints" / "latest"


def step_of(folder: Path) -> int | None:
    m = _STEP_DIR.match(folder.name)
    return int(m.group(1)) if m else None


def checkpoints_by_step(run: Path) -> list[Path]:
    """The run's committed checkpoint folders, oldest step first (by number, not by name)."""
    found = [(step_of(p), p) for p in (Path(run) / "checkpoints").glob("step_*") if p.is_dir()]
    return [p for s, p in sorted((s, p) for s, p in found if s is not None)]


def latest_checkpoint(run: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, or None. When `latest` names a folder that
    is gone or incomplete, the newest complete one by step is used, with a warning naming both."""
    marker = latest_marker(run)
    named = None
    if marker.is_file():
        named = marker.parent / marker.read_text().strip()
        if (named / STATE).is_file():
            return named
    done = [p for p in checkpoints_by_step(run) if (p / STATE).is_file()]
    if named is not None and launch().main:  # one warning, not one per process
        instead = f"using {done[-1]} instead" if done else "no complete checkpoint is left"
        eprint(f"warning: {marker} names {named.name}, which is missing or has no {STATE}; {instead}")
    return done[-1] if done else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder (its latest checkpoint), a checkpoint folder or an inference export -> the
    folder holding the weights."""
    p = Path(path)
    if (p / STATE).exists() or (p / EXPORT_WEIGHTS).exists():
        return p
    found = latest_checkpoint(p)
    if found is None:
        raise InputError(f"{p}: no checkpoint found (expected RUN/checkpoints/latest, a folder with {STATE} "
                         f"or an inference export with {EXPORT_WEIGHTS})")
    return found


def verify_model_files(folder: Path, flag: str = "--checkpoint") -> None:
    """One line unless the files a model is made from (weights, config, identifiers) match the
    manifest's hashes: for what builds on them (ttt, an export with a fresh manifest), since a file
    damaged in place keeps its size, which is all that loading checks."""
    weights = STATE if (folder / STATE).exists() else EXPORT_WEIGHTS
    try:
        manifest.verify(folder, (weights, "config.json", "identifiers.json"), full=True)
    except OSError as e:
        raise InputError(f"{flag} {folder}: cannot read {e.filename} ({e.strerror})") from None
