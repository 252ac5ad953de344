"""SIGINT and SIGTERM during `train` and `ttt`: finish the step, checkpoint, say how to continue.

While a `StopRequest` is installed, the first SIGINT or SIGTERM only records the signal; the
training loop reads it at the next step boundary (through the same all-reduce as its deadline,
so that every rank stops at the same step), writes a checkpoint and returns. A second SIGINT, or
a signal outside a graceful section (a build, a plan), raises `Interrupted` at once. A later
SIGTERM is ignored: on Ctrl-C, torchrun forwards one to its workers (and waits 30 s for them).

Torch-free: `arc-trm ttt` imports this before torch loads.
"""

from __future__ import annotations

import os
import shlex
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A signal that stops the command at once (the CLI prints it and exits 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


@dataclass
class StopRequest:
    """The signal received, if any. `graceful` is True where the caller polls `signum` at step
    boundaries; elsewhere a signal raises `Interrupted` at once."""

    signum: int | None = None
    graceful: bool = False
    _previous: dict[int, object] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str | None:
        return signal_name(self.signum) if self.signum else None

    def handle(self, signum: int, frame: object = None) -> None:
        if not self.graceful:
            raise Interrupted(signum)
        if self.signum is not None:
            if signum == signal.SIGINT:  # Ctrl-C again: the user will not wait for the step
                raise Interrupted(signum)
            return  # torchrun sends its workers SIGTERM after the terminal's SIGINT: already stopping
        self.signum = signum
        # os.write, not print: a handler may run while the main thread is inside a buffered write
        # (tqdm's bar), and a second write into the same buffer raises.
        os.write(2, f"\n{signal_name(signum)}: stopping after the current step with a checkpoint "
                    f"(Ctrl-C again stops at once)\n".encode())

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM while inside (main thread only: elsewhere Python cannot
        install handlers, and the request simply never fires)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for s in SIGNALS:
            self._previous[s] = signal.signal(s, self.handle)
        try:
            yield self
        finally:
            for s, previous in self._previous.items():
                signal.signal(s, previous)
            self._previous.clear()

    @contextmanager
    def polled(self) -> Iterator[StopRequest]:
        """A section whose loop reads `signum` at each step boundary."""
        before, self.graceful = self.graceful, True
        try:
            yield self
        finally:
            self.graceful = before


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_code(signame: str) -> int:
    """The shell's convention for a process ended by a signal: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signal.Signals[signame])


def launcher() -> str:
    """How this process was started, for the command that continues it: torchrun with the same
    number of processes per node, or plain `arc-trm`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if world > 1:
        nodes = f" --nnodes {world // max(local, 1)}" if local != world else ""
        return f"torchrun{nodes} --nproc_per_node {local} -m arc_trm.cli"
    return "arc-trm"


def continue_command(command: str, out: Path, *args: str) -> str:
    """The exact command line that continues the run in `out`."""
    return " ".join([launcher(), command, "--out", shlex.quote(str(out)), *map(shlex.quote, args), "--resume"])


def stopped_line(signame: str, step: int, checkpoint: Path | None, command: str, extra: str = "") -> str:
    """The one line a stopped command prints: where its work is and how to continue."""
    where = f"checkpoint {checkpoint}" if checkpoint is not None else "no checkpoint"
    return f"{signame}: stopped at step {step}, {where}{extra}; continue with: {command}"
