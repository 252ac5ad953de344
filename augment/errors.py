"""The project's error types: a user-facing error the CLI prints as one line, no traceback."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input (a file, a flag, a checkpoint). The CLI prints it as one line, no traceback."""


class TaskError(InputError):
    """Bad task input. The message names the file, the task and the example."""

    def __init__(self, message: str, *, path: str | Path | None = None, task_id: str | None = None,
                 where: str | None = None):
        parts = [str(p) for p in (path, f"task {task_id!r}" if task_id else None, where) if p]
        super().__init__(": ".join(parts + [message]))
        self.path, self.task_id, self.where = path, task_id, where
