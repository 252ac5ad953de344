"""SIGINT and SIGTERM: finish the step, checkpoint, say what was kept and how to continue.

The CLI runs every command under one `StopRequest` (`guarded`), from after argument parsing to
its exit status, so a signal at any point ends the same way: one line, 128 + the signal's number.
Inside a graceful section (`polled`: training steps, the writes of a prediction) the first
SIGINT or SIGTERM only records the signal; the training loop reads it at the next step boundary
(through the same all-reduce as its deadline, so that every rank stops at the same step), writes
a checkpoint and returns. A second signal, or a signal outside a graceful section (a build, a
plan, the gap between two tasks), raises `Interrupted` at once; under torchrun, a second SIGTERM
is ignored: torchrun forwards the signal it gets to every worker (and waits 30 s for them), and a
scheduler that signals the whole job reaches each worker a second time that way.

The line: a command keeps `describe` current (what its output holds now, and the command that
continues); a command that stops its own loop prints its line itself and returns the code. A
command that finished its work though a signal arrived in a graceful section returns 0: the
guard then prints `describe` and exits with the signal's code all the same (the work is whole,
and a scheduler that sent SIGTERM sees the code it expects).

Under torchrun the line is said once: where the ranks agreed on the signal (at a step's check, or
`agree` once training or ttt's run ends), by rank 0; where a signal stopped ranks at once (a
Ctrl-C reaches every rank), by the first rank to get there (the process group's store counts
them), so that a signal that reached one rank only is still said.

Torch-free: `arc-trm ttt` imports this before torch loads.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from augment.console import eprint
from augment.launch import launch

SIGNALS = (signal.SIGINT, signal.SIGTERM)
STEP_NOTICE = "stopping after the current step with a checkpoint"


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
    # The line for a signal now, from its name: what is kept and the command that continues.
    describe: Callable[[str], str] | None = None
    notice: str = STEP_NOTICE  # what the graceful section does before it stops, said when the signal comes
    again: str = ""  # the command line as given (the guard's), for a command stopped before it wrote anything
    quiet: bool = False  # torchrun: the ranks agreed on the signal, and rank 0 says the line
    _previous: dict[int, object] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str | None:
        return signal_name(self.signum) if self.signum else None

    def handle(self, signum: int, frame: object = None) -> None:
        if self.signum is not None:
            if signum == signal.SIGTERM and under_torchrun():
                return  # torchrun's forward of a signal this worker has had already: still stopping
            raise Interrupted(signum)  # a second signal: the sender will not wait for the step
        if not self.graceful:
            raise Interrupted(signum)
        self.signum = signum
        # os.write, not print: a handler may run while the main thread is inside a buffered write
        # (tqdm's bar), and a second write into the same buffer raises.
        hint = " (Ctrl-C again stops at once)" if signum == signal.SIGINT else ""  # a SIGTERM had no Ctrl-C
        os.write(2, f"\n{signal_name(signum)}: {self.notice}{hint}\n".encode())

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM while inside (main thread only: elsewhere Python cannot
        install handlers, and the request simply never fires). Installed already (the CLI's
        request, which `current` hands out): nothing changes, and its handlers stay."""
        global _active
        if threading.current_thread() is not threading.main_thread() or self._previous:
            yield self
            return
        for s in SIGNALS:
            self._previous[s] = signal.signal(s, self.handle)
        outer, _active = _active, self
        try:
            yield self
        finally:
            _active = outer
            for s, previous in self._previous.items():
                signal.signal(s, previous)
            self._previous.clear()

    def agree(self, signum: int, main: bool) -> None:
        """Take the signal the ranks agreed on (0: none), which a signal may have reached only some
        of: every rank exits with its code, and rank 0 alone says the line."""
        if signum:
            self.signum, self.quiet = signum, not main

    def say(self, line: str) -> None:
        """Print the stop line, once per torchrun run (see the module's docstring)."""
        if not self.quiet and first_to_say():
            eprint(line)

    def line(self, signame: str, command: str) -> str:
        """The one line a signal ends `arc-trm command` with (a command that says nothing of its
        output writes it whole or not at all: running it again is how to continue)."""
        if self.describe is not None:
            return self.describe(signame)
        again = f"; run it again with: {self.again}" if self.again else ""
        return f"arc-trm {command}: interrupted ({signame}){again}"

    @contextmanager
    def polled(self, notice: str = STEP_NOTICE) -> Iterator[StopRequest]:
        """A section that reads `signum` at each step boundary (or finishes before it reads it);
        `notice` says what it does first."""
        before = self.graceful, self.notice
        self.graceful, self.notice = True, notice
        try:
            yield self
        finally:
            self.graceful, self.notice = before


_active: StopRequest | None = None  # the installed request (the CLI's, for the command's whole life)


def current() -> StopRequest:
    """The installed request (under the CLI, the command's), else a new one for the caller to install."""
    return _active or StopRequest()


def guarded(command: str, run: Callable[[], int], argv: list[str] | tuple[str, ...] = ()) -> int:
    """Run a command under one StopRequest, from after its arguments `argv` are parsed to its exit
    status: a signal at any point prints one line (the command's `describe`, else that it was
    interrupted) and exits 128 + the signal's number, also when the command finished first."""
    stop = StopRequest(again=" ".join([launcher(), command, *map(shlex.quote, argv)]))
    try:
        with stop.installed():
            code = run()
    except KeyboardInterrupt as e:  # Interrupted, or a Ctrl-C before the handlers were in place
        signum = getattr(e, "signum", signal.SIGINT)
        stop.say(stop.line(signal_name(signum), command))
        return 128 + signum
    if code == 0 and stop.signum is not None:  # a graceful section kept the signal; the work finished
        stop.say(stop.line(signal_name(stop.signum), command))
        return 128 + stop.signum
    return code


def first_to_say() -> bool:
    """Under torchrun, whether this rank is the first to give a stop line: the process group's
    store counts them. Elsewhere, before the group is joined or once it is gone, True."""
    dist = sys.modules.get("torch.distributed")  # loaded by then if joined: this module stays torch-free
    if not launch().many or dist is None or not dist.is_initialized():
        return True
    try:
        return dist.distributed_c10d._get_default_store().add("arc_trm/stop_lines", 1) == 1
    except RuntimeError:  # the store's host has gone: said twice rather than never
        return True


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_code(signame: str) -> int:
    """The shell's convention for a process ended by a signal: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signal.Signals[signame])


def under_torchrun() -> bool:
    """Whether torchrun (torch.distributed.elastic) started this process (any number of them)."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def launcher() -> str:
    """How this process was started, for the command that continues it: torchrun with the same
    number of processes per node, or plain `arc-trm`."""
    launched = launch()
    if launched.many:
        local = launched.local_world
        nodes = f" --nnodes {launched.world // max(local, 1)}" if local != launched.world else ""
        return f"torchrun{nodes} --nproc_per_node {local} -m arc_trm.cli"
    return "arc-trm"


def continue_command(command: str, out: Path, *args: str) -> str:
    """The exact command line that continues the run in `out`."""
    return " ".join([launcher(), command, "--out", shlex.quote(str(out)), *map(shlex.quote, args), "--resume"])


def stopped_line(signame: str, step: int, checkpoint: Path | None, command: str, extra: str = "") -> str:
    """The one line a stopped command prints: where its work is and how to continue."""
    where = f"checkpoint {checkpoint}" if checkpoint is not None else "no checkpoint"
    return f"{signame}: stopped at step {step}, {where}{extra}; continue with: {command}"
