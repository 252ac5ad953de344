"""Benchmark: inference with halting against the reference's fixed step count, same checkpoint.

The reference evaluation ignores the Q head and runs every view for halt_max_steps supervision
steps. arc-trm's inference stops a view once its halt logit is > 0 (or at the cap) and refills
its batch slot with a pending view. Both modes run the same weights on the same views; reported
per mode: mean supervision steps per view, wall time, pass@1 and pass@2 of the voted answers.
Target: halting uses at most half the steps at equal or better pass@2.

Two inputs:

  --checkpoint RUN --tasks SOURCE   a trained run and tasks with known solutions (e.g.
                                    arc-agi-1:evaluation); views = the augmented versions each task
                                    was trained under (--views caps them per test input).
  (no --checkpoint)                 trains a small model first on a synthetic task family so the
                                    comparison means something: 16 tasks of sparse random 6x6 grids
                                    under the colour rule c -> (c mod 9) + 1 (3 demonstrations + 1
                                    held-out test input each), built at 1 augmentation on an 8x8
                                    canvas, cpu-quick preset with data.canvas=8 data.augmentations=1
                                    train.max_steps=200 train.lr=3e-3 (more with --set KEY=VALUE).

The Q head only halts once it has learned to predict "this answer is exactly right", so a short
training run may halt late or never; the numbers are reported as they come out.

    python benchmarks/halting.py                                   # synthetic, CPU, ~1-2 min
    python benchmarks/halting.py --checkpoint runs/agi1 --tasks arc-agi-1:evaluation --device cuda
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import add_device_arguments, machine_info, machine_line, setup_device, synchronize  # noqa: E402

# One augmentation: the family shares one rule, so 200 CPU steps learn it and the halt head has
# something to be confident about (with 8 colour-permuted versions 200 steps learn nothing).
SYNTHETIC_OVERRIDES = ["data.canvas=8", "data.augmentations=1", "train.max_steps=200", "train.lr=3e-3"]
TARGET_STEP_RATIO = 0.5


@dataclass
class ModeResult:
    mode: str
    views: int
    mean_steps: float
    step_histogram: dict[int, int]  # steps -> views
    wall_s: float  # best of the repeats, whole evaluation (views, decoding, voting, scoring)
    pass1: float
    pass2: float
    solved1: int
    solved2: int
    scored: int  # test outputs with a known solution


def synthetic_tasks(n: int, seed: int):
    """Sparse random 6x6 grids under c -> (c mod 9) + 1; role "test", solutions known."""
    from augment.tasks import task_from_json

    rng = np.random.default_rng(seed)
    rule = lambda g: np.where(g > 0, (g % 9) + 1, 0)  # noqa: E731
    tasks = []
    for i in range(n):
        grids = [np.where(rng.random((6, 6)) < 0.35, rng.integers(1, 10, (6, 6)), 0) for _ in range(4)]
        data = {"train": [{"input": g.tolist(), "output": rule(g).tolist()} for g in grids[:3]],
                "test": [{"input": grids[3].tolist(), "output": rule(grids[3]).tolist()}]}
        tasks.append(task_from_json(f"recolour{i:02d}", data, role="test"))
    return tasks


def train_synthetic(work: Path, device: torch.device, extra: list[str], seed: int):
    """Build the synthetic family, train on it, return (run folder, test tasks, train seconds)."""
    from arc_trm.config import preset
    from arc_trm.overrides import apply_overrides
    from arc_trm.train import TrainOptions, train
    from arc_trm.builds import build_options
    from augment.build import build_set

    tasks = synthetic_tasks(16, seed)
    cfg = apply_overrides(preset("cpu-quick"), SYNTHETIC_OVERRIDES + list(extra))
    cfg.train.device = device.type
    cfg.data.build_dir = str(work / "build")
    built = build_set(tasks, work / "build", build_options(cfg))
    start = time.perf_counter()
    result = train(cfg, work / "run", TrainOptions(built=built, progress=False))
    seconds = time.perf_counter() - start
    print(f"trained {result.steps} steps in {seconds:.1f} s: "
          + ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if k != "step"), flush=True)
    return work / "run", built, seconds


def evaluate(model, tasks, identifiers, augmentations, *, canvas: int, views_per_input: int, batch_size: int,
             halting: bool, device: torch.device) -> tuple[ModeResult, dict]:
    """What infer.vote_views + pass@k do on one process, keeping the per-view step counts."""
    from arc_trm.views import ViewRun, encode_views, make_views, predictions_from, run_views
    from submission.score import pass_count, task_solutions
    from submission.vote import rank_candidates

    synchronize(device)
    start = time.perf_counter()
    found = make_views(tasks, identifiers, augmentations, views_per_input)
    views, untrained = found.views, found.untrained
    by_id = {t.id: t for t in tasks}
    inputs, fits = encode_views(views, by_id, canvas)
    ids = np.array([v.row for v in views], dtype=np.int32)
    out = run_views(model, inputs, ids, ViewRun(canvas, batch_size, halting), device)
    ranked = rank_candidates(predictions_from(views, out, fits, canvas))
    first, second = (pass_count(ranked, task_solutions(tasks), k) for k in (1, 2))
    s1, s2, total = first.solved, second.solved, first.total
    synchronize(device)
    wall = time.perf_counter() - start
    steps = out.steps[out.steps > 0]
    hist = {int(k): int(v) for k, v in zip(*np.unique(steps, return_counts=True))}
    res = ModeResult("halting" if halting else "fixed", len(views), float(steps.mean()) if steps.size else 0.0,
                     hist, wall, s1 / max(total, 1), s2 / max(total, 1), s1, s2, total)
    extra = {"untrained_tasks": untrained, "halt_prob_mean": float(out.halt_prob.mean()) if len(views) else 0.0}
    return res, extra


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="a trained run folder or checkpoint folder (default: train a synthetic one)")
    ap.add_argument("--tasks", help="with --checkpoint: tasks with known solutions, e.g. arc-agi-1:evaluation")
    ap.add_argument("--views", type=int, default=8, help="augmented views per test input (0 = all trained; default 8)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="views in flight (default: 32 synthetic, so halted slots get refilled; 256 with a checkpoint)")
    ap.add_argument("--max-steps", type=int, default=0, help="step cap for both modes (default: the model's halt_max_steps)")
    ap.add_argument("--weights", choices=["ema", "model"], default="ema")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per mode, alternating; best wall is kept")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="synthetic mode: extra training overrides, e.g. --set train.max_steps=400")
    add_device_arguments(ap)
    ap.add_argument("--keep", type=Path, default=None, help="synthetic mode: keep build and run in this folder")
    args = ap.parse_args()

    device, threads = setup_device(args)
    from arc_trm.common import Dist
    from arc_trm.infer import evaluate_built, load_model
    from arc_trm.views import ViewRun
    from augment.tasks import load_tasks

    info = machine_info(device)
    print(machine_line(info), flush=True)
    tmp = None
    train_seconds = None
    built = None
    if args.checkpoint:
        if not args.tasks:
            ap.error("--checkpoint needs --tasks (tasks whose solutions are known)")
        run = Path(args.checkpoint)
        source = args.tasks
    else:
        if args.keep:
            work = args.keep
            work.mkdir(parents=True, exist_ok=True)
        else:
            tmp = tempfile.mkdtemp(prefix="arc-trm-halting-")
            work = Path(tmp)
        print(f"training a small model on the synthetic colour-rule family ({' '.join(SYNTHETIC_OVERRIDES + args.set)})",
              flush=True)
        run, built, train_seconds = train_synthetic(work, device, args.set, args.seed)
        source = "synthetic: 16 colour-rule tasks, 6x6, 3 demos + 1 held-out test input each"

    loaded = load_model(run, device, args.weights)
    model = loaded.model
    if args.max_steps > 0:
        model.cfg.halt_max_steps = args.max_steps
    cap = model.cfg.halt_max_steps
    canvas = loaded.cfg.data.canvas
    if built is not None:
        tasks = [t for t in built.tasks if t.role == "test"]
    else:
        tasks = load_tasks(source)
    tasks = [t for t in tasks if any(p.output is not None for p in t.test)]
    if not tasks:
        raise SystemExit(f"{source}: no task has a known test solution; nothing to score")
    # Synthetic: 16 views in slots of 4, so halted slots are refilled (the mechanism under test).
    batch_size = args.batch_size or (256 if args.checkpoint else 4)
    kw = dict(canvas=canvas, views_per_input=args.views, batch_size=batch_size, device=device)

    # Warm-up (first-call allocations), then alternate the modes so load changes hit both alike.
    evaluate(model, tasks, loaded.id_map.identifiers, loaded.id_map.augmentations, halting=True, **kw)
    best: dict[str, ModeResult] = {}
    extras: dict[str, dict] = {}
    for _ in range(max(1, args.repeats)):
        for halting in (False, True):
            r, extra = evaluate(model, tasks, loaded.id_map.identifiers, loaded.id_map.augmentations, halting=halting, **kw)
            if r.mode not in best or r.wall_s < best[r.mode].wall_s:
                best[r.mode], extras[r.mode] = r, extra
    fixed, halt = best["fixed"], best["halting"]

    if built is not None:  # cross-check against the library's own evaluation entry point
        for halting, r in ((True, halt), (False, fixed)):
            lib = evaluate_built(model, built, views_per_input=args.views, d=Dist(device=device),
                                 run=ViewRun(built.canvas, batch_size, halting))
            assert abs(lib["mean_steps"] - r.mean_steps) < 1e-9 and abs(lib["pass@2"] - r.pass2) < 1e-9, (lib, r)

    untrained = extras["fixed"]["untrained_tasks"]
    ratio = halt.mean_steps / fixed.mean_steps if fixed.mean_steps else float("nan")
    wall_ratio = halt.wall_s / fixed.wall_s if fixed.wall_s else float("nan")
    target_ok = ratio <= TARGET_STEP_RATIO and halt.pass2 >= fixed.pass2
    print()
    print(f"device      {info['device']} ({threads} CPU threads, load average {info['loadavg_1_5_15'][0]:.2f} "
          f"at start, {machine_info(device)['loadavg_1_5_15'][0]:.2f} at end)")
    print(f"checkpoint  {loaded.checkpoint} ({loaded.cfg.model.hidden_size} hidden, T={loaded.cfg.model.H_cycles}, "
          f"n={loaded.cfg.model.L_cycles}, cap {cap} steps)" + (f", trained here in {train_seconds:.0f} s" if
                                                                 train_seconds is not None else ""))
    print(f"tasks       {source}: {fixed.scored} scored test outputs, {fixed.views} views "
          f"(<= {args.views or 'all'} per input), batch {batch_size}"
          + (f"; {len(untrained)} tasks untrained (fallback, unscored views)" if untrained else ""))
    print()
    print("| mode | mean steps/view | wall s | pass@1 | pass@2 | steps histogram |")
    print("|---|---|---|---|---|---|")
    for r in (fixed, halt):
        hist = ", ".join(f"{k}: {v}" for k, v in sorted(r.step_histogram.items()))
        print(f"| {r.mode} | {r.mean_steps:.2f} | {r.wall_s:.3f} | {r.pass1:.3f} ({r.solved1}/{r.scored}) | "
              f"{r.pass2:.3f} ({r.solved2}/{r.scored}) | {hist} |")
    print()
    print(f"step ratio halting / fixed: {ratio:.3f} (target <= {TARGET_STEP_RATIO}); wall ratio {wall_ratio:.3f}; "
          f"pass@2 {halt.pass2:.3f} vs {fixed.pass2:.3f}")
    print("target met: at most half the steps at equal or better pass@2" if target_ok else
          "TARGET MISSED: " + ("; ".join(
              ([f"halting used {ratio:.2f}x the fixed steps (> {TARGET_STEP_RATIO})"] if ratio > TARGET_STEP_RATIO else [])
              + ([f"pass@2 fell from {fixed.pass2:.3f} to {halt.pass2:.3f}"] if halt.pass2 < fixed.pass2 else []))))

    if args.json:
        res = {"machine": info, "loadavg_end": machine_info(device)["loadavg_1_5_15"], "threads": threads,
               "checkpoint": str(loaded.checkpoint), "tasks": source, "cap": cap, "views_per_input": args.views,
               "batch_size": batch_size, "train_seconds": train_seconds,
               "results": {m: r.__dict__ for m, r in best.items()},
               "step_ratio": ratio, "wall_ratio": wall_ratio, "target_met": target_ok}
        args.json.write_text(json.dumps(res, indent=1))
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
