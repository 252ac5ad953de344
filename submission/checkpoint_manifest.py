"""The manifest of a checkpoint folder: its format version and the size and hash of every file.

    RUN/checkpoints/step_0000100/manifest.json
        {"format": 1, "files": {"state.pt": {"bytes": N, "sha256": "..."}, ...}}

Written last, when the checkpoint is committed, so a folder with a manifest is complete. Readers
check the format version and each file's size (cheap: catches truncation); `verify(full=True)`
also checks the hashes (catches a file replaced by another). Torch-free, so `arc-trm kaggle`
can check a checkpoint without importing torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from augment.errors import InputError
from augment.files import read_json, write_json_atomic

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FileRecord:
    bytes: int
    sha256: str


def file_record(path: Path) -> FileRecord:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return FileRecord(path.stat().st_size, h.hexdigest())


def write_manifest(folder: Path) -> None:
    """Record every regular file of `folder` (the manifest itself excepted)."""
    files = {p.name: vars(file_record(p)) for p in sorted(Path(folder).iterdir())
             if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")}
    write_json_atomic(Path(folder) / MANIFEST, {"format": FORMAT_VERSION, "files": files}, indent=2)


def _records(folder: Path) -> dict[str, dict]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder}: no {MANIFEST}; not an arc-trm checkpoint, or one written before "
                         f"checkpoint format {FORMAT_VERSION}")
    data = read_json(path, "checkpoint manifest")
    version = data.get("format") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint format {version!r}, this arc-trm reads format {FORMAT_VERSION}")
    files = data.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(r, dict) and isinstance(r.get("bytes"), int) and isinstance(r.get("sha256"), str)
            for r in files.values()):
        raise InputError(f"{path}: malformed checkpoint manifest ('files' must map names to bytes and sha256)")
    return files


def verify(folder: Path, names: tuple[str, ...], *, full: bool = False) -> None:
    """One-line InputError unless each of `names` is listed, present and of the recorded size
    (and, with `full`, of the recorded hash)."""
    files = _records(folder)
    for name in names:
        path = Path(folder) / name
        record = files.get(name)
        if record is None:
            raise InputError(f"{path}: not listed in {MANIFEST}")
        if not path.is_file():
            raise InputError(f"{path}: checkpoint file missing")
        size = path.stat().st_size
        if size != record["bytes"]:
            raise InputError(f"{path}: {size} bytes where the manifest records {record['bytes']} "
                             "(truncated or replaced)")
        if full and file_record(path).sha256 != record["sha256"]:
            raise InputError(f"{path}: content differs from the manifest's hash (corrupt or replaced)")
