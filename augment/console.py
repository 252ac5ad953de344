"""What the terminal shows. Progress bars are drawn only on a terminal: in a log file (a batch
job, a Kaggle notebook's log) tqdm's redraws pile up on one line of carriage returns, so there
each long loop prints plain lines or a summary instead. Lines to stderr go out in one write."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from .launch import launch


def bar_shown(enabled: bool) -> bool:
    """Whether a bar asked for (`enabled`) is drawn: only when stderr is a terminal."""
    return enabled and sys.stderr.isatty()


def progress_bar(enabled: bool, **kwargs) -> tqdm:
    """A tqdm bar on stderr, drawn when bar_shown(enabled)."""
    return tqdm(disable=not bar_shown(enabled), file=sys.stderr, dynamic_ncols=True, **kwargs)


def add_progress_argument(parser: argparse.ArgumentParser, instead: str = "") -> None:
    """--no-progress, the same flag and wording on every command (`instead`: what the command
    prints when no bar is drawn)."""
    what = f": {instead} instead" if instead else ""
    parser.add_argument("--no-progress", action="store_true",
                        help=f"no progress bar{what}, as when stderr is not a terminal")


def eprint(*parts: object) -> None:
    """print(*parts) to stderr in one write: print writes the text and its newline apart, and
    under torchrun the ranks share one terminal or pipe, where another rank's line can land
    between the two."""
    sys.stderr.write(" ".join(map(str, parts)) + "\n")
    sys.stderr.flush()


def warn_once(message: str) -> None:
    """`warning: MESSAGE` on stderr from one process: under torchrun every rank reads the same
    input, and each would say the same line."""
    if launch().main:
        eprint(f"warning: {message}")


def counted(n: int, noun: str) -> str:
    """'1 task', '3 tasks': a count with its noun in the number a user line needs."""
    return f"{n} {noun if n == 1 else noun + 's'}"


def size_text(n_bytes: int) -> str:
    """0.24 MB, 45.1 MB, 312 MB, 1.25 GB: a size as every summary line shows it (three figures)."""
    mb = n_bytes / 1e6
    if mb >= 999.5:
        return f"{mb / 1e3:.2f} GB"
    return f"{mb:.2f} MB" if mb < 9.995 else f"{mb:.1f} MB" if mb < 99.95 else f"{mb:.0f} MB"


def duration_text(seconds: float, tenths: bool = False) -> str:
    """45s, 3m05s, 2h07m: a duration as a log line shows it. With `tenths`, one under 10 s keeps its
    tenths (0.4s, and <0.1s for less), so a small reserve does not read as none."""
    if tenths and seconds < 9.95:
        return "<0.1s" if 0 < seconds < 0.05 else f"{max(0.0, seconds):.1f}s"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
