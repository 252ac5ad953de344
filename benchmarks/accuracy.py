"""Benchmark: accuracy at a fixed compute budget, counted in FLOPs (not seconds), so results
compare across machines and runs.

Suite: small published ARC tasks whose every grid is at most 10 x 10 (the cpu-quick canvas),
drawn with a fixed seed from ARC-AGI-1 *training* and ConceptARC (../shared/data, or
--conceptarc PATH). ARC-AGI-1 evaluation stays out: it is the held-out check. As `arc-trm ttt`
does on unseen tasks, the demonstrations train and the test inputs are answered.

Budget: training steps = budget / the analytic FLOPs of one training step (`flops_per_step` at the
canvas's sequence length); the inference FLOPs of the views actually run are counted on top and
reported. Reported: pass@1,
pass@2 and pass@8 per test output and per task with Wilson 95% intervals, FLOPs, wall time, and
a per-task table, for two rankings of the same views: votes, and consistency rescoring (the
rescoring reuses the views' logits, so both come from one run). Deterministic given --seed (one
CPU thread) on one machine; a CPU with another instruction set (the device line names it) rounds
differently, and 1,191 steps turn that into a different model: compare arms run on one machine.

    python benchmarks/accuracy.py                        # default budget, ~10 min on 2 cores
    python benchmarks/accuracy.py --label baseline --set data.augmentations=64 \
        --set train.puzzle_emb_lr=0.01 --set train.token_loss=stablemax   # cpu-quick before session 6
    python benchmarks/accuracy.py --set train.lr=3e-3 --label lr3e-3 --json arm.json
    python benchmarks/accuracy.py --work arms/base                       # keep the trained run
    python benchmarks/accuracy.py --work arms/base --predict-only --trajectories 4 --noise 0.3
    python benchmarks/accuracy.py --pretrain-share 0.5 --freeze-share 0.25    # pretrain, then TTT
    python benchmarks/accuracy.py --candidates base.cands.json   # for benchmarks/rank_rules.py

With --pretrain-share, that share of the budget first trains on every other small task of the
two sources (disjoint from the suite, all pairs known); the suite's puzzle rows then start at the
mean of the pretrained rows, and --freeze-share of the remaining steps train them alone (the
test-time recipe of `arc-trm ttt --checkpoint`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from submission.score import binomial_ci  # noqa: E402
from common import add_device_arguments, machine_info, machine_line, setup_device  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONCEPTARC = ROOT.parent / "shared" / "data" / "conceptarc_challenges.json"
MAX_SIDE = 10
# 1,191 cpu-quick steps of batch 64 on the 10 x 10 canvas, about 10 minutes on one idle core. (The
# first baseline called this budget 0.6 PFLOP: it counted the FLOPs of a 900-token canvas.)
DEFAULT_BUDGET_PFLOP = 0.03004
KS = (1, 2, 8)


def small(task) -> bool:
    grids = [g for p in task.train + task.test for g in (p.input, p.output) if g is not None]
    return max(max(g.shape) for g in grids) <= MAX_SIDE


def small_tasks(spec: str) -> list:
    from augment.tasks import load_tasks

    return [t for t in load_tasks(spec) if small(t) and all(p.output is not None for p in t.test)]


def suite(seed: int, per_source: int, conceptarc: Path) -> list:
    """`per_source` small tasks from each source, picked with a seeded shuffle, as test tasks."""
    from arc_trm.ttt import as_test_tasks

    rng = np.random.default_rng(seed)
    chosen = []
    for spec in ("arc-agi-1:training", str(conceptarc)):
        pool = small_tasks(spec)
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), min(per_source, len(pool)), replace=False))]
    return as_test_tasks(chosen)


def pretraining_tasks(suite_tasks: list, conceptarc: Path) -> list:
    """Every other small task of the two sources, all pairs known (a pretraining set disjoint from
    the suite)."""
    held = {t.id for t in suite_tasks}
    return [t for spec in ("arc-agi-1:training", str(conceptarc)) for t in small_tasks(spec) if t.id not in held]


@dataclass
class Scores:
    per_output: dict[int, tuple[int, int]]  # k -> (solved, outputs)
    per_task: dict[int, tuple[float, int]]  # k -> (sum of per-task scores, tasks)
    table: list[dict]


@dataclass
class Outcome:
    scores: dict[str, Scores]  # by ranking rule: votes, consistency
    ranked: dict  # (task id, test index) -> candidates in consistency order
    train_flops: float
    infer_flops: float
    train_s: float
    infer_s: float
    steps: int


def score(ranked: dict, tasks: list) -> Scores:
    from augment.grids import same_grid

    per_output = {k: [0, 0] for k in KS}
    per_task = {k: [0.0, 0] for k in KS}
    table = []
    for t in tasks:
        hits = {k: 0 for k in KS}
        for i, pair in enumerate(t.test):
            cands = ranked.get((t.id, i), [])
            rank = next((r for r, c in enumerate(cands) if same_grid(c.grid, pair.output)), None)
            for k in KS:
                hits[k] += rank is not None and rank < k
        for k in KS:
            per_output[k][0] += hits[k]
            per_output[k][1] += len(t.test)
            per_task[k][0] += hits[k] / len(t.test)
            per_task[k][1] += 1
        table.append({"task": t.id, "outputs": len(t.test), **{f"pass@{k}": hits[k] for k in KS}})
    return Scores({k: tuple(v) for k, v in per_output.items()}, {k: tuple(v) for k, v in per_task.items()}, table)


def copy_the_input(tasks: list) -> int:
    """Test outputs solved by answering the test input itself (the floor any learner must beat)."""
    from augment.grids import same_grid

    return sum(same_grid(p.input, p.output) for t in tasks for p in t.test)


def candidate_records(ranked: dict, tasks: list) -> list[dict]:
    """Every rescored candidate of every test output with its signals and whether it is right, for
    comparing ranking rules offline (benchmarks/rank_rules.py)."""
    from augment.grids import same_grid

    return [{"task": t.id, "test_index": i,
             "candidates": [{"votes": c.votes, "mean_halt_prob": c.mean_halt_prob, "mean_logprob": c.mean_logprob,
                             "cells": int(c.grid.size), "shape": list(c.grid.shape), "correct": bool(same_grid(c.grid, pair.output))}
                            for c in ranked.get((t.id, i), [])]}
            for t in tasks for i, pair in enumerate(t.test)]


def votes_order(ranked: dict) -> dict:
    """The same candidates ranked by votes alone (the rescoring only reorders them)."""
    from submission.vote import sort_candidates

    return {key: sort_candidates(replace(c, mean_logprob=None) for c in cands) for key, cands in ranked.items()}


@dataclass(frozen=True)
class Arm:
    overrides: list[str]  # --set KEY=VALUE: the training config
    trajectories: int = 1  # inference: runs of each view (PTRM)
    noise: float = 0.0
    per_task: bool = False  # one model per task, the budget split by demonstrations
    pretrain_share: float = 0.0  # of the budget, spent first on pretraining_tasks (then TTT from it)
    freeze_share: float = 0.0  # of the TTT steps after pretraining, the puzzle table trains alone


@dataclass
class Trained:
    ranked: dict
    steps: int
    train_flops: float
    infer_flops: float  # the views actually run, at the steps each ran
    train_s: float
    infer_s: float


def arm_config(arm: Arm, seed: int):
    """The cpu-quick config with the arm's overrides, its sequence length that of its canvas."""
    from arc_trm.config import preset
    from arc_trm.overrides import apply_overrides

    cfg = apply_overrides(preset("cpu-quick"), [f"train.seed={seed}", "device=cpu", "train.eval_every=0",
                                                "train.checkpoint_every=1000000", *arm.overrides])
    cfg.fit_canvas()  # what training sets; the FLOPs depend on it
    return cfg


