"""Test-time training, the torch-free part: the run's options, its time budget and the plan that
fits training phases and predictions into it (arc_trm.ttt is the command, arc_trm.ttt_phases the
torch side)."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

from arc_trm import runs
from arc_trm.config import RunConfig, config_from_json, preset
from arc_trm.config_rules import check_device_available
from arc_trm.overrides import DEFAULT_PRESETS, apply_overrides, override_field
from arc_trm.consistency import SCORINGS
from augment.console import duration_text
from augment.errors import InputError
from augment.files import read_json, write_json_atomic
from augment.launch import launch
from augment.tasks import Task
from submission.runfolder import TTT_FILES, resolve_checkpoint, run_files, verify_model_files
from submission.runtime import seconds

QUICK_VIEWS = 8  # views per test input in the intermediate predictions
# Shares of the plan at which a phase ends, without prediction, to re-plan from the step time measured:
# early (the probe misjudges a loaded machine), then late, so that a later change of load moves only
# the last fifth of training.
REPLAN_FRACTIONS = (0.1, 0.5, 0.8)
MIN_TIMED_STEPS = 10  # a shorter phase times its steps too roughly to re-plan from


def parse_budget(text: str) -> float:
    """'90s', '30m', '8h', '10.5h' or '1h30m' -> seconds (the notebook's parser)."""
    return seconds(text, "--budget")


@dataclasses.dataclass(frozen=True)
class TTTOptions:
    """One test-time training run: what `arc-trm ttt` takes (run(args) builds one), callable from
    Python as `ttt(TTTOptions(tasks=..., out=...))`."""

    tasks: str  # a Kaggle challenges .json, a folder or a source name
    out: Path  # run folder
    checkpoint: str | None = None  # pretrained run or checkpoint folder (None: from scratch)
    budget: str = "8h"  # wall clock for the whole run: 90s, 30m, 8h or 1h30m (a unit is required)
    submission: Path | None = None  # the submission kept valid (default OUT/submission.json)
    preset: str | None = None  # default: kaggle on a GPU, cpu-quick otherwise
    overrides: tuple[str, ...] = ()  # --set KEY=VALUE
    embedding_fraction: float = 0.2  # with a checkpoint: share of steps training only the embeddings
    margin: float = 0.05  # share of the budget kept in reserve
    batch_size: int = 256  # views in flight during prediction
    scoring: str = "votes"  # votes | consistency (arc_trm.consistency)
    progress: bool = True
    force: bool = False  # move a run already in `out` aside
    per_task: bool = False  # each task with its own model copy, the budget split by demonstrations
    resume: bool = False  # continue `out` from its latest checkpoint (its submission kept), under `budget` anew

    @property
    def submission_path(self) -> Path:
        return Path(self.submission) if self.submission else Path(self.out) / "submission.json"


def check_resume_kind(options: TTTOptions) -> None:
    """--resume continues a run as it was started: --per-task its tasks' runs (RUN/tasks/), without it
    the one model of every task (RUN/checkpoints); the other way would train anew over its answers."""
    out = Path(options.out)
    if not options.resume or not out.is_dir():
        return
    per_task, joint = (out / "tasks").is_dir(), bool(run_files(out))
    recorded = run_record(out)
    if recorded is not None and isinstance(recorded.get("per_task"), bool):  # stopped before its first task too
        per_task, joint = recorded["per_task"], not recorded["per_task"]
    if per_task and not options.per_task:
        raise InputError(f"the run in {out} trains each task alone (RUN/tasks/): resume it with --per-task")
    if joint and not per_task and options.per_task:
        raise InputError(f"the run in {out} trains one model for every task: resume it without --per-task")


def check_options(options: TTTOptions) -> float:
    """Every option checked before any work; returns the budget in seconds."""
    budget = parse_budget(str(options.budget))  # more than 0 s: the parser says so
    if options.batch_size < 1:
        raise InputError(f"--batch-size must be an integer >= 1, got {options.batch_size}")
    if not 0 <= options.margin < 1:
        raise InputError(f"--margin must be a fraction in [0, 1), got {options.margin}")
    runs.check_force_resume(options.force, options.resume, Path(options.out))
    check_resume_kind(options)
    if options.per_task and launch().many:
        raise InputError("--per-task runs in one process; start it without torchrun")
    if options.scoring not in SCORINGS:
        raise InputError(f"--scoring must be one of {', '.join(SCORINGS)}, got {options.scoring!r}")
    if not 0 <= options.embedding_fraction <= 1:
        raise InputError(f"--embedding-fraction must be a fraction in [0, 1], got {options.embedding_fraction}")
    # Names, types and ranges; without --preset, against either preset the machine may run (torch,
    # which tells, loads after the fallback is written, unless a device is named): ttt_phases.run_device
    # checks the one that runs.
    errors = []
    for name in [options.preset] if options.preset else DEFAULT_PRESETS["ttt"]:
        try:
            device = apply_overrides(preset(name), list(options.overrides)).train.device
            if device not in ("auto", "cpu"):  # a device named: torch tells now, before --out is claimed
                check_device_available(device)
            return budget
        except ValueError as e:
            errors.append(e)
    raise InputError(str(errors[0]))


# Model fields that say how the network runs, not what its weights are: a --set may change them
# on pretrained weights (the notebook sets forward_dtype=float32 on a GPU without bf16); every other
# model field, and data.canvas (the grid tokens), is fixed by the weights.
RUNTIME_MODEL_FIELDS = ("forward_dtype", "halt_max_steps", "halt_exploration_prob", "H_cycles", "L_cycles",
                        "no_ACT_continue")


def start_config(preset_name: str, pretrained: RunConfig | None, overrides: tuple[str, ...],
                 where: object) -> RunConfig:
    """The preset, with a pretrained model's shape and canvas, then --set: one line when a --set
    changes what the weights of `where` fix."""
    cfg = preset(preset_name)
    if pretrained is not None:
        cfg.model = dataclasses.replace(pretrained.model)  # the weights fix the model and the canvas
        cfg.data.canvas = pretrained.data.canvas
    fixed = dataclasses.replace(cfg.model)
    try:
        apply_overrides(cfg, list(overrides))
    except ValueError as e:
        raise InputError(str(e)) from None
    if pretrained is not None:
        changed = [f"model.{k}" for k, v in fixed.to_dict().items()
                   if k not in RUNTIME_MODEL_FIELDS and getattr(cfg.model, k) != v]
        changed += ["data.canvas"] if cfg.data.canvas ** 2 != fixed.seq_len else []
        if changed:
            raise InputError(f"--set {', '.join(changed)}: fixed by the weights of --checkpoint {where}")
    return cfg


def check_checkpoint(options: TTTOptions) -> Path | None:
    """--checkpoint, before anything is written (torch-free, so before the fallback): a complete
    checkpoint or inference export whose files match its manifest (sizes and hashes: a truncated,
    replaced or unreadable file is caught here, not after a build), with a config this arc-trm
    reads, that no --set changes what its weights fix, and that --force will not move aside with
    the run in --out. Returns the weights' folder (None: no --checkpoint)."""
    if not options.checkpoint:
        if options.embedding_fraction != TTTOptions.embedding_fraction:  # else silently unused
            raise InputError(f"--embedding-fraction {options.embedding_fraction:g} applies with --checkpoint only (a "
                             "model from scratch trains all its weights from the first step)")
        return None
    given = Path(options.checkpoint)
    if not given.exists():
        raise InputError(f"--checkpoint {given}: no such file or folder")
    folder = resolve_checkpoint(given)
    verify_model_files(folder)
    saved = config_from_json(read_json(folder / "config.json", "checkpoint config"), folder / "config.json",
                             "checkpoint config")
    start_config(options.preset or "kaggle", saved, options.overrides, folder)
    out = Path(options.out).resolve()
    if options.force and run_files(out, TTT_FILES) and folder.resolve().is_relative_to(out):
        raise InputError(f"--checkpoint {folder} is inside --out {options.out}, which --force moves aside before "
                         "the checkpoint is loaded: copy the checkpoint elsewhere or use another --out")
    return folder


RUN_RECORD = "ttt_run.json"  # in RUN: {"checkpoint": the folder it started from or null, "tasks": ids, "per_task"}


def record_start(out: Path, pretrained: Path | None, tasks: list[Task], per_task: bool = False) -> None:
    """RUN/ttt_run.json for a new run: what a --resume without --checkpoint starts from, the tasks
    it trains (a --per-task run has no ttt_challenges.json of its own to check a resume by), and
    whether it trains them one by one (a run stopped before its first task has no RUN/tasks/ yet)."""
    write_json_atomic(Path(out) / RUN_RECORD, {"checkpoint": str(pretrained.resolve()) if pretrained else None,
                                               "tasks": sorted(t.id for t in tasks), "per_task": per_task}, indent=2)


def run_record(out: Path) -> dict | None:
    """RUN/ttt_run.json, checked; None where the run has none (made before it was written)."""
    record = Path(out) / RUN_RECORD
    if not record.is_file():
        return None
    data = read_json(record, "the run's record")
    if not isinstance(data, dict) or not isinstance(data.get("checkpoint"), (str, type(None))):
        raise InputError(f"{record}: expected an object whose \"checkpoint\" is a path or null; pass --checkpoint")
    return data


def with_recorded_checkpoint(options: TTTOptions) -> TTTOptions:
    """--resume without --checkpoint: the checkpoint the run started from (RUN/ttt_run.json), one
    line if it is gone; the options as given otherwise."""
    record = Path(options.out) / RUN_RECORD
    data = run_record(options.out) if options.resume and not options.checkpoint else None
    if data is None:
        return options
    started = data.get("checkpoint")
    if not started:
        return options  # the run trained from scratch
    if not Path(started).exists():
        raise InputError(f"the run in {options.out} started from --checkpoint {started} ({record}), which is gone: "
                         "pass --checkpoint with a copy of it")
    if launch().main:  # once, not once per torchrun process
        # Not "resuming from" it: training continues from the run's own latest checkpoint, said next.
        print(f"--resume without --checkpoint: the run started from {started} (recorded in {record}); it "
              "continues from its own latest checkpoint", flush=True)
    return dataclasses.replace(options, checkpoint=started)


def check_same_model(out: Path, cfg: RunConfig) -> None:
    """A resumed run builds the model its checkpoints hold and the augmented set its build holds
    (RUN/config.json): one line naming what differs and what is missing (a --checkpoint, --preset or
    --set it started with), before its build is refused in terms of --build, which ttt has not."""
    saved = Path(out) / "config.json"
    data = read_json(saved, "the run's config") if saved.is_file() else None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict) or not isinstance(data.get("data"), dict):
        return
    built = [k for k in ("canvas", "augmentations", "build_seed") if k in data["data"]]  # what RUN/build was made with
    have = {**{f"model.{k}": v for k, v in data["model"].items()}, **{f"data.{k}": data["data"][k] for k in built}}
    # num_puzzle_ids and seq_len follow the build and the canvas
    want = {**{f"model.{k}": v for k, v in cfg.model.to_dict().items()
               if k not in (*RUNTIME_MODEL_FIELDS, "num_puzzle_ids", "seq_len")},
            **{f"data.{k}": getattr(cfg.data, k) for k in built}}
    differ = [f"{k} {have.get(k)} (not {v})" for k, v in want.items() if have.get(k) != v]
    if differ:
        raise InputError(f"the run in {out} was started with other settings ({', '.join(differ[:3])} in {saved}): "
                         "--resume it with the --checkpoint (and --preset, --set) it started from")


