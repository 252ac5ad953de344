"""Test-time training, the torch side: prepare the new tasks' set and weights, measure
throughput, plan, then train and predict phase by phase, re-planning from the step time each
phase measured (arc_trm.ttt runs it)."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from arc_trm import checkpoint as ckpt
from arc_trm.common import Dist, agree_on_signal, print0, setup, teardown
from arc_trm.config import RunConfig, preset
from arc_trm.overrides import apply_overrides, default_preset
from arc_trm.config_rules import check_device_available
from arc_trm.infer import LoadedModel, PredictOptions, load_model, predict
from arc_trm.snapshot import LatestCheckpoint
from arc_trm.builds import load_or_build
from arc_trm.stopping import StopRequest, current
from arc_trm.train import TrainOptions, TrainResult, build_model, train
from arc_trm.train_cli import gpu_preset_warning
from arc_trm.views import other_content_line, trained_rows
from arc_trm.ttt_probe import measure_throughput
from arc_trm.ttt_plan import (QUICK_VIEWS, PhaseTiming, Plan, PlanInputs, TTTJob, TTTOptions,
                              check_same_model, fitted_warmup, plan_line, plan_phases, replan, resumed_plan,
                              seconds_left, start_config, user_step_cap)
from augment.build import max_side
from augment.console import duration_text, eprint
from augment.store import BuiltSet
from augment.errors import InputError, few_ids
from augment.tasks import Task
from augment.files import read_json, write_json_atomic
from submission.notice import carry_import_record
from submission.runfolder import run_files, step_of
from submission.watchdog import shutdown_worker_pool


def write_ttt_tasks(tasks: list[Task], out: Path) -> str:
    """The tasks as a Kaggle challenges file in the run (so the build and config name a source)."""
    path = out / "ttt_challenges.json"
    write_json_atomic(path, {t.id: t.to_json(with_solutions=False) for t in tasks})
    if all(t.has_solutions for t in tasks):
        write_json_atomic(out / "ttt_solutions.json",
                          {t.id: [p.output.tolist() for p in t.test] for t in tasks})
    return f"{path}@test"


def ttt_config(options: TTTOptions, job: TTTJob, d: Dist) -> tuple[RunConfig, ckpt.Checkpoint | None]:
    """The run's config: the preset, the pretrained model's shape, the run's own task file and
    build, then --set (which may not change what the weights fix). Returns (config, pretrained)."""
    pretrained = ckpt.load_checkpoint(options.checkpoint) if options.checkpoint else None
    cfg = start_config(options.preset or default_preset("ttt", options.overrides),
                       pretrained.config if pretrained is not None else None, options.overrides,
                       pretrained.folder if pretrained is not None else None)
    if options.resume:
        check_same_model(job.out, cfg)
    cfg.data.tasks = write_ttt_tasks(job.tasks, job.out) if d.main else f"{job.out / 'ttt_challenges.json'}@test"
    if d.main and pretrained is not None:  # imported weights: the run's checkpoints keep their source and licence
        carry_import_record(pretrained.folder, job.out)
    cfg.data.build_dir = str(job.out / "build")
    warning = gpu_preset_warning(options.preset, cfg, d.device)
    if warning and d.main:  # the plan still fits the budget, with few steps
        eprint(warning)
    return cfg, pretrained


@dataclasses.dataclass
class TTTSetup:
    cfg: RunConfig
    built: BuiltSet
    init: dict | None  # starting weights (transplanted from the checkpoint), None: from scratch
    views: int  # all views of all test inputs
    batch_size: int  # views in flight per process
    margin: float  # seconds kept in reserve
    step_cap: int  # train.max_steps when the user set it, else 0
    progress: bool
    scoring: str  # votes | consistency
    start: int = 0  # the step of the checkpoint a resumed run continues from (0: a new run)
    freeze_until: int = 0  # that checkpoint's train.freeze_model_steps: the end of its embeddings-only phase
    latest: LatestCheckpoint | None = None  # a resumed run's checkpoint, looked up once (its lookup may warn)
    source: str = ""  # --tasks as the user gave it (the report names it, not the run's copy)
    pretrained: Path | None = None  # the checkpoint folder `init` comes from


@dataclasses.dataclass(frozen=True)
class TTTOutcome:
    """How the torch side ended: normally, or stopped by a signal with a checkpoint."""

    step: int = 0
    stopped_by: str | None = None  # the signal's name
    checkpoint: Path | None = None


def resume_point(latest: LatestCheckpoint) -> tuple[int, int]:
    """(step, train.freeze_model_steps) of the run's latest checkpoint; (0, 0) when it has none."""
    found = latest.folder
    if found is None:
        return 0, 0
    saved = read_json(found / "config.json", "checkpoint config")
    freeze = saved.get("train", {}).get("freeze_model_steps", 0) if isinstance(saved, dict) else 0
    return step_of(found) or 0, int(freeze)


