"""The project's error types: a user-facing error the CLI prints as one line, no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def few_ids(ids: Sequence[str], limit: int = 3) -> str:
    """The first few ids and how many more, for a one-line message."""
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


class InputError(ValueError):
    """Bad user input (a file, a flag, a checkpoint). The CLI prints it as one line, no traceback."""


def missing_extra(need: str, package: str, extra: str) -> InputError:
    """An optional dependency is absent. arc-trm is not on PyPI, so `pip install 'arc-trm[EXTRA]'`
    fails: the line names the package, and the extra for a checkout."""
    return InputError(f"{need} needs {package}: pip install {package} (in an arc-trm checkout: "
                      f"pip install -e '.[{extra}]')")


class TaskError(InputError):
    """Bad task input. The message names the file, the task and the example."""

    def __init__(self, message: str, *, path: str | Path | None = None, task_id: str | None = None,
                 where: str | None = None):
        parts = [str(p) for p in (path, f"task {task_id!r}" if task_id else None, where) if p]
        super().__init__(": ".join(parts + [message]))
        self.path, self.task_id, self.where = path, task_id, where
