"""Test-time training on new tasks under a deadline, then voted prediction.

  arc-trm ttt --tasks /kaggle/input/arc-prize-2025/arc-agi_test_challenges.json \\
              --checkpoint pretrained/ --budget 11h --out runs/ttt --submission /kaggle/working/submission.json

TRM answers only tasks whose puzzle embeddings it has trained, so on unseen tasks it must train on
their demonstrations first. The run:
  1. writes a valid fallback submission at once (each test input as both attempts); a malformed
     task is skipped with a warning and keeps its fallback answer when its test inputs are
     readable, and the rest still train;
  2. builds the augmented set of the new tasks (demonstrations train, test inputs are predicted);
  3. with --checkpoint, starts from the pretrained weights and gives every new puzzle id the mean
     of the pretrained table (ids the checkpoint already knows keep their trained row);
  4. measures its own throughput and plans the phases to fit the budget: embeddings alone for a
     first fraction of the steps (with a checkpoint), then the whole model, then prediction;
  5. predicts after each phase, replacing the submission atomically as better answers arrive,
     and stops training in time to predict.
Without --checkpoint it trains from scratch (useful on CPU and in tests).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from arc_trm import runs
from augment.store import IdentifierMap
from augment.tasks import InputError, Task, load_tasks
from submission.kaggle import fallback_submission, write_submission
from submission.outputs import check_prediction_outputs

BUDGET_UNITS = {"h": 3600, "m": 60, "s": 1}
QUICK_VIEWS = 8  # views per test input in the intermediate predictions


def parse_budget(text: str) -> float:
    """'90s', '30m', '8h', '1h30m' or plain seconds -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InputError(f"cannot read budget {text!r}; use e.g. 90s, 30m, 8h or 1h30m")
    return sum(float(n) * BUDGET_UNITS[u] for n, u in parts)


def as_test_tasks(tasks: list[Task]) -> list[Task]:
    """Every task answered at test time: demonstrations train, test inputs are predicted."""
    return [dataclasses.replace(t, role="test") for t in tasks]


# ----------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", required=True, help="new tasks: a Kaggle challenges .json, a folder or a source name")
    p.add_argument("--checkpoint", help="pretrained run or checkpoint folder (default: train from scratch)")
    p.add_argument("--budget", default="8h", help="wall-clock budget for the whole run, e.g. 90s, 30m, 8h (default 8h)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--force", action="store_true",
                   help="--out holds another run: move it aside to OUT.old-<time> (never deleted) and start anew")
    p.add_argument("--submission", help="submission path to keep valid (default RUN/submission.json)")
    p.add_argument("--preset", choices=["paper", "kaggle", "cpu-quick"],
                   help="training hyperparameters (default: kaggle on a GPU, cpu-quick otherwise)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--embedding-fraction", type=float, default=0.2,
                   help="with --checkpoint: share of training steps that train only the new embeddings (default 0.2)")
    p.add_argument("--margin", type=float, default=0.05,
                   help="share of the budget kept in reserve (default 0.05)")
    p.add_argument("--batch-size", type=int, default=256, help="views in flight during prediction")
    p.add_argument("--no-progress", action="store_true")


def check_arguments(args: argparse.Namespace) -> float:
    """Every option checked before any work; returns the budget in seconds."""
    from arc_trm.config import apply_overrides, preset

    budget = parse_budget(args.budget)
    if budget <= 0:
        raise InputError(f"--budget must be more than 0 seconds, got {args.budget!r}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be an integer >= 1, got {args.batch_size}")
    if not 0 <= args.margin < 1:
        raise InputError(f"--margin must be a fraction in [0, 1), got {args.margin}")
    if not 0 <= args.embedding_fraction <= 1:
        raise InputError(f"--embedding-fraction must be a fraction in [0, 1], got {args.embedding_fraction}")
    try:
        apply_overrides(preset(args.preset or "kaggle"), args.set or [])  # names, types, ranges
    except ValueError as e:
        raise InputError(str(e)) from None
    return budget