def apply_plan(cfg: RunConfig, plan: Plan) -> None:
    """The config's step counts follow the plan; a phase resumed after a re-plan reads them."""
    cfg.train.max_steps = max(plan.steps, 1)  # the schedule (warmup, cosine) is defined up to the planned end
    cfg.train.lr_warmup_steps = fitted_warmup(cfg.train.lr_warmup_steps, cfg.train.max_steps)
    cfg.train.freeze_model_steps = plan.freeze_steps
    cfg.train.checkpoint_every = cfg.train.max_steps  # checkpoints come from the phase stops


def plan_run(options: TTTOptions, job: TTTJob, setup: TTTSetup, d: Dist) -> Plan | None:
    """Measure throughput on the starting weights and fit the phases into the time left; None when
    the probe ran past the deadline."""
    cfg, built = setup.cfg, setup.built
    model = build_model(cfg, built.num_identifiers, d.device)
    if setup.init is not None:
        model.load_state_dict(setup.init)
    speed = measure_throughput(model, built, cfg, setup.batch_size, d, lambda needed: time_is_left(options, job, d, needed))
    del model
    if not time_is_left(options, job, d):
        return None
    frozen = setup.start < setup.freeze_until  # resumed inside the embeddings-only phase
    inputs = PlanInputs(
        views=setup.views, world=d.world, batch_size=setup.batch_size,
        max_steps_cap=setup.step_cap,
        halt_max_steps=cfg.model.halt_max_steps, quick_views=sum(len(t.test) for t in job.tasks) * QUICK_VIEWS,
        seconds_left=seconds_left(job.deadline, setup.margin),
        pretrained=setup.init is not None and (setup.start == 0 or frozen),
        embedding_fraction=options.embedding_fraction)
    plan = plan_phases(speed, inputs)
    if setup.start > 0 and frozen and plan.steps:  # the phase ends where the run planned it, not a share later
        left = min(1.0, (setup.freeze_until - setup.start) / plan.steps)
        plan = plan_phases(speed, dataclasses.replace(inputs, embedding_fraction=left))
    plan = resumed_plan(plan, setup.start, setup.step_cap)
    apply_plan(cfg, plan)
    save_plan(job, plan, d)
    if d.main:
        print(plan_line(plan, setup.start))
    return plan


def fits_canvas(tasks: list[Task], canvas: int, main: bool = True) -> bool:
    """True when some task fits the canvas (the build skips the others with a warning); else all
    are skipped here, with one warning line (on the main process), and keep their fallback answers."""
    if any(max_side(t) <= canvas for t in tasks):
        return True
    if main:
        sides = sorted(max_side(t) for t in tasks)
        span = f"{sides[0]}" if sides[0] == sides[-1] else f"{sides[0]} to {sides[-1]}"
        ids = sorted(t.id for t in tasks)
        what = (f"task {ids[0]}, which keeps its fallback answer" if len(ids) == 1 else
                f"all {len(ids)} tasks ({few_ids(ids)}), which keep their fallback answers")
        eprint(f"warning: no task fits the {canvas}x{canvas} canvas (largest grid side {span}): skipping {what}")
    return False


