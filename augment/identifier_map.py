"""What each puzzle-table row of a checkpoint means, saved beside it as identifiers.json:

    {"identifiers":   ["<blank>", "task#0", "task#1", ...],   row -> identifier
     "augmentations": ["", "t0p0123456789", ...],             row -> Augmentation.to_str()
     "task_hashes":   {"task": "<content hash>", ...}}        task id -> task_hash.content_hash, or null

The content hash is kept per task, not per row: every row of a task id has the same one (a map
never holds one id under two contents), and a published-size table has 1.2 M rows over about
1,000 tasks (the per-row list was 45 MB of the file). A row's task is its identifier up to the
last '#' (grids.task_of); the blank row 0 and a lean export's mean row name no task. Files written
before this hold a per-row list ("" for row 0); they read to the same map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .grids import task_of


@dataclass(frozen=True)
class IdentifierMap:
    """A row trained under one meaning must not be reused under another (another build seed or
    role draws other augmentations; another release of a set changes a task under the same id)."""

    identifiers: list[str]  # row -> "task_id#k" ("<blank>" for row 0)
    augmentations: list[str]  # row -> Augmentation.to_str() ("" for row 0)
    task_hashes: dict[str, str] | None  # task id -> task_hash.content_hash; None if not recorded

    def to_json(self) -> dict:
        return {"identifiers": self.identifiers, "augmentations": self.augmentations,
                "task_hashes": self.task_hashes}

    @classmethod
    def from_json(cls, data: object, path: str | Path) -> "IdentifierMap":
        """The map an identifiers.json at `path` holds (either hash format); InputError naming
        `path` when it is not one."""
        idents = data.get("identifiers") if isinstance(data, dict) else None
        augs = data.get("augmentations") if isinstance(data, dict) else None
        if not (isinstance(idents, list) and isinstance(augs, list) and len(augs) == len(idents)):
            raise InputError(f"{path}: expected an object with \"identifiers\" and \"augmentations\" lists of one "
                             "length (an arc-trm identifier map)")
        hashes = data.get("task_hashes")  # type: ignore[union-attr]
        if isinstance(hashes, list):
            hashes = per_task_hashes(idents, hashes, path)
        elif hashes is not None:
            check_task_hashes(idents, hashes, path)
        return cls(idents, augs, hashes)

    def task_hash(self, row: int) -> str | None:
        """The content hash of the task of `row` ("" for a row of no task); None if not recorded."""
        if self.task_hashes is None:
            return None
        task = task_of(self.identifiers[row])
        return "" if task is None else self.task_hashes[task]

    def row_key(self, row: int) -> tuple:
        return self.identifiers[row], self.augmentations[row], self.task_hash(row)

    def first_difference(self, other: "IdentifierMap") -> str | None:
        """None when every row means the same; else one line naming the first row that differs."""
        if len(self.identifiers) != len(other.identifiers):
            return f"{len(self.identifiers)} puzzle rows vs {len(other.identifiers)}"
        same_content = None in (self.task_hashes, other.task_hashes) or self.task_hashes == other.task_hashes
        if same_content and self.identifiers == other.identifiers and self.augmentations == other.augmentations:
            return None  # the common case (a resume), without a task look-up per row
        for r in range(len(self.identifiers)):
            a, b = self.row_key(r), other.row_key(r)
            if a[0] != b[0]:
                return f"row {r} is {a[0]} vs {b[0]}"
            if a[1] != b[1]:
                return (f"row {r} ({a[0]}) is augmentation {a[1]} vs {b[1]} (another build seed or task role)")
            if None not in (a[2], b[2]) and a[2] != b[2]:
                return f"row {r} ({a[0]}): the task's content changed"
        return None


def per_task_hashes(identifiers: list[str], hashes: list[object], path: str | Path) -> dict[str, str]:
    """An older file's per-row hash list as task id -> hash; InputError naming the first task
    whose rows disagree (that map would hold one id under two contents)."""
    if len(hashes) != len(identifiers):
        raise InputError(f"{path}: {len(hashes)} task hashes for {len(identifiers)} rows (a damaged identifier map)")
    out: dict[str, str] = {}
    for ident, content in zip(identifiers, hashes):
        task = task_of(ident) if isinstance(ident, str) else None
        if task is None:  # row 0, a lean export's mean row: no task, saved as ""
            continue
        if not isinstance(content, str):
            raise InputError(f"{path}: task hash of {ident!r} is {content!r}, not a string (a damaged identifier map)")
        if out.setdefault(task, content) != content:
            raise InputError(f"{path}: the rows of task {task} were saved under two contents ({out[task]} and "
                             f"{content}); this identifier map is damaged, so its rows cannot be matched to tasks")
    return out


def check_task_hashes(identifiers: list[str], hashes: object, path: str | Path) -> None:
    """InputError naming `path` unless `hashes` maps every task of `identifiers` to a string."""
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise InputError(f"{path}: \"task_hashes\" is not a list or null, so expected a JSON object of task id -> hash")
    tasks = {task_of(i) for i in identifiers if isinstance(i, str)}
    missing = sorted(t for t in tasks if t is not None and t not in hashes)
    if missing:
        raise InputError(f"{path}: no content hash for task {missing[0]}"
                         f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''} (a damaged identifier map)")