def load_answer_tasks(spec: str) -> tuple[list[Task], list[Task]]:
    """(tasks to train and answer, malformed tasks that keep the fallback answer). A malformed
    task is skipped with a warning; the rest still train."""
    salvaged: list[Task] = []
    warn = lambda m: print(f"warning: {m}", file=sys.stderr)  # noqa: E731
    tasks = load_tasks(spec, on_error="skip", warn=warn, salvaged=salvaged)
    known = {t.id for t in tasks}
    return as_test_tasks(tasks), as_test_tasks([t for t in salvaged if t.id not in known])


def run(args: argparse.Namespace) -> int:
    start = time.time()
    deadline = start + check_arguments(args)
    out = Path(args.out)
    sub_path = Path(args.submission) if args.submission else out / "submission.json"
    tasks, fallback_only = load_answer_tasks(args.tasks)
    answered = sorted(tasks + fallback_only, key=lambda t: t.id)
    is_main = int(os.environ.get("RANK", "0")) == 0
    runs.claim_run_folder(out, args.force, main=is_main, names=runs.TTT_FILES)  # before anything is written
    if is_main:
        # Before anything heavy can fail: a valid answer is on disk.
        runs.make_output_folder(out)
        if args.submission is None:
            sub_path.parent.mkdir(parents=True, exist_ok=True)
        check_prediction_outputs(sub_path, "--submission")
        write_submission(sub_path, fallback_submission(answered), answered)
        print(f"fallback submission written to {sub_path} ({len(answered)} tasks)")
    if not tasks:
        print("no well-formed task to train on; the fallback submission stands")
        return 0
    test_time_train(args, TTTJob(tasks, answered, out, sub_path), start, deadline)
    return 0


@dataclasses.dataclass
class TTTJob:
    tasks: list[Task]  # well-formed tasks: trained and predicted
    answered: list[Task]  # every task of the submission (malformed ones keep the fallback)
    out: Path
    submission: Path


# ----------------------------------------------------------------------------------------------
# The torch side. Imported inside functions so that the fallback above is on disk within a
# second of starting, before torch loads.


@dataclasses.dataclass
class Plan:
    train_step_s: float  # measured seconds per training step
    infer_step_s: float  # measured seconds per inference step of a full batch of views
    views: int  # all views of all test inputs
    predict_s: float  # reserved for the final prediction (every view at the step cap)
    quick_predict_s: float  # reserved for each intermediate prediction
    steps: int  # training steps that fit
    freeze_steps: int  # of which embeddings only
    stops: list[int]  # steps after which a submission is written


def measure_throughput(model, built, cfg, batch_size: int, device, d) -> tuple[float, float]:
    """Seconds per training step (local batch) and per inference step (full batch of views)."""
    import torch

    from arc_trm.data import to_model_batch
    from arc_trm.model import Batch, compute_loss

    def timed(fn, repeats: int = 2) -> float:
        fn()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - t) / repeats

    local = cfg.train.global_batch_size // d.world
    rows = np.asarray([g.start for g in built.groups] * local, dtype=np.int64)[:local]
    inputs, labels = built.train_batch(rows, np.zeros(local, dtype=np.int64))
    batch = to_model_batch(inputs, labels, rows, device)

    def train_step() -> None:
        model.train()
        out = model(model.initial_carry(batch), batch)
        compute_loss(out).loss.backward()
        model.zero_grad(set_to_none=True)

    views = Batch(batch.inputs[:1].repeat(batch_size, 1), batch.labels[:1].repeat(batch_size, 1),
                  batch.puzzle_identifiers[:1].repeat(batch_size))

    @torch.no_grad()
    def infer_step() -> None:
        model.eval()
        model(model.initial_carry(views), views)

    seconds = torch.tensor([timed(train_step), timed(infer_step)], device=device)
    if d.world > 1:
        import torch.distributed as dist
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    return float(seconds[0]), float(seconds[1])