def prepare(options: TTTOptions, job: TTTJob, d: Dist) -> TTTSetup | None:
    """Config, the augmented set of the new tasks and the starting weights (None: no task fits)."""
    cfg, pretrained = ttt_config(options, job, d)
    if not fits_canvas(job.tasks, cfg.data.canvas, d.main):
        return None
    if d.world > 1:
        dist.barrier()  # rank 0 has written the tasks file
    progress = options.progress and d.main
    built = load_or_build(cfg, d, progress)
    shutdown_worker_pool()  # the build's joblib workers would otherwise idle on (and hold our stdout)
    init = None if pretrained is None else ckpt.transplant_weights(pretrained.state, pretrained.id_map,
                                                                   built.identifier_map())
    ids = pretrained.id_map if pretrained is not None else None
    other = trained_rows(job.tasks, ids.identifiers, ids.task_hashes)[1] if ids and ids.task_hashes else []
    if other:  # transplant_weights gave their rows the mean
        print0(d, other_content_line(other, "their rows start at the mean row, as a new task's do"))
    views = len(built.test_views())
    batch_size = max(1, min(options.batch_size, math.ceil(views / d.world)))
    latest = LatestCheckpoint.of(job.out) if options.resume else None
    start, freeze_until = resume_point(latest) if latest is not None else (0, 0)
    return TTTSetup(cfg, built, init, views, batch_size, job.margin_s(options.margin),
                    user_step_cap(options.overrides), progress, options.scoring, start, freeze_until, latest,
                    options.tasks, pretrained.folder if pretrained is not None else None)


def phase_timing(trained: TrainResult, phase_steps: int, phase_s: float, quick_s: float, seconds_left: float,
                 d: Dist) -> PhaseTiming:
    """A phase's measurements, each the slowest process's (so that every process re-plans alike)."""
    overhead_s = max(0.0, phase_s - phase_steps * trained.step_s)
    worst = torch.tensor([trained.step_s, overhead_s, quick_s, -seconds_left], device=d.device)
    if d.world > 1:
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    step_s, overhead_s, quick_s, minus_left = worst.tolist()
    return PhaseTiming(trained.steps, phase_steps, step_s, overhead_s, quick_s, -minus_left)


def save_plan(job: TTTJob, plan: Plan, d: Dist) -> None:
    """RUN/ttt_plan.json: the plan as it stands (rank 0)."""
    if d.main:
        write_json_atomic(job.out / "ttt_plan.json", dataclasses.asdict(plan), indent=2)


def record_replan(job: TTTJob, old: Plan, new: Plan, d: Dist) -> None:
    save_plan(job, new, d)
    if d.main:
        r = new.replans[-1]
        print(f"re-plan at step {r.at_step}: {r.step_s:.3f} s/step measured (probe {new.train_step_s:.3f}), "
              f"{old.steps} -> {new.steps} steps, phases end at steps {new.stops}")


def predict_now(job: TTTJob, setup: TTTSetup, step: int, full: bool, d: Dist, checkpoint: Path | None = None,
                model: Callable[[], LoadedModel] | None = None) -> None:
    """Predict from the latest checkpoint (or `checkpoint`, or the model `model` makes; every view,
    or a few per test input) into the submission. A signal lets it finish: its answers are the
    run's deliverable."""
    with current().polled(f"finishing this prediction first ({job.submission.name} keeps its answers)"):
        loaded = model() if model is not None else load_model(checkpoint or job.out, d.device)
        predict_with(job, setup, step, full, d, loaded)


