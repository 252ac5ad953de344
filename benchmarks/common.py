"""Shared helpers for the model benchmarks (train_step.py, halting.py).

- `set_threads`: pin the CPU thread count (torch intra-op and the OMP/MKL environment) before work.
- `machine_line`: device, threads and the load average, so a number is never quoted without
  saying how busy the machine was.
- `Timer`: wall time that synchronises the accelerator before reading the clock.
- `matmul_peak`: a measured matmul throughput in the same process, the denominator of MFU.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from arc_trm.common import synchronize  # re-exported for the benchmarks


def set_threads(n: int | None) -> int:
    """Use `n` CPU threads (default: all cores the process may run on). Returns the count used."""
    if n is None or n <= 0:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:
            n = os.cpu_count() or 1
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    torch.set_num_threads(n)
    return n


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but torch sees no CUDA device")
    return torch.device(name)


def add_device_arguments(ap: argparse.ArgumentParser) -> None:
    """--device, --threads, --seed and --json, the same in every model benchmark."""
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (default: cuda when available)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads (default: 1 on a CPU run, all cores on CUDA). On a shared machine more "
                         "threads than free cores makes OpenMP barriers stall: 2 threads on 2 busy cores ran "
                         "~30x slower than 1 here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")


def setup_device(args: argparse.Namespace) -> tuple[torch.device, int]:
    """The device, and the CPU threads pinned: 1 on CPU unless --threads says otherwise (with 2
    threads on 2 busy cores, OpenMP barriers stall a step about 30x)."""
    device = pick_device(args.device)
    threads = set_threads(args.threads if args.threads else (None if device.type == "cuda" else 1))
    return device, threads


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return (float("nan"),) * 3


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    # The kernels torch picks (AVX2, AVX512, ...) change float round-off, so a run repeats bit for
    # bit only on a machine with the same capability.
    return (f"CPU {cpu_model()} {platform.machine()}, {torch.backends.cpu.get_cpu_capability()} "
            f"({os.cpu_count()} logical cores)")


def machine_info(device: torch.device) -> dict:
    one, five, fifteen = load_average()
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15": [round(one, 2), round(five, 2), round(fifteen, 2)],
    }


def machine_line(info: dict) -> str:
    la = info["loadavg_1_5_15"]
    return (f"device {info['device']}, torch {info['torch']}, {info['threads']} CPU threads of "
            f"{info['cpu_count']}, load average {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1 / 5 / 15 min)")


class Timer:
    """`with Timer(device) as t: ...` then t.seconds; synchronises the device on both ends."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        synchronize(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._t0


@dataclass
class MatmulPeak:
    dtype: str
    size: int
    seconds: float  # best single matmul
    tflops: float  # 2 n^3 / best time

    def to_dict(self) -> dict:
        return asdict(self)


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10,
                warmup: int = 3) -> MatmulPeak:
    """Best-of-`repeats` throughput of one size^3 matmul (2 size^3 FLOP). On CUDA each repeat is
    timed with CUDA events around 5 back-to-back matmuls (kernel time, launch overhead hidden);
    on CPU with perf_counter around one matmul."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    flop = 2.0 * size**3
    for _ in range(warmup):
        torch.matmul(a, b, out=out)
    synchronize(device)
    best = float("inf")
    if device.type == "cuda":
        inner = 5
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                torch.matmul(a, b, out=out)
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1000.0 / inner)
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
    del a, b, out
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return MatmulPeak(str(dtype).removeprefix("torch."), size, best, flop / best / 1e12)


@dataclass
class CopyBandwidth:
    bytes_moved: float  # read + written per copy
    seconds: float  # best copy
    gb_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def copy_bandwidth(device: torch.device, megabytes: int = 256, repeats: int = 5) -> CopyBandwidth:
    """Best-of-`repeats` device-memory bandwidth of one large copy, counting bytes read plus written."""
    n = megabytes * 2**20 // 4
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        with Timer(device) as t:
            dst.copy_(src)
        best = min(best, t.seconds)
    moved = 2.0 * src.numel() * src.element_size()
    return CopyBandwidth(moved, best, moved / best / 1e9)
