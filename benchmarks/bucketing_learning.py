"""Benchmark: does length bucketing hurt learning? The same model trained with and without
`data.bucketing` on the same suite, to the same number of samples, from the same seeds.

Suite (CPU-sized, grids of mixed sizes so that the buckets of a 20 x 20 canvas all occur): 16
tasks of the colour rule c -> (c mod 9) + 1 on sparse random grids, 4 tasks in each size class
(sides 4-6, 7-9, 11-13, 15-18: buckets 10, 10, 15, 20), 3 demonstrations and 1 held-out test
input each. Model: the cpu-quick preset on a 20 x 20 canvas, 1 augmentation, lr 3e-3, batch 16.

Reported per arm: pass@1 / pass@2 of the held-out test outputs over all seeds (Wilson 95% CI),
the final training loss (mean of the last 5 logged windows; mean over seeds with a t 95% CI),
and the training wall time (a ratio on this machine, not a target).

    python benchmarks/bucketing_learning.py                    # 2 seeds x 2 arms, ~20 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from submission.score import binomial_ci  # noqa: E402
from common import add_device_arguments, machine_info, machine_line, setup_device  # noqa: E402

SIZE_CLASSES = ((4, 6), (7, 9), (11, 13), (15, 18))
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57}  # two-sided t quantiles by degrees of freedom


def mixed_size_tasks(seed: int):
    from augment.tasks import task_from_json

    rng = np.random.default_rng(seed)
    rule = lambda g: np.where(g > 0, g % 9 + 1, 0)  # noqa: E731
    tasks = []
    for c, (lo, hi) in enumerate(SIZE_CLASSES):
        for i in range(4):
            grids = []
            for _ in range(4):
                h, w = rng.integers(lo, hi + 1, size=2)
                grids.append(np.where(rng.random((h, w)) < 0.35, rng.integers(1, 10, (h, w)), 0))
            data = {"train": [{"input": g.tolist(), "output": rule(g).tolist()} for g in grids[:3]],
                    "test": [{"input": grids[3].tolist(), "output": rule(grids[3]).tolist()}]}
            tasks.append(task_from_json(f"size{c}_{i}", data, role="test"))
    return tasks


def run_arm(bucketing: bool, seed: int, steps: int, batch: int, work: Path) -> dict:
    from arc_trm.common import Dist
    from arc_trm.config import preset
    from arc_trm.overrides import apply_overrides
    from arc_trm.infer import evaluate_built
    from arc_trm.views import ViewRun
    from arc_trm.model import TRM
    from arc_trm.train import TrainOptions, train
    from augment.build import build_set
    from augment.options import BuildOptions

    tasks = mixed_size_tasks(seed=100)  # one suite; the seed varies the model and the sampling
    cfg = apply_overrides(preset("cpu-quick"), [
        "data.canvas=20", "data.augmentations=1", f"train.max_steps={steps}", "train.lr=3e-3",
        f"train.global_batch_size={batch}",
        f"train.seed={seed}", f"data.bucketing={str(bucketing).lower()}", "train.checkpoint_every=100000",
        "train.log_every=10", "device=cpu"])
    built = build_set(tasks, work / "build", BuildOptions(augmentations=1, canvas=20, progress=False))
    start = time.perf_counter()
    train(cfg, work / "run", TrainOptions(built=built, progress=False))
    seconds = time.perf_counter() - start
    losses = [json.loads(line)["loss"] for line in (work / "run" / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    from arc_trm.infer import load_model
    import torch

    loaded = load_model(work / "run", torch.device("cpu"))
    model: TRM = loaded.model
    result = evaluate_built(model, built, views_per_input=1, d=Dist(),
                            run=ViewRun(canvas=20, bucketing=bucketing))
    n = sum(len(t.test) for t in tasks)
    return {"bucketing": bucketing, "seed": seed, "seconds": seconds, "final_loss": float(np.mean(losses[-5:])),
            "solved1": round(result["pass@1"] * n), "solved2": round(result["pass@2"] * n), "outputs": n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arguments(ap)
    ap.add_argument("--seeds", type=int, default=2, help="training seeds per arm (default 2)")
    ap.add_argument("--steps", type=int, default=250, help="training steps (default 250)")
    ap.add_argument("--batch", type=int, default=16, help="global batch (default 16)")
    args = ap.parse_args()
    device, _ = setup_device(args)
    print(machine_line(machine_info(device)), flush=True)
    rows = []
    for seed in range(args.seeds):
        for bucketing in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                r = run_arm(bucketing, seed, args.steps, args.batch, Path(tmp))
            rows.append(r)
            print(json.dumps(r), flush=True)
    print(f"\n{args.steps} steps x batch {args.batch} per run, {args.seeds} seeds per arm")
    print("| arm | pass@1 (95% CI) | pass@2 (95% CI) | final loss (95% CI over seeds) | train s (mean) |")
    print("|---|---|---|---|---|")
    for bucketing in (False, True):
        arm = [r for r in rows if r["bucketing"] == bucketing]
        n = sum(r["outputs"] for r in arm)
        k1, k2 = sum(r["solved1"] for r in arm), sum(r["solved2"] for r in arm)
        loss = np.array([r["final_loss"] for r in arm])
        half = T95.get(len(loss) - 1, 2.0) * loss.std(ddof=1) / math.sqrt(len(loss)) if len(loss) > 1 else float("nan")
        lo1, hi1 = binomial_ci(k1, n)
        lo2, hi2 = binomial_ci(k2, n)
        print(f"| {'bucketing' if bucketing else 'fixed canvas'} | {k1}/{n} [{lo1:.2f}, {hi1:.2f}] "
              f"| {k2}/{n} [{lo2:.2f}, {hi2:.2f}] | {loss.mean():.4f} ± {half:.4f} "
              f"| {np.mean([r['seconds'] for r in arm]):.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