def predict_with(job: TTTJob, setup: TTTSetup, step: int, full: bool, d: Dist, loaded: LoadedModel) -> None:
    """Predict with `loaded` into the submission (every view, or a few per test input)."""
    view_run = loaded.view_run(batch_size=setup.batch_size, progress=setup.progress,
                               deadline=job.deadline - setup.margin / 2, scoring=setup.scoring)
    options = PredictOptions(setup.cfg.data.tasks, max_views=0 if full else QUICK_VIEWS, named=setup.source)
    summary = predict([loaded], job.answered, job.submission, options, view_run, d)
    if summary is None or not summary.written:  # another rank, or predict said the submission keeps its answers
        return
    if summary.views == 0:
        print(f"step {step}: no view ran: {job.submission} holds the fallback answers")
    else:
        print(f"step {step}: submission updated from {summary.views} views "
              f"({summary.mean_steps:.2f} steps per view), {time.time() - job.start:.0f} s since start")


def train_and_predict(job: TTTJob, setup: TTTSetup, plan: Plan, d: Dist, signals: StopRequest) -> TTTOutcome:
    """Each phase trains to its stop and re-plans the rest from the step time it measured, then
    predicts: quickly at a quick stop, in full after the last phase (or when the deadline cut a
    phase short); the submission is replaced each time. A signal ends the phase with a checkpoint
    and the run without another prediction (the submission holds the latest one)."""
    margin, cfg = setup.margin, setup.cfg
    done, quick_s = setup.start, 0.0  # quick_s: the latest quick prediction's seconds
    resumed = bool(run_files(job.out))  # train's files: a new run has none (its folder was claimed)
    while stop := next((s for s in plan.stops if s > done), 0):
        final = stop == plan.steps
        began = time.time()
        trained = train(cfg, job.out, TrainOptions(
            resume=done > 0 or resumed, stop_at=stop, run_end=plan.steps, progress=setup.progress, built=setup.built,
            init_weights=setup.init if done == 0 else None, stop=signals,
            latest=setup.latest if done == setup.start else None,  # later phases: the marker their checkpoint wrote
            continues=done > setup.start, step_s=plan.replans[-1].step_s if plan.replans else plan.train_step_s,
            deadline=job.deadline - margin - plan.predict_s - (0 if final else plan.quick_predict_s)))
        if trained.stopped_by is not None:
            return TTTOutcome(trained.steps, trained.stopped_by, trained.final_checkpoint)
        if trained.steps == 0 and setup.init is None:  # the deadline came first: weights from scratch answer nothing
            print0(d, "no training step fitted in the time left; the fallback submission stands")
            return TTTOutcome(0)
        cut = trained.steps < stop  # the deadline cut this phase short: predict in full now
        if not (final or cut):
            timing = phase_timing(trained, trained.steps - done, time.time() - began, quick_s,
                                  seconds_left(job.deadline, margin), d)
            replanned = replan(plan, timing, setup.step_cap)
            if replanned is not plan:
                apply_plan(cfg, replanned)
                record_replan(job, plan, replanned, d)
                plan = replanned
        last = final or cut or plan.steps == trained.steps
        if last or stop in plan.quick_stops:
            began = time.time()
            predict_now(job, setup, trained.steps, last, d)
            quick_s = time.time() - began
        done = trained.steps
        if last:
            break
    if not plan.stops:
        predict_untrained(job, setup, plan, d)
    return TTTOutcome(done)


def predict_untrained(job: TTTJob, setup: TTTSetup, plan: Plan, d: Dist) -> None:
    """No training step fits: a resumed run predicts from its checkpoint; a new one from a
    checkpoint predicts with its weights when the final prediction fits the time left (untrained
    weights from scratch answer nothing); else the fallback stands, and one line says why."""
    if setup.start > 0:  # a resumed run with no step left to train: its final prediction
        predict_now(job, setup, setup.start, True, d, setup.latest.folder if setup.latest else None)
        return
    if setup.init is None:
        print0(d, "no time to train within the budget; the fallback submission stands")
        return
    left = seconds_left(job.deadline, setup.margin)
    if plan.predict_s > left:
        print0(d, f"no time to train or to predict: the final prediction may take "
                  f"{duration_text(plan.predict_s, tenths=True)}, {duration_text(left, tenths=True)} is left; the fallback submission stands")
        return
    print0(d, "no time to train: predicting with the checkpoint's weights")
    predict_now(job, setup, 0, True, d, model=lambda: starting_model(setup, d))


