"""Run `arc-trm ARGS` in this process and send it a real signal at one exact point of its run:

  python tests/signal_at.py MODULE:FUNCTION N SIGNAME ARGS...    (or MODULE:CLASS.METHOD)

The N-th call of MODULE.FUNCTION first sends SIGNAME to this process, then runs as usual (several
targets, comma-separated: each at its own N-th call, for a second signal after a first). Under
torchrun every rank does so, as a Ctrl-C forwarded to each; with SIGNAL_AT_RANK=R only rank R. The
tests of tests/test_signal_points.py use it where a signal must land in a gap too short to hit
from outside (between two tasks, in a build, in the final prediction) without a timed race.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys

from augment.console import eprint
from augment.launch import exit_process


def signal_at(target: str, n: int, signum: int) -> None:
    """Wrap MODULE.FUNCTION so that its n-th call sends `signum` to this process first."""
    module_name, path = target.split(":")
    *owners, name = path.split(".")  # a function, or Class.method
    module = functools.reduce(getattr, owners, importlib.import_module(module_name))
    original = getattr(module, name)
    calls = 0

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == n and os.environ.get("SIGNAL_AT_RANK", os.environ.get("RANK", "0")) == os.environ.get("RANK", "0"):
            eprint(f"signal_at: {signal.Signals(signum).name} at call {n} of {target}")
            os.kill(os.getpid(), signum)  # Python runs the handler before the next bytecode
        return original(*args, **kwargs)

    setattr(module, name, wrapped)


if __name__ == "__main__":
    target, n, signame, *args = sys.argv[1:]
    for each in target.split(","):
        signal_at(each, int(n), signal.Signals[signame])
    rank = os.environ.get("RANK")
    if rank is not None:  # torchrun SIGTERMs the other ranks once one exits: each still reports its own code
        signal.signal(signal.SIGTERM, lambda signum, frame: None)  # (the command's guard has its own handler)
    from arc_trm.cli import main

    code = main(args)
    if rank is not None:
        eprint(f"signal_at: rank {rank} exits {code}")
    exit_process(code)
