"""Benchmark: build the paper's ARC-AGI-2 recipe at 1000 augmentations and compare with the reference.

Sources: arc-agi-2 (training trains, evaluation is tested) plus ConceptARC as a training source when
../shared/data/conceptarc_challenges.json beside the checkout (or --conceptarc PATH) exists. The build runs as an
`arc-trm build` subprocess; wall time is measured around it and peak memory two ways: the peak of
the summed RSS of the whole process tree (sampled every 50 ms from /proc), and getrusage's
RUSAGE_CHILDREN ru_maxrss (the largest single descendant that was waited for).

    python benchmarks/build.py [--out DIR] [--workers N] [--augmentations 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REFERENCE = {"wall_s": 1017.0, "peak_rss_gb": 21.7, "augmented_tasks": 1_191_729, "train_examples": 5_163_277}
TARGET = {"wall_s": 254.0, "peak_rss_gb": 10.8}
# The checkout sits beside shared/ (as in CI); --conceptarc points elsewhere.
CONCEPTARC = Path(__file__).resolve().parents[2] / "shared" / "data" / "conceptarc_challenges.json"


def tree_rss(root: int) -> int:
    """Summed RSS (bytes) of `root` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
        rss[int(d)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="build folder (default: a temporary one, removed)")
    ap.add_argument("--augmentations", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--conceptarc", type=Path, default=CONCEPTARC)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    sources = ["arc-agi-2"]
    if args.conceptarc.exists():
        sources.append(f"{args.conceptarc}@train")
    else:
        print(f"note: {args.conceptarc} absent; building ARC-AGI-2 only (counts will be lower)")
    tmp = None
    out = args.out
    if out is None:
        tmp = tempfile.mkdtemp(prefix="arc-trm-bench-")
        out = Path(tmp) / "built"
    script = Path(sys.executable).with_name("arc-trm")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "arc_trm.cli"]
    cmd += ["build", "--tasks", ",".join(sources), "--out", str(out), "--augmentations", str(args.augmentations),
            "--force", "--no-progress"]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    print("$", " ".join(cmd), flush=True)

    peak = [0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            done.wait(0.05)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    wall = time.perf_counter() - start
    done.set()
    th.join()
    if rc != 0:
        print(f"build failed with exit code {rc}")
        return rc
    ru_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    ru_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    meta = json.loads((out / "metadata.json").read_text())
    c = meta["counts"]
    size = sum(p.stat().st_size for p in out.iterdir())
    gb = 1e9
    res = {
        "sources": sources, "augmentations": args.augmentations, "workers": args.workers or os.cpu_count(),
        "wall_s": round(wall, 1), "peak_tree_rss_gb": round(peak[0] / gb, 3),
        "max_child_rss_gb": round(ru_children / gb, 3), "bench_self_rss_gb": round(ru_self / gb, 3),
        "tasks": c["tasks"], "augmented_tasks": c["augmented_tasks"], "train_examples": c["train_examples"],
        "test_views": c["test_views"], "bytes": size,
    }
    peak_gb = max(res["peak_tree_rss_gb"], res["max_child_rss_gb"])
    print(f"tasks {c['tasks']} ({c['train_tasks']} train, {c['test_tasks']} test)")
    print(f"augmented tasks {c['augmented_tasks']:,} (reference {REFERENCE['augmented_tasks']:,}, "
          f"ratio {c['augmented_tasks'] / REFERENCE['augmented_tasks']:.4f})")
    print(f"training examples {c['train_examples']:,} (reference {REFERENCE['train_examples']:,}, "
          f"ratio {c['train_examples'] / REFERENCE['train_examples']:.4f})")
    print(f"test views {c['test_views']:,}; build size {size / 1e6:.1f} MB")
    print(f"wall {wall:.1f} s (reference {REFERENCE['wall_s']:.0f} s: {wall / REFERENCE['wall_s']:.3f}x, "
          f"{REFERENCE['wall_s'] / wall:.1f}x faster; target <= {TARGET['wall_s']:.0f} s)")
    print(f"peak RSS {peak_gb:.3f} GB (process tree sum {res['peak_tree_rss_gb']:.3f} GB, largest child "
          f"{res['max_child_rss_gb']:.3f} GB; reference {REFERENCE['peak_rss_gb']} GB: "
          f"{peak_gb / REFERENCE['peak_rss_gb']:.3f}x; target <= {TARGET['peak_rss_gb']} GB)")
    ok = wall <= TARGET["wall_s"] and peak_gb <= TARGET["peak_rss_gb"]
    print("targets met" if ok else "TARGETS MISSED")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