def plan_phases(train_step_s: float, infer_step_s: float, *, views: int, world: int, batch_size: int,
                max_steps_cap: int, halt_max_steps: int, quick_views: int, seconds_left: float,
                pretrained: bool, embedding_fraction: float) -> Plan:
    """Fit training into what is left after reserving time for the predictions.

    infer_step_s is the time of one inference step of `batch_size` views (or of all of this
    rank's views, when fewer). Intermediate predictions use `quick_views` views and are skipped
    when they would cost as much as the final one.
    """
    def predict_seconds(n_views: int) -> float:
        batches = math.ceil(n_views / world / batch_size)
        return 1.25 * batches * halt_max_steps * infer_step_s  # worst case: no view halts early

    predict_s = predict_seconds(views)
    quick = quick_views < views
    quick_s = predict_seconds(quick_views) if quick else 0.0
    steps = max(0, int((seconds_left - predict_s - 2 * quick_s) / max(train_step_s, 1e-9)))
    if max_steps_cap > 0:
        steps = min(steps, max_steps_cap)
    freeze = int(round(embedding_fraction * steps)) if pretrained else 0
    stops = sorted({s for s in ((freeze, steps // 2) if quick else ()) + (steps,) if s > 0})
    return Plan(train_step_s, infer_step_s, views, predict_s, quick_s, steps, freeze, stops)


def transplant_weights(state: dict, old: IdentifierMap, new: IdentifierMap) -> dict:
    """Pretrained weights (EMA when present) with a puzzle table for the new rows: a row is copied
    only when the checkpoint trained the same identifier, augmentation and task content; the rest
    start at the mean of the pretrained rows."""
    import torch

    weights = {**state["model"], **(state.get("ema") or {})}
    old_table = state["model"]["puzzle_table"]
    mean = old_table[1:].mean(0) if old_table.shape[0] > 1 else torch.zeros(old_table.shape[1])
    old_rows = {old.row_key(r)[:2]: r for r in range(1, len(old.identifiers))}  # (identifier, augmentation)
    table = mean.repeat(len(new.identifiers), 1)
    table[0] = 0  # the blank id
    for r in range(1, len(new.identifiers)):
        ident, aug, content = new.row_key(r)
        match = old_rows.get((ident, aug))
        if match is None:
            continue
        old_content = old.row_key(match)[2]
        if content is None or old_content is None or content == old_content:  # None: not recorded
            table[r] = old_table[match]
    weights["puzzle_table"] = table
    return weights


def write_ttt_tasks(tasks: list[Task], out: Path) -> str:
    """The tasks as a Kaggle challenges file in the run (so the build and config name a source)."""
    from submission.kaggle import write_json_atomic

    path = out / "ttt_challenges.json"
    write_json_atomic(path, {t.id: t.to_json(with_solutions=False) for t in tasks})
    if all(t.has_solutions for t in tasks):
        write_json_atomic(out / "ttt_solutions.json",
                          {t.id: [p.output.tolist() for p in t.test] for t in tasks})
    return f"{path}@test"


def test_time_train(args: argparse.Namespace, job: TTTJob, start: float, deadline: float) -> None:
    import torch

    from arc_trm import checkpoint as ckpt
    from arc_trm.config import apply_overrides, preset
    from arc_trm.infer import load_model, predict
    from arc_trm.common import setup
    from arc_trm.train import build_model, load_or_build, train
    from submission.kaggle import write_json_atomic
    from submission.watchdog import shutdown_worker_pool

    tasks, out, sub_path = job.tasks, job.out, job.submission
    d = setup()
    device = d.device
    progress = not args.no_progress and d.main
    cfg = preset(args.preset or ("kaggle" if torch.cuda.is_available() else "cpu-quick"))
    pre_state = None
    if args.checkpoint:
        found = ckpt.load_checkpoint(args.checkpoint)
        pre_state, pre_cfg = found.state, found.config
        cfg.model, cfg.data.canvas = pre_cfg.model, pre_cfg.data.canvas  # the weights fix these
    cfg.data.tasks = write_ttt_tasks(tasks, out) if d.main else f"{out / 'ttt_challenges.json'}@test"
    cfg.data.build_dir = str(out / "build")
    fixed = dataclasses.replace(cfg.model) if pre_state is not None else None
    try:
        apply_overrides(cfg, args.set or [])
    except ValueError as e:
        raise InputError(str(e)) from None
    if fixed is not None and (fixed != cfg.model or cfg.data.canvas ** 2 != fixed.seq_len):
        changed = [k for k, v in fixed.to_dict().items() if getattr(cfg.model, k) != v] or ["data.canvas"]
        raise InputError(f"--set {', '.join(changed)}: fixed by the weights of --checkpoint {found.folder}")
    if d.world > 1:
        torch.distributed.barrier()  # rank 0 has written the tasks file
    built = load_or_build(cfg, d, progress)
    shutdown_worker_pool()  # the build's joblib workers would otherwise idle on (and hold our stdout)
    model = build_model(cfg, built.num_identifiers, device)
    init = None
    if pre_state is not None:
        init = transplant_weights(pre_state, found.id_map, built.identifier_map())
        model.load_state_dict(init)

    views = len(built.test_views())
    batch_size = max(1, min(args.batch_size, math.ceil(views / d.world)))
    train_s, infer_s = measure_throughput(model, built, cfg, batch_size, device, d)
    del model
    margin = args.margin * (deadline - start)
    quick_views = sum(len(t.test) for t in tasks) * QUICK_VIEWS
    plan = plan_phases(train_s, infer_s, views=views, world=d.world, batch_size=batch_size,
                       max_steps_cap=cfg.train.max_steps, halt_max_steps=cfg.model.halt_max_steps,
                       quick_views=quick_views,
                       seconds_left=deadline - time.time() - margin,
                       pretrained=pre_state is not None, embedding_fraction=args.embedding_fraction)
    cfg.train.max_steps = max(plan.steps, 1)
    cfg.train.freeze_model_steps = plan.freeze_steps
    cfg.train.checkpoint_every = cfg.train.max_steps  # checkpoints come from the phase stops
    if d.main:
        write_json_atomic(out / "ttt_plan.json", dataclasses.asdict(plan), indent=2)
        print(f"plan: {plan.steps} training steps ({plan.freeze_steps} embeddings only) at "
              f"{plan.train_step_s:.3f} s/step, predictions at steps {plan.stops}, "
              f"{plan.predict_s:.0f} s reserved for the final prediction of {plan.views} views")

    predict_deadline = deadline - margin / 2
    for i, stop in enumerate(plan.stops):
        last = i == len(plan.stops) - 1
        trained = train(cfg, out, resume=i > 0, stop_at=stop, progress=progress, built=built,
                        init_weights=init if i == 0 else None,
                        deadline=deadline - margin - plan.predict_s - (0 if last else plan.quick_predict_s))
        last = last or trained.steps < stop  # the deadline cut this phase short: predict in full now
        loaded = load_model(out, device)
        summary = predict(loaded, job.answered, sub_path, source=cfg.data.tasks,
                          max_views=0 if last else QUICK_VIEWS, batch_size=batch_size,
                          device=device, rank=d.rank, world=d.world, progress=progress,
                          deadline=predict_deadline)
        if summary is not None:
            print(f"step {trained.steps}: submission updated from {summary.views} views "
                  f"({summary.mean_steps:.2f} steps per view), {time.time() - start:.0f} s since start")
        if last:
            break
    if not plan.stops and d.main:
        print("no time to train within the budget; the fallback submission stands")
    if d.main:
        print(f"done in {time.time() - start:.0f} s of {deadline - start:.0f} s; submission at {sub_path}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