def build(tasks: list, cfg, folder: Path):
    from arc_trm.builds import build_options
    from augment.build import build_set

    return build_set(tasks, folder, build_options(cfg))


def step_flops(cfg) -> float:
    """Analytic FLOPs of one training step of the config."""
    from arc_trm.flops import flops_per_step

    return flops_per_step(cfg.model, cfg.train.global_batch_size).total


def budget_steps(cfg, budget_flop: float) -> int:
    return max(1, int(budget_flop // step_flops(cfg)))


def pretrain(pool: list, budget_flop: float, arm: Arm, seed: int, work: Path):
    """The arm's model trained on the pretraining pool for `budget_flop` (kept in WORK/pretrain and
    reused by a later run); its checkpoint."""
    from arc_trm.checkpoint import load_checkpoint
    from arc_trm.train import TrainOptions, train

    cfg = arm_config(arm, seed)
    cfg.train.max_steps = budget_steps(cfg, budget_flop)
    if not (work / "pretrain").exists():
        train(cfg, work / "pretrain", TrainOptions(built=build(pool, cfg, work / "pretrain-build"), progress=False))
    return load_checkpoint(work / "pretrain")


def train_and_vote(tasks: list, budget_flop: float, arm: Arm, seed: int, work: Path, predict_only: bool,
                   pretrained=None) -> Trained:
    """One model trained on `tasks` for the budget (from the `pretrained` checkpoint when given,
    its puzzle table trained alone for the arm's freeze share), then every view of their test
    inputs voted."""
    import torch

    from arc_trm.common import Dist
    from arc_trm.flops import flops_per_step
    from arc_trm.infer import load_model, vote_views
    from arc_trm.train import TrainOptions, train
    from arc_trm.checkpoint import transplant_weights
    from arc_trm.views import ViewRun, make_views

    cfg = arm_config(arm, seed)
    built = build(tasks, cfg, work / "build")
    cfg.train.max_steps = budget_steps(cfg, budget_flop)
    cfg.train.freeze_model_steps = int(cfg.train.max_steps * arm.freeze_share)
    start = time.perf_counter()
    if predict_only:  # an inference-side arm: the model trained by an earlier run with this --work
        steps = cfg.train.max_steps
    else:
        init = None if pretrained is None else transplant_weights(pretrained.state, pretrained.id_map,
                                                                    built.identifier_map())
        steps = train(cfg, work / "run", TrainOptions(built=built, progress=False, init_weights=init)).steps
    train_s = time.perf_counter() - start

    loaded = load_model(work / "run", torch.device("cpu"))
    views = make_views(tasks, loaded.id_map.identifiers, loaded.id_map.augmentations).views
    start = time.perf_counter()
    view_run = ViewRun(canvas=cfg.data.canvas, bucketing=cfg.data.bucketing, scoring="consistency",
                       trajectories=arm.trajectories, noise=arm.noise, noise_seed=seed)
    voted = vote_views(loaded.model, views, {t.id: t for t in tasks}, view_run, Dist())
    view_step_flops = flops_per_step(cfg.model, 1, training=False).total
    return Trained(voted.ranked, steps, steps * step_flops(cfg), voted.runs * voted.mean_steps * view_step_flops,
                   train_s, time.perf_counter() - start)


def run(tasks: list, budget_flop: float, arm: Arm, seed: int, work: Path, predict_only: bool = False,
        pool: list = ()) -> Outcome:
    """The arm on the suite: the arm's share of the budget pretrains on `pool`, then one model for
    all tasks, or one per task (`arm.per_task`) with the rest split in proportion to each task's
    demonstrations."""
    pretrained, pre = None, Trained({}, 0, 0.0, 0.0, 0.0, 0.0)
    if arm.pretrain_share > 0:
        start = time.perf_counter()
        pretrained = pretrain(list(pool), budget_flop * arm.pretrain_share, arm, seed, work)
        steps = pretrained.state["step"]
        pre = Trained({}, steps, steps * step_flops(arm_config(arm, seed)), 0.0, time.perf_counter() - start, 0.0)
    budget_flop -= pre.train_flops
    if arm.per_task:
        demos = sum(len(t.train) for t in tasks)
        parts = [train_and_vote([t], budget_flop * len(t.train) / demos, arm, seed, work / t.id, predict_only,
                                pretrained) for t in tasks]
    else:
        parts = [train_and_vote(tasks, budget_flop, arm, seed, work, predict_only, pretrained)]
    parts.append(pre)
    ranked = {k: v for p in parts for k, v in p.ranked.items()}
    scores = {"votes": score(votes_order(ranked), tasks), "consistency": score(ranked, tasks)}
    return Outcome(scores, ranked, sum(p.train_flops for p in parts), sum(p.infer_flops for p in parts),
                   sum(p.train_s for p in parts), sum(p.infer_s for p in parts), sum(p.steps for p in parts))


def print_scores(name: str, scores: Scores) -> None:
    print(f"\nranked by {name}")
    print("| task | outputs | " + " | ".join(f"pass@{k}" for k in KS) + " |")
    print("|---|---|" + "---|" * len(KS))
    for row in scores.table:
        if any(row[f"pass@{k}"] for k in KS):
            print(f"| {row['task']} | {row['outputs']} | " + " | ".join(str(row[f'pass@{k}']) for k in KS) + " |")
    print(f"(tasks with no output solved at pass@{KS[-1]} left out)\n")
    print("| metric | per output (95% CI) | per task |")
    print("|---|---|---|")
    for k in KS:
        solved, n = scores.per_output[k]
        lo, hi = binomial_ci(solved, n)
        total, tasks_n = scores.per_task[k]
        print(f"| pass@{k} | {solved}/{n} = {solved / n:.3f} [{lo:.3f}, {hi:.3f}] | {total / tasks_n:.3f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arguments(ap)
    ap.add_argument("--budget-pflop", type=float, default=DEFAULT_BUDGET_PFLOP,
                    help=f"training budget in PFLOP (default {DEFAULT_BUDGET_PFLOP})")
    ap.add_argument("--per-source", type=int, default=24, help="tasks from each source (default 24: 48 tasks)")
    ap.add_argument("--conceptarc", type=Path, default=DEFAULT_CONCEPTARC, help="ConceptARC challenges file")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (an arm)")
    ap.add_argument("--label", default="baseline", help="name of this arm in the output")
    ap.add_argument("--trajectories", type=int, default=1, help="runs of each view at inference (PTRM, default 1)")
    ap.add_argument("--noise", type=float, default=0.0, help="latent noise std of the extra trajectories")
    ap.add_argument("--per-task", action="store_true",
                    help="one model per task, the budget split in proportion to its demonstrations")
    ap.add_argument("--pretrain-share", type=float, default=0.0,
                    help="spend this share of the budget first pretraining on every other small task of the two "
                         "sources (all pairs), then test-time train from it (puzzle rows at the pretrained mean)")
    ap.add_argument("--freeze-share", type=float, default=0.0,
                    help="after pretraining, this share of the test-time steps trains the puzzle table alone")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep the build and the trained run here (default: a temporary folder)")
    ap.add_argument("--predict-only", action="store_true",
                    help="reuse the model trained in --work by an earlier run with the same --set (inference arms)")
    ap.add_argument("--candidates", type=Path, default=None,
                    help="also write every candidate's votes, log-probability and correctness here "
                         "(input of benchmarks/rank_rules.py)")
    args = ap.parse_args()
    device, _ = setup_device(args)
    machine = machine_info(device)
    print(machine_line(machine), flush=True)
    if not args.conceptarc.exists():
        raise SystemExit(f"{args.conceptarc}: ConceptARC challenges not found (give --conceptarc PATH)")
    tasks = suite(args.seed, args.per_source, args.conceptarc)
    if not (0 <= args.pretrain_share < 1 and 0 <= args.freeze_share < 1):
        raise SystemExit("--pretrain-share and --freeze-share are shares: 0 <= share < 1")
    if args.predict_only and not (args.work and args.work.is_dir()):
        raise SystemExit("--predict-only needs --work DIR holding a trained run")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        if args.work and not args.predict_only and (work / "run").exists():
            raise SystemExit(f"{work / 'run'} exists: pass --predict-only to reuse it, or another --work")
        arm = Arm(args.set, args.trajectories, args.noise, args.per_task, args.pretrain_share, args.freeze_share)
        pool = pretraining_tasks(tasks, args.conceptarc) if args.pretrain_share > 0 else []
        out = run(tasks, args.budget_pflop * 1e15, arm, args.seed, work, args.predict_only, pool)

    outputs = out.scores["votes"].per_output[1][1]
    print(f"\narm {args.label}: {len(tasks)} tasks, {outputs} test outputs, {out.steps} training steps, "
          f"{out.train_flops / 1e15:.2f} PFLOP training + {out.infer_flops / 1e15:.3f} PFLOP inference, "
          f"{out.train_s:.0f} s training + {out.infer_s:.0f} s inference")
    print(f"copy-the-input solves {copy_the_input(tasks)}/{outputs} test outputs")
    for name, scores in out.scores.items():
        print_scores(name, scores)
    # One last line with both rankings, so a log's tail is never read as votes alone.
    print(f"\nsummary {args.label} (seed {args.seed}), of {outputs} outputs: " + "; ".join(
        f"{name} pass@{'/'.join(map(str, KS))} " + "/".join(str(s.per_output[k][0]) for k in KS)
        for name, s in out.scores.items()))
    if args.json:
        args.json.write_text(json.dumps({
            "label": args.label, "machine": machine, "overrides": args.set,
            "trajectories": args.trajectories, "noise": args.noise,
            "per_task": args.per_task, "pretrain_share": args.pretrain_share, "freeze_share": args.freeze_share,
            "seed": args.seed, "train_flops": out.train_flops, "infer_flops": out.infer_flops,
            "train_s": out.train_s, "infer_s": out.infer_s, "steps": out.steps,
            "scores": {name: dataclasses.asdict(s) for name, s in out.scores.items()}}, indent=1))
    if args.candidates:
        args.candidates.write_text(json.dumps({"label": args.label, "seed": args.seed,
                                               "outputs": candidate_records(out.ranked, tasks)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
