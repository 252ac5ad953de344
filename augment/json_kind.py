"""What a Kaggle-format JSON file holds, judged by its shape: the line for a file given in another
kind's place (a submission as --tasks, the challenges as --solutions) names its kind, not a task.
Also what a JSON number is, and a count written as text, for the readers that check one."""

from __future__ import annotations


def is_number(value: object) -> bool:
    """Whether a JSON value is a number: an int or a float, not a bool (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_digits(text: str) -> bool:
    """Whether `text` is a count int() reads: ASCII digits only ("²".isdigit() is True, and int fails on it)."""
    return text.isascii() and text.isdigit()


def is_one_task(data: object) -> bool:
    """Whether JSON is one task ({"train": [...], "test": [...]}), not a mapping of task ids."""
    return isinstance(data, dict) and (isinstance(data.get("train"), list) or isinstance(data.get("test"), list))


def json_kind(data: object) -> str | None:
    """What Kaggle-format JSON holds, judged by its shape (for a message when a file is given in
    another's place; not a validation): "task" (one), "challenges" {id: task}, "submission"
    {id: [{"attempt_1": grid, "attempt_2": grid}, ...]} or "solutions" {id: [grid, ...]}; else None."""
    if not isinstance(data, dict) or not data:
        return None
    if is_one_task(data):
        return "task"
    values = list(data.values())
    if all(map(is_one_task, values)):
        return "challenges"
    if any(isinstance(v, list) and v and isinstance(v[0], dict) and set(v[0]) & {"attempt_1", "attempt_2"}
           for v in values):
        return "submission"
    if all(isinstance(v, list) and v and isinstance(v[0], list) and v[0] and isinstance(v[0][0], list)
           for v in values):
        return "solutions"
    return None