def seconds_left(deadline: float, reserve_s: float = 0.0, now: float | None = None) -> float:
    """Seconds until `deadline` less `reserve_s` (the margin kept back). At or below 0 nothing new
    starts: the one deadline check of the main path and of each --per-task task."""
    return deadline - reserve_s - (time.time() if now is None else now)


@dataclasses.dataclass
class TTTJob:
    tasks: list[Task]  # well-formed tasks: trained and predicted
    answered: list[Task]  # every task of the submission (malformed ones keep the fallback)
    out: Path
    submission: Path
    start: float  # time.time() at the start of the run
    deadline: float  # time.time() by which the run must be done

    def margin_s(self, fraction: float) -> float:
        """The reserve kept before the deadline: `fraction` (--margin) of this job's budget."""
        return fraction * (self.deadline - self.start)


@dataclasses.dataclass(frozen=True)
class Replan:
    """One re-plan, recorded in ttt_plan.json."""

    at_step: int
    step_s: float  # seconds per training step measured in the phase that ended there
    overhead_s: float  # seconds of that phase's train() call besides its steps
    seconds_left: float  # until the deadline less the margin
    steps: int  # the new planned total


@dataclasses.dataclass
class Plan:
    train_step_s: float  # seconds per training step, from the probe before training
    infer_step_s: float  # measured seconds per inference step of a full batch of views
    views: int  # all views of all test inputs
    predict_s: float  # reserved for the final prediction (every view at the step cap)
    quick_predict_s: float  # reserved for each intermediate prediction (measured once one ran)
    steps: int  # training steps that fit (re-planned as phases end)
    freeze_steps: int  # of which embeddings only
    stops: list[int]  # steps at which a phase ends; the last is followed by the final prediction
    quick_stops: list[int]  # those followed by a quick prediction (the others only re-plan)
    replans: list[Replan] = dataclasses.field(default_factory=list)


