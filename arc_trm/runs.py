"""A run folder belongs to one run.

`train --out RUN` without `--resume` refuses a folder that already holds a run; `--force` moves
the old run aside to a timestamped sibling (RUN.old-20250101-120000) and never deletes it.
`ttt --out` follows the same rule with its own files (--per-task's RUN/tasks/ included), checked on
every rank before any rank writes; neither command takes over the other's run, --resume included.
`import-checkpoint --force` moves a run aside the same way.
`export` replaces only an earlier export. A resumed run's metrics.jsonl is cut back to the
checkpoint's step, so its steps only increase.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from augment.errors import InputError
from augment.files import check_not_around_cwd, write_text_atomic  # not arc_trm.checkpoint: `ttt` checks before torch loads
from augment.json_kind import is_number
# A run's files and its aside names are set once, in submission.runfolder (the bundle and the notebook use them).
from submission.runfolder import IMPORT_RECORD, RUN_FILES, TTT_OWN_FILES, aside_name, run_files


def check_force_resume(force: bool, resume: bool, out: Path | None = None) -> None:
    """--force with --resume, or (given `out`) --resume into no folder: one line. Each command
    checks this before any work, so a typo in --out costs nothing."""
    if force and resume:
        raise InputError("--force starts a new run in --out and --resume continues the one there: pass one")
    if resume and out is not None and not Path(out).is_dir():
        raise InputError(f"{out}: --resume given but there is no such run folder (start it without --resume)")


def claim_run_folder(out: Path, force: bool, main: bool = True, names: tuple[str, ...] = RUN_FILES,
                     resume: bool = False) -> Path | None:
    """Make `out` free for a new run: refuse (one line) when it holds one, or with `force` move
    the whole folder aside (on the main rank only); with `resume` the run there is continued.
    Returns where the old run went, or None. Every rank calls this before any rank writes into
    `out` (then a barrier): without `force` all of them see the same files and refuse alike."""
    check_force_resume(force, resume)
    out = Path(out)
    if resume:
        return None
    if not force:
        refuse_held_run(out, names)
        return None
    if not run_files(out, names):
        return None
    # Every rank refuses alike, before the move would leave the shell in a moved folder.
    check_not_around_cwd(out, "--force moves its folder aside whole", "run from another folder")
    if not main:
        return None
    target = aside_name(out)
    os.rename(out, target)
    print(f"moved the previous run in {out} aside to {target}", flush=True)
    return target


def refuse_held_run(out: Path, names: tuple[str, ...] = RUN_FILES, resumable: bool = True) -> None:
    """One line when `out` holds any of a run's files (`names`), finished or not: a checkpoint
    folder without `latest` is a run killed before its first checkpoint, whose config.json a new
    run would replace. `resumable`: the command has a --resume to offer."""
    found = run_files(Path(out), names)
    if found:
        resume = "continue it with --resume, " if resumable else ""
        raise InputError(f"{out} already holds a run ({', '.join(found)}): {resume}use another --out, or pass "
                         f"--force to move it aside to {Path(out).name}.old-<time>")


def check_not_a_train_run(out: Path, force: bool) -> None:
    """`ttt --out` a folder holding a `train` or `import-checkpoint` run (their files, none of
    ttt's own): one line naming which, since neither --resume (another kind of run) nor writing
    into it (its submission replaced) is meant."""
    out = Path(out)
    trained = run_files(out, RUN_FILES)
    if force or not trained or run_files(out, TTT_OWN_FILES):
        return
    imported = run_files(out, (IMPORT_RECORD,))
    kind = "an imported run (import-checkpoint)" if imported else "a trained run"
    raise InputError(f"{out} holds {kind} ({', '.join(imported + trained)}), not a ttt run: use another --out "
                     f"(--checkpoint {out} starts ttt from its weights), or pass --force to move it aside to "
                     f"{out.name}.old-<time>")


def check_apart(out: Path, other: Path, flag: str) -> None:
    """One line when the run folder `out` is the folder of `flag` (`other`), is inside it or holds
    it: a run's files would mix with what is there, and --force would move it aside with the run."""
    run, held = Path(out).resolve(), Path(other).resolve()
    if run.is_relative_to(held) or held.is_relative_to(run):
        where = "is" if run == held else "is inside" if run.is_relative_to(held) else "holds"
        raise InputError(f"--out {out} {where} the {flag} folder {other}: a run and its {flag} folder must "
                         "be apart (neither inside the other)")


def check_not_a_ttt_run(out: Path, force: bool) -> None:
    """`train --out` a folder holding a `ttt` run (ttt's own files), with or without --resume: one
    line naming it, since training it on would leave ttt's submission and plan behind its
    checkpoints (the mirror of check_not_a_train_run)."""
    out = Path(out)
    found = run_files(out, TTT_OWN_FILES)
    if force or not found:
        return
    raise InputError(f"{out} holds a ttt run ({', '.join(found)}), not a train run: continue it with "
                     f"`arc-trm ttt --out {out} --resume`, use another --out, or pass --force to move it aside to "
                     f"{out.name}.old-<time>")


def make_output_folder(out: Path) -> None:
    """Create the run folder `out` (parents included), or one line saying why it cannot be: a
    file in the way, or a place that cannot be written. Called before any compute."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {out}: cannot create the run folder ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"--out {out}: the folder is not writable")


def truncate_metrics(path: Path, step: int) -> int:
    """Drop the lines of a metrics file logged after `step` (and a line cut short by a kill, or any
    other that is no metrics record: `plot` refuses those), so that a resumed run continues the
    curve instead of repeating it. Returns lines dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    text = path.read_text()
    kept, dropped = [], 0
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        logged = record.get("step") if isinstance(record, dict) else None
        if not is_number(logged) or logged > step:
            dropped += 1  # int() of a "step" that is no number stopped --resume with a traceback
            continue
        kept.append(line)
    if dropped or (text and not text.endswith("\n")):
        write_text_atomic(path, "".join(f"{line}\n" for line in kept))
    return dropped
