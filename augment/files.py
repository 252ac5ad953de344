"""Writing files atomically and reading JSON, for every package (torch-free).

A writer goes to a temporary file beside its target, is flushed and fsynced, and is then renamed
onto the target with os.replace, so a reader sees the old file or the new one and never half of
one, whatever kills the process. Readers turn a missing or malformed file into a one-line
InputError that names the file.
"""

from __future__ import annotations

import codecs
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator

from .console import eprint
from .errors import InputError


@contextmanager
def atomic_writer(path: str | Path, *, binary: bool = False) -> Iterator[IO]:
    """Open a temporary file beside `path` (text, or bytes with `binary`); on a clean exit, fsync it
    and os.replace it onto `path`. Any failure leaves the previous file (if any) untouched and
    removes the temporary."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8") as f:
            yield f


def _mode_for(path: Path) -> int:
    """mkstemp creates 0600; keep an existing file's mode, else the usual rw-r--r--."""
    return path.stat().st_mode & 0o777 if path.exists() else 0o644


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file name beside `path`, for writers that take a name, not a file object
    (safetensors' save_file); on a clean exit the file gets the mode of the file it replaces (else
    0644), is fsynced and renamed onto `path`. A failure removes it and leaves `path` as it was."""
    path = Path(path)
    if path.is_dir():  # os.replace would fail only after the work, with a traceback
        raise InputError(f"cannot write {path}: it is a folder; give a file name inside it")
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _mode_for(path))  # the writer may have made a new file: its mode, not mkstemp's
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; not possible everywhere (e.g. Windows), so best effort."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def write_json_atomic(path: str | Path, obj: object, *, indent: int | None = None) -> None:
    """Write `obj` as JSON plus a newline, atomically (compact unless `indent` is given)."""
    with atomic_writer(path) as f:
        if indent is None:
            json.dump(obj, f, separators=(",", ":"))
        else:
            json.dump(obj, f, indent=indent)
        f.write("\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write text atomically (see atomic_writer)."""
    with atomic_writer(path) as f:
        f.write(text)


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file, a leading byte-order mark dropped (Windows editors write one; JSON readers
    may ignore it, RFC 8259 §8.1); InputError (one line) when it is missing or unreadable."""
    path = Path(path)
    if path.is_dir():  # "not found" would send the user looking for a path that is there
        raise InputError(f"{path}: {what} is a folder; give the file")
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read {what}: {e.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        # PowerShell 5's `>` and Out-File write UTF-16 with a byte-order mark: say so, not "invalid start byte".
        if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            raise InputError(f"{path}: {what} is UTF-16 text; save it as UTF-8") from None
        raise InputError(f"{path}: {what} is not UTF-8 text ({e.reason})") from None


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """An object's keys, each once: json keeps the last of two silently (a task lost, say)."""
    out = dict(pairs)
    if len(out) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def _loads(text: str, path: str | Path, what: str) -> object:
    """json.loads, each failure but malformed JSON (JSONDecodeError, which the caller words) one
    InputError line: an object naming a key twice, nesting too deep, a number too long."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError:
        raise
    except _DuplicateKey as e:
        raise InputError(f"{path}: {what} names the key {e.args[0]!r} twice in one object (JSON keeps only the "
                         "last); rename or remove one") from None
    except RecursionError:  # e.g. [[[[... 100,000 deep: Python's parser gives up, with a traceback
        raise InputError(f"{path}: {what} nests its JSON too deeply to read") from None
    except ValueError as e:  # a number of more than 4,300 digits, which Python refuses to convert
        raise InputError(f"{path}: {what} cannot be read: {str(e).splitlines()[0]}") from None


def read_json(path: str | Path, what: str = "file") -> object:
    """Parse a JSON file; InputError (one line) when it is missing, unreadable or malformed."""
    text = read_text(path, what)
    try:
        return _loads(text, path, what)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: malformed JSON in {what} at line {e.lineno} column {e.colno}: {e.msg}") from None


def read_jsonl(path: str | Path, what: str = "file") -> list[object]:
    """Parse a JSON-lines file, one value per non-blank line; InputError (one line) naming the file
    and the line when it is missing, unreadable or a line is not JSON."""
    out = []
    for n, line in enumerate(read_text(path, what).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(_loads(line, path, f"line {n} of {what}"))
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: line {n} of {what} is not JSON: {e.msg}") from None
    return out


def check_not_around_cwd(out: str | Path, does: str, advice: str) -> None:
    """One line when `out` is or holds the current folder, which `does` would move or remove:
    the shell would be left in a folder that is gone or elsewhere."""
    here = Path.cwd().resolve()
    if here == Path(out).resolve() or Path(out).resolve() in here.parents:
        raise InputError(f"{out}: holds the folder you are in, and {does}: {advice}")


def check_replaceable(out: str | Path, is_previous: Callable[[Path], bool], what: str) -> None:
    """One line unless `out` is absent, an empty folder, or an earlier `what` (is_previous), and
    does not hold the current folder: the guard of every command that replaces a whole folder
    (build, export, kaggle bundle's two), so none deletes a run or the folder the shell is in."""
    out = Path(out)
    check_not_around_cwd(out, f"{what} replaces its folder whole", "give a folder inside it or run from another folder")
    if out.exists() and not (out.is_dir() and (is_previous(out) or not any(out.iterdir()))):
        raise InputError(f"{out} exists and is not {what}; refusing to replace it (use a new or empty folder)")


def replace_folder(tmp: str | Path, out: str | Path, is_previous: Callable[[Path], bool], what: str,
                   placed: Callable[[], None] | None = None) -> None:
    """Move the finished folder `tmp` to `out`. An earlier `what` there is removed only afterwards;
    anything else but an empty folder is refused (check_replaceable). `placed` is called once `out`
    holds the new folder, before a signal held across the swap goes on (so the caller can tell a
    signal after its work from one during it)."""
    tmp, out = Path(tmp), Path(out)
    check_replaceable(out, is_previous, what)
    old, swapped = None, False
    try:
        with signals_held():  # between the two renames a signal would leave neither folder at `out`
            if out.exists():
                if any(out.iterdir()):
                    old = out.parent / f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}"
                    out.rename(old)
                else:
                    out.rmdir()
            tmp.rename(out)
            swapped = True
            if placed is not None:
                placed()
    finally:  # also when a signal held until now stops the command
        if old is not None and swapped:
            shutil.rmtree(old, ignore_errors=True)
        elif old is not None:  # the new folder did not take its place: the earlier one goes back
            old.rename(out)


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, then go to the handlers that were in place
    (main thread only, where Python handles signals; a thread mask would not do: the kernel hands a
    process's signal to any thread that does not block it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)  # None: set outside Python
        if received:
            signal.raise_signal(received[0])


class Placed:
    """replace_folder's `placed` for a command: called once its work is at its final name, so a
    signal from then on comes after the work (finished_first). `value`: what the caller passed, for
    the line that says what is complete."""

    def __init__(self) -> None:
        self.done = False
        self.value: object = None

    def __call__(self, value: object = None) -> None:
        self.done, self.value = True, value


def finished_first(what: str, work: Callable[[Placed], int], kept: Callable[[Placed], str]) -> int:
    """Run work(placed) and return its exit status. A signal that stops it (KeyboardInterrupt: the
    CLI's Interrupted, or a Ctrl-C) before `placed` was called goes on: the CLI says the command was
    interrupted, and the output is as it was. One after it (held across the folder swap, or as the
    summary is printed) found the work whole: it says so, `kept(placed)` naming what is complete, and
    returns 128 + signum, the code the sender expects. Build and kaggle bundle share this line."""
    placed = Placed()
    try:
        return work(placed)
    except KeyboardInterrupt as e:
        if not placed.done:
            raise
        signum = getattr(e, "signum", signal.SIGINT)
        eprint(finished_line(signal.Signals(signum).name, what, kept(placed)))
        return 128 + signum


def finished_line(signame: str, what: str, kept: str) -> str:
    """The line of a command whose work was whole when a signal stopped it (`kept`: what is complete)."""
    return f"{signame}: received at the end; the {what} finished first: {kept}"


def folder_bytes(folder: str | Path) -> int:
    """The size of the files under `folder` (links not followed: a link's own size, not its target's)."""
    return sum(os.lstat(os.path.join(root, name)).st_size for root, _, names in os.walk(folder) for name in names)