def plan_line(plan: Plan, start: int) -> str:
    """The plan as the run prints it; `start`: the step a resumed run continues from (0: none)."""
    resumed = f", {plan.steps - start} after the resumed step {start}" if start else ""
    quick = f"quick predictions at {plan.quick_stops}" if plan.quick_stops else "no quick predictions"
    return (f"plan: {plan.steps} training steps ({plan.freeze_steps} embeddings only{resumed}) at "
            f"{plan.train_step_s:.3f} s/step, phases end at steps {plan.stops} ({quick}), "
            f"{duration_text(plan.predict_s, tenths=True)} reserved for the final prediction of {plan.views} views")


@dataclasses.dataclass(frozen=True)
class Throughput:
    train_step_s: float  # measured seconds per training step (local batch)
    infer_step_s: float  # measured seconds per inference step of a full batch of views


@dataclasses.dataclass(frozen=True)
class PlanInputs:
    """What the plan fits into the time left."""

    views: int  # all views of all test inputs
    world: int  # processes
    batch_size: int  # views in flight per process
    max_steps_cap: int  # train.max_steps when the user set it (a preset's value is no cap: 0)
    halt_max_steps: int
    quick_views: int  # views of each intermediate prediction
    seconds_left: float
    pretrained: bool  # an embeddings-only phase comes first
    embedding_fraction: float


