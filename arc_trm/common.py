"""Process and device runtime: one `Dist` handle for rank, world and device, passed everywhere.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; a plain `python` or `arc-trm` run is rank 0 of 1.
NCCL is used between GPUs, gloo between CPU processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from arc_trm.stopping import StopRequest
from augment.launch import launch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """auto = CUDA, then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


def setup(device: str = "auto") -> Dist:
    """Join the torchrun process group (if any) and choose this rank's device."""
    launched = launch()
    chosen = pick_device(device, launched.local_rank)
    if not launched.many:
        return Dist(device=chosen)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), launched.local_rank, chosen)


def agree_on_signal(stop: StopRequest, d: Dist) -> None:
    """Under torchrun, every rank takes the signal any rank has received (StopRequest.agree), so
    all exit with its code and one says the line: at the end of training, and of ttt's run."""
    if d.world > 1:
        flags = torch.tensor([float(stop.signum or 0)], device=d.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        stop.agree(int(flags.item()), d.main)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def print0(d: Dist, *args: object) -> None:
    if d.main:
        print(*args, flush=True)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timing, deadlines); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class CompiledOrEager:
    """`torch.compile(fn)` that falls back to `fn` itself, with one printed line, when
    compilation fails (no C compiler, an unsupported GPU, a torch bug). Compilation happens at
    the first call of each new input shape, so every call may still fall back."""

    def __init__(self, fn, backend: str = "inductor"):
        self.eager = fn
        self.compiled = torch.compile(fn, backend=backend)
        self.failed = False

    def __call__(self, *args, **kwargs):
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except torch._dynamo.exc.TorchDynamoException as e:  # compile errors; real errors re-raise below
                self.failed = True
                reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
                print(f"warning: torch.compile failed ({type(e).__name__}: {reason}); running eager", flush=True)
        return self.eager(*args, **kwargs)


def wants_compile(setting: str, device: torch.device) -> bool:
    """train.compile: "auto" compiles on CUDA only (CPU compilation costs minutes and gains little)."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")
