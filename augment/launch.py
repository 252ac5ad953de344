"""What the launcher told this process: torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and
LOCAL_WORLD_SIZE; a plain run is rank 0 of 1. Torch-free, so it can be read before torch loads
(ttt writes its fallback first)."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from dataclasses import dataclass
from typing import NoReturn


@dataclass(frozen=True)
class Launch:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # processes on this node

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def many(self) -> bool:
        return self.world > 1


def launch() -> Launch:
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    return Launch(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")),
                  int(env.get("LOCAL_WORLD_SIZE", str(world))))


# What gloo and NCCL say when another process of the job has gone.
PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "remote process exited")


def peer_gone(error: BaseException) -> str | None:
    """Under torchrun, the words of `error` that say another process of the job has ended (its
    collective cannot finish); None for any other error."""
    return next((words for words in PEER_GONE if words in str(error)), None) if launch().many else None


def exit_process(code: int) -> NoReturn:
    """End this process with `code`. Under torchrun, without the interpreter's finalization: a gloo
    worker thread that still holds the last collective's tensors takes the GIL to free them, which
    a finalizing interpreter answers by ending the thread, and C++ aborts the rank (SIGABRT,
    "terminate called without an active exception"). torchrun then reports a finished run as failed.
    What the interpreter does before it finalizes still runs, in its order: threads' exit (a build's
    joblib workers are told to stop there), then the exit handlers (which wait for those workers,
    and remove joblib's folders in /dev/shm)."""
    if launch().many:
        getattr(threading, "_shutdown", lambda: None)()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