def user_step_cap(overrides: tuple[str, ...] | list[str]) -> int:
    """train.max_steps if a --set names it, else 0: a preset's max_steps never caps a budgeted run."""
    named = [item for item in overrides if override_field(item) == ("train", "max_steps")]
    return apply_overrides(preset("cpu-quick"), named).train.max_steps if named else 0  # the last one counts


def fitted_warmup(warmup: int, steps: int) -> int:
    """A warmup longer than a quarter of the planned steps is cut to a tenth of them, so that the
    run spends most of its budget at the full learning rate."""
    return warmup if warmup <= steps // 4 else max(1, steps // 10)


def plan_phases(speed: Throughput, job: PlanInputs) -> Plan:
    """Fit training into what is left after reserving time for the predictions.

    speed.infer_step_s is the time of one inference step of `job.batch_size` views (or of all of
    this rank's views, when fewer). Intermediate predictions use `job.quick_views` views and are
    skipped when they would cost as much as the final one.
    """
    def predict_seconds(n_views: int) -> float:
        batches = math.ceil(n_views / job.world / job.batch_size)
        return 1.25 * batches * job.halt_max_steps * speed.infer_step_s  # worst case: no view halts early

    predict_s = predict_seconds(job.views)
    quick = job.quick_views < job.views
    quick_s = predict_seconds(job.quick_views) if quick else 0.0
    spare = job.seconds_left - predict_s - 2 * quick_s
    steps = max(0, int(spare / max(speed.train_step_s, 1e-9)))
    if spare > 0:
        # A probe on a busy machine can read many times slow (6.3 s/step for a loop that ran at
        # 0.75): with any time to spare, a first phase long enough to time runs, the re-plan after
        # it fits the rest, and train's deadline guard stops it in time if the probe was right.
        steps = max(steps, round(MIN_TIMED_STEPS / REPLAN_FRACTIONS[0]))
    if job.max_steps_cap > 0:
        steps = min(steps, job.max_steps_cap)
    freeze = int(round(job.embedding_fraction * steps)) if job.pretrained else 0
    quick_stops = sorted({s for s in ((freeze, steps // 2) if quick else ()) if 0 < s < steps})
    # Only a plan whose shortest phase, the first, is long enough to time re-plans.
    timed = {int(f * steps) for f in REPLAN_FRACTIONS} if REPLAN_FRACTIONS[0] * steps >= MIN_TIMED_STEPS else set()
    stops = sorted(set(quick_stops) | timed | ({steps} if steps > 0 else set()))
    return Plan(speed.train_step_s, speed.infer_step_s, job.views, predict_s, quick_s, steps, freeze, stops,
                quick_stops)


@dataclasses.dataclass(frozen=True)
class PhaseTiming:
    """What the phase that just ended measured (on many processes: the slowest one's figures)."""

    step: int  # the run's step at the end of the phase
    phase_steps: int  # steps the phase ran
    step_s: float  # seconds per training step
    overhead_s: float  # the rest of the phase's train() call: set-up, first step, checkpoint
    quick_predict_s: float  # the latest quick prediction's seconds (0: none ran yet)
    seconds_left: float  # until the deadline less the margin


def replan(plan: Plan, timing: PhaseTiming, step_cap: int) -> Plan:
    """The plan re-fitted to the step time the run measured (a probe before training misjudges a
    loaded machine): training ends when the time left, less the predictions and the set-up of the
    phases still to come, runs out, never before the step reached nor past a user's cap. Stops
    and embeddings-only steps not reached yet keep their share of the plan."""
    done = timing.step
    if timing.phase_steps < MIN_TIMED_STEPS or plan.steps <= done:
        return plan
    quick_s = timing.quick_predict_s or plan.quick_predict_s
    later = [s for s in plan.stops if s > done]
    reserve = (plan.predict_s + quick_s * sum(1 for s in plan.quick_stops if s >= done)
               + timing.overhead_s * len(later))
    steps = done + int(max(0.0, timing.seconds_left - reserve) / max(timing.step_s, 1e-9))
    steps = max(done, min(steps, step_cap) if step_cap > 0 else steps)

    def moved(s: int) -> int:
        return round(s * steps / plan.steps)

    def kept(stops: list[int]) -> list[int]:  # those passed, and those ahead moved (while before the end)
        ahead = {moved(s) for s in stops if s > done}
        return sorted({s for s in stops if s <= done} | {m for m in ahead if done < m < steps})

    return dataclasses.replace(
        plan, quick_predict_s=quick_s, steps=steps,
        freeze_steps=plan.freeze_steps if plan.freeze_steps <= done else moved(plan.freeze_steps),
        stops=kept(plan.stops[:-1]) + ([steps] if steps > done else []),
        quick_stops=kept(plan.quick_stops),
        replans=[*plan.replans, Replan(done, timing.step_s, timing.overhead_s, timing.seconds_left, steps)])


def resumed_plan(plan: Plan, done: int, step_cap: int) -> Plan:
    """A plan fitted to the time left after a resumed run's `done` steps, in the run's steps: every
    count moves on by `done`, and a user's train.max_steps caps the run's total, not the rest."""
    if done == 0:
        return plan
    steps = plan.steps if step_cap <= 0 else min(plan.steps, max(0, step_cap - done))
    if steps < plan.steps:  # the cap cut the plan: keep the stops that fit, end at the cap
        inside = [s for s in plan.stops if s < steps]
        plan = dataclasses.replace(plan, steps=steps, freeze_steps=min(plan.freeze_steps, steps),
                                   stops=inside + ([steps] if steps > 0 else []),
                                   quick_stops=[s for s in plan.quick_stops if s < steps])
    return dataclasses.replace(
        plan, steps=plan.steps + done, freeze_steps=plan.freeze_steps + done if plan.freeze_steps else 0,
        stops=[s + done for s in plan.stops], quick_stops=[s + done for s in plan.quick_stops])
