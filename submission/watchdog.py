"""Run a command under a watchdog that ends its whole process tree (standard library only, Linux).

The Kaggle notebook runs `arc-trm ttt` (under torchrun when there are several GPUs) through
`run_watched`. Killing the child's process group is not enough there: torchrun starts each worker
in a new session, and joblib/loky workers left over from the build can outlive a crashed ttt. Any
of them holds the output pipe open, so a reader that waits for end-of-file blocks until they die.

So the watchdog:
  - tags the child's environment with a unique token (inherited by every descendant, whatever its
    session), and records each descendant it sees while walking /proc (pid and start time, so a
    recycled pid is never signalled);
  - reads the child's output without blocking (select on a non-blocking pipe), so an orphan
    holding the pipe cannot stall it;
  - on timeout sends SIGTERM to the child, waits up to `grace_s` for the tree to end, then SIGKILLs
    every process still alive in it (descendants, remembered ones and token holders);
  - when the child ends by itself, ends whatever it left behind the same way, with a short grace.
"""

from __future__ import annotations

import codecs
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

TOKEN_VAR = "ARC_TRM_WATCHDOG_TOKEN"
PROC = Path("/proc")
POLL_S = 0.2
LEFTOVER_GRACE_S = 5.0


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    start: int  # clock ticks since boot (field 22 of /proc/PID/stat): pid + start names one process
    state: str  # "Z" for a zombie


@dataclass
class WatchResult:
    """How a watched command ended."""

    returncode: int | None  # None if it never exited, even after SIGKILL (not expected)
    timed_out: bool
    seconds: float
    killed: list[int] = field(default_factory=list)  # pids that needed SIGKILL
    leftovers: list[int] = field(default_factory=list)  # pids still alive after the child ended


def read_stat(pid: int) -> ProcStat | None:
    """One process's parent, start time and state, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return ProcStat(pid, int(rest[1]), int(rest[19]), rest[0])


def all_stats() -> dict[int, ProcStat]:
    stats = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            st = read_stat(int(entry.name))
            if st is not None:
                stats[st.pid] = st
    return stats


def descendants(root: int, stats: Mapping[int, ProcStat]) -> dict[int, int]:
    """{pid: start} of every live process below `root` (root excluded)."""
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found[pid] = stats[pid].start
            todo.extend(children.get(pid, []))
    return found


def token_holders(token: str, stats: Mapping[int, ProcStat]) -> dict[int, int]:
    """{pid: start} of processes whose environment carries TOKEN_VAR=token."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = {}
    for pid, st in stats.items():
        try:
            env = (PROC / str(pid) / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in env.split(b"\0"):
            found[pid] = st.start
    return found


def living(tracked: Mapping[int, int]) -> dict[int, int]:
    """The tracked processes that still exist as the same process and are not zombies."""
    alive = {}
    for pid, start in tracked.items():
        st = read_stat(pid)
        if st is not None and st.start == start and st.state != "Z":
            alive[pid] = start
    return alive


def signal_each(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class Pump:
    """Copies whatever the child wrote to `echo`, never waiting longer than asked."""

    def __init__(self, fd: int, echo: Callable[[str], None]):
        self.fd, self.echo, self.open = fd, echo, True
        os.set_blocking(fd, False)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def pump(self, wait_s: float) -> bool:
        """Read what is there (waiting up to wait_s for the first byte); False when nothing came."""
        if not self.open or not select.select([self.fd], [], [], wait_s)[0]:
            return False
        got = False
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return got
            if not chunk:
                self.open = False
                self.echo(self.decoder.decode(b"", final=True))
                return got
            got = True
            self.echo(self.decoder.decode(chunk))

    def wait(self, wait_s: float) -> None:
        """One poll interval: pump, or once the pipe is closed (select would return at once) sleep."""
        if self.open:
            self.pump(wait_s)
        else:
            time.sleep(wait_s)


def _echo(text: str) -> None:
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


class Tree:
    """Every process of the watched child's tree seen so far."""

    def __init__(self, root: subprocess.Popen, token: str):
        self.root, self.token = root, token
        self.seen: dict[int, int] = {}

    def track(self, with_tokens: bool = False) -> dict[int, int]:
        stats = all_stats()
        self.seen.update(descendants(self.root.pid, stats))
        if with_tokens:
            self.seen.update(token_holders(self.token, stats))
        self.seen.pop(self.root.pid, None)
        return living(self.seen)

    def end(self, grace_s: float, pump: Pump) -> list[int]:
        """Wait up to grace_s for the tree to end (echoing output), then SIGKILL the rest; the pids killed."""
        until = time.monotonic() + grace_s
        while time.monotonic() < until:
            if self.root.poll() is not None and not self.track(with_tokens=True):
                return []
            pump.wait(POLL_S)
        rest = self.track(with_tokens=True)
        if self.root.poll() is None:
            rest[self.root.pid] = -1
        signal_each(sorted(rest), signal.SIGKILL)
        until = time.monotonic() + 2.0
        while living({p: s for p, s in rest.items() if s >= 0}) and time.monotonic() < until:
            time.sleep(0.05)  # SIGKILL is delivered asynchronously
        return sorted(rest)


def run_watched(cmd: Sequence[str], *, timeout_s: float, grace_s: float,
                echo: Callable[[str], None] = _echo, env: Mapping[str, str] | None = None) -> WatchResult:
    """Run cmd, echo its output, and end its whole tree by timeout_s (+ grace_s); see the module doc."""
    start = time.monotonic()
    token = uuid.uuid4().hex
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env={**(os.environ if env is None else env), TOKEN_VAR: token})
    if proc.stdout is None:  # never: stdout=PIPE always gives one
        raise RuntimeError("subprocess.Popen returned no stdout pipe")
    pump, tree = Pump(proc.stdout.fileno(), echo), Tree(proc, token)
    timed_out = False
    while proc.poll() is None and time.monotonic() - start < timeout_s:
        pump.wait(POLL_S)
        tree.track()
    if proc.poll() is None:
        timed_out = True
        echo(f"\nwatchdog: still running after {timeout_s:.0f}s; SIGTERM, then SIGKILL after {grace_s:.0f}s\n")
        signal_each([proc.pid], signal.SIGTERM)
        killed = tree.end(grace_s, pump)
    else:
        leftovers = sorted(tree.track(with_tokens=True))
        if leftovers:
            echo(f"\nwatchdog: the command exited and left {len(leftovers)} processes; ending them\n")
            signal_each(leftovers, signal.SIGTERM)
        killed = tree.end(LEFTOVER_GRACE_S, pump) if leftovers else []
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rc = None
    while pump.pump(0.5):  # the rest of the output; stops at end-of-file or after 0.5 s of silence
        pass
    proc.stdout.close()
    if killed:
        echo(f"watchdog: SIGKILLed {len(killed)} processes\n")
    leftovers = sorted(tree.track(with_tokens=True))
    return WatchResult(rc, timed_out, time.monotonic() - start, killed, leftovers)


def shutdown_worker_pool() -> None:
    """Stop joblib's reusable loky workers, if any were started, so none outlive their use."""
    try:
        from joblib.externals.loky import reusable_executor  # watchdog.py stays standard-library only (it guards the notebook)
    except ImportError:
        return
    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)
