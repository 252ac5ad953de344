"""Benchmark: how fast the on-the-fly loader assembles training batches, against a GPU step.

Batches are sampled as in training (REFERENCE §6): random task groups, one random augmented version per
task, that version's examples fill the batch, up to 768 examples. The loader applies each row's
dihedral map and colour permutation and each example's translation to the stored source grids.

The GPU side is estimated analytically: one TRM training step at batch 768 is about 2.4e14 FLOP; at
50% of an H100's 989 TFLOP/s bf16 peak that is about 0.49 s, i.e. about 1,580 examples/s. The ratio
printed is loader examples/s (one CPU core) over that.

    python benchmarks/loader.py [--data BUILD_DIR] [--batches 40]

Without --data (or when the folder holds no build) it builds ARC-AGI-2 at 1000 augmentations into a
temporary folder first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH = 768
STEP_FLOP = 2.4e14
H100_BF16 = 989e12
MFU = 0.5


def sample_batch(bs, rng: np.random.Generator, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    bounds = bs.group_bounds
    rows, ex = [], []
    n = 0
    while n < batch:
        g = bounds[rng.integers(len(bounds))]
        row = int(rng.integers(g[0], g[1]))
        k = min(bs.num_train_examples(row), batch - n)
        rows.append(np.full(k, row))
        ex.append(np.arange(k))
        n += k
    return np.concatenate(rows), np.concatenate(ex)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--batches", type=int, default=40)
    args = ap.parse_args()
    try:  # one core, as a single loader process would have
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    from augment.build import build_set
    from augment.options import BuildOptions
    from augment.store import BuiltSet
    from augment.tasks import load_tasks

    tmp = None
    if args.data is not None and (args.data / "metadata.json").exists():
        bs = BuiltSet.open(args.data)
    else:
        tmp = tempfile.mkdtemp(prefix="arc-trm-loader-")
        print("building arc-agi-2 at 1000 augmentations into a temporary folder ...", flush=True)
        bs = build_set(load_tasks("arc-agi-2"), Path(tmp) / "built", BuildOptions(augmentations=1000, progress=False))
    print(bs)
    rng = np.random.default_rng(0)
    x, y = bs.train_batch(*sample_batch(bs, rng))  # warm up: memory-maps, caches
    assert x.shape == (BATCH, bs.canvas ** 2) and y.shape == x.shape

    t_sample = t_build = 0.0
    for _ in range(args.batches):
        t0 = time.perf_counter()
        rows, ex = sample_batch(bs, rng)
        t1 = time.perf_counter()
        x, y = bs.train_batch(rows, ex)
        t2 = time.perf_counter()
        t_sample += t1 - t0
        t_build += t2 - t1
    per_batch = (t_sample + t_build) / args.batches
    loader_rate = BATCH / per_batch
    gpu_step = STEP_FLOP / (MFU * H100_BF16)
    gpu_rate = BATCH / gpu_step
    print(f"batch {BATCH}: {per_batch * 1e3:.1f} ms per batch on one core "
          f"(sampling {t_sample / args.batches * 1e3:.1f} ms, assembling {t_build / args.batches * 1e3:.1f} ms)")
    print(f"loader {loader_rate:,.0f} examples/s")
    print(f"GPU step (analytic): {STEP_FLOP:.1e} FLOP at {MFU:.0%} of {H100_BF16 / 1e12:.0f} TFLOP/s = "
          f"{gpu_step:.3f} s -> {gpu_rate:,.0f} examples/s")
    print(f"ratio loader / GPU: {loader_rate / gpu_rate:.1f}x")
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