def starting_model(setup: TTTSetup, d: Dist) -> LoadedModel:
    """The run's starting weights (the checkpoint's, its new puzzle rows at the mean) as a model to
    predict with, under the run's own puzzle ids."""
    model = build_model(setup.cfg, setup.built.num_identifiers, d.device)
    model.load_state_dict(setup.init)
    return LoadedModel(model.eval(), setup.cfg, setup.built.identifier_map(), setup.pretrained)


def time_is_left(options: TTTOptions, job: TTTJob, d: Dist, needed: float = 0.0) -> bool:
    """The deadline check (less the margin) before any loading, building or probing: more than
    `needed` seconds are left. Every process takes the earliest clock's answer, so all go on or none."""
    left = torch.tensor([seconds_left(job.deadline, job.margin_s(options.margin))])
    if d.world > 1:
        left = left.to(d.device)
        dist.all_reduce(left, op=dist.ReduceOp.MIN)
    return float(left) > needed


def spent_line(options: TTTOptions, job: TTTJob) -> str:
    """The deadline (less the margin) passed in the set-up, before any training step."""
    kept = f"{job.submission} keeps its answers" if options.resume else "the fallback submission stands"
    return (f"the deadline has passed before training could start: the budget ({duration_text(job.deadline - job.start)}) "
            f"was spent in {time.time() - job.start:.0f} s of set-up; nothing is trained, {kept}")


def run_device(options: TTTOptions) -> str:
    """train.device as the run's config holds it (a --set may name one; train() sets up the same),
    checked against this machine."""
    name = options.preset or default_preset("ttt", options.overrides)
    try:  # also the --set check against the preset that runs (check_options could not tell which)
        device = apply_overrides(preset(name), list(options.overrides)).train.device
        check_device_available(device)
    except ValueError as e:
        raise InputError(str(e)) from None
    return device


def test_time_train(options: TTTOptions, job: TTTJob) -> TTTOutcome:
    """The torch side of the run: prepare, plan, then train and predict phase by phase. SIGINT or
    SIGTERM while it trains ends the step with a checkpoint (a signal before that stops at once;
    under the CLI, its request is the command's, and its line says how to continue)."""
    d = setup(run_device(options))
    signals = current()
    outcome = TTTOutcome()
    with signals.installed():
        spent = not time_is_left(options, job, d)
        prepared = None if spent else prepare(options, job, d)  # None: no task fits
        spent = spent or (prepared is not None and not time_is_left(options, job, d))  # the build overran it
        plan = None if prepared is None or spent else plan_run(options, job, prepared, d)
        spent = spent or (prepared is not None and plan is None)  # the speed probe overran it
        if plan is not None:
            with signals.polled():
                outcome = train_and_predict(job, prepared, plan, d, signals)
                agree_on_signal(signals, d)  # a signal in the final prediction may have reached some ranks only
    if spent:  # the run's last line: a "done in 22 s of 10 s" read as if it had trained
        print0(d, spent_line(options, job))
    elif d.main and outcome.stopped_by is None:
        over = " (past the budget: its set-up, the build and speed probe, took longer)" if (
            outcome.step == 0 and time.time() > job.deadline) else ""
        print(f"done in {time.time() - job.start:.0f} s of {job.deadline - job.start:.0f} s{over}; "
              f"submission at {job.submission}")
    teardown()
    return outcome
