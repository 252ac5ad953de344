"""The training loop of TRM: one flat function, `train`, and the small pieces it uses. The
command line (`arc-trm train`) is arc_trm/train_cli.py."""

from __future__ import annotations

import json
import math
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from arc_trm import checkpoint as ckpt
from arc_trm import runs
from arc_trm.common import CompiledOrEager, Dist, agree_on_signal, print0, setup, wants_compile
from arc_trm.config import RunConfig, TrainConfig
from arc_trm.builds import default_build_dir, is_default_build, load_or_build
from arc_trm.data import Prefetcher, make_sampler
from arc_trm.infer import evaluate_built
from arc_trm.views import ViewRun
from arc_trm.metrics import (BAR_FORMAT, METRICS_FILE, LogWindow, MetricsSink, StepClock, bar_text, log_line,
                             start_wandb)
from arc_trm.flops import count_parameters
from arc_trm.model import TRM, draw_min_halt_steps
from arc_trm.snapshot import BatchLayout, LatestCheckpoint, TrainState, out_of_memory_line, restore, save_checkpoint
from arc_trm.stopping import StopRequest, signal_name
from arc_trm.step import Optimizers, StepSetup, split_batch, train_step
from augment.build import canvas_skip_line
from augment.console import bar_shown, eprint, progress_bar, warn_once
from augment.store import BuiltSet
from augment.errors import InputError, few_ids
from augment.files import write_text_atomic


# ----------------------------------------------------------------------------------------------
# Small pieces of the loop


def lr_at(step: int, base: float, warmup: int, total: int = 0, min_ratio: float = 1.0) -> float:
    """The reference's cosine schedule with warmup (step counts from 1): linear from 0 over
    `warmup` steps, then a half cosine from `base` down to `base * min_ratio` at step `total`.
    min_ratio 1.0 (the default) keeps the rate constant after warmup."""
    if step < warmup:
        return base * float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return base * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))))


def set_learning_rates(opts: Optimizers, tcfg: TrainConfig, step: int, total: int) -> None:
    """Both optimisers' rates at `step` of `total`. The model's weights get 0 while only the
    puzzle table trains (train.freeze_model_steps, test-time training)."""
    def rate(base: float) -> float:
        return lr_at(step, base, tcfg.lr_warmup_steps, total, tcfg.lr_min_ratio)
    for g in opts.weights.param_groups:
        g["lr"] = 0.0 if step <= tcfg.freeze_model_steps else rate(tcfg.lr)
    opts.table.param_groups[0]["lr"] = rate(tcfg.puzzle_emb_lr)


def total_steps(cfg: RunConfig, built: BuiltSet) -> int:
    if cfg.train.max_steps > 0:
        return cfg.train.max_steps
    # An epoch visits every task group once with one augmented version's examples.
    per_epoch = sum(built.num_train_examples(g.start) for g in built.groups)
    return max(1, math.ceil(cfg.train.epochs * per_epoch / cfg.train.global_batch_size))


def ema_rate_at(step: int, rate: float, warmup: bool = True) -> float:
    """EMA rate warmed up over the first steps, so short runs are not dominated by the initial
    weights (0.99 over 150 steps would still hold 22% of them). Departs from the reference's
    constant rate only for the first ~10 / (1 - rate) steps; warmup=False is the reference."""
    return min(rate, (1 + step) / (10 + step)) if warmup else rate


@torch.no_grad()
def ema_update(ema: dict[str, torch.Tensor], model: torch.nn.Module, rate: float) -> None:
    names = [name for name, _ in model.named_parameters()]
    averages = [ema[name] for name in names]
    torch._foreach_mul_(averages, rate)
    torch._foreach_add_(averages, [p.detach() for p in model.parameters()], alpha=1 - rate)


def log_record(window: LogWindow, state: TrainState, d: Dist) -> dict[str, float]:
    """The metrics line of the steps in `window`, which end at the state's step."""
    return {"step": state.step, **window.summary(d), "lr": state.opts.weights.param_groups[0]["lr"],
            "epoch": state.sampler_state["epoch"]}


def build_model(cfg: RunConfig, num_puzzle_ids: int, device: torch.device) -> TRM:
    """TRM initialised from cfg.train.seed (identical on every rank); the caller's global RNG
    state is left as it was."""
    cfg.model.num_puzzle_ids = num_puzzle_ids
    cfg.fit_canvas()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        model = TRM(cfg.model)
    return model.to(device)


def batch_layout(cfg: RunConfig, d: Dist) -> BatchLayout:
    """This rank's share of the global batch and its micro-batches, or a one-line error."""
    tcfg = cfg.train
    if tcfg.global_batch_size % d.world:
        raise InputError(f"global_batch_size {tcfg.global_batch_size} is not divisible by {d.world} processes")
    local = tcfg.global_batch_size // d.world
    if tcfg.grad_accum_steps < 1 or local % tcfg.grad_accum_steps:
        raise InputError(f"train.grad_accum_steps {tcfg.grad_accum_steps} does not divide the local batch of "
                         f"{local} rows")
    if cfg.data.bucketing and cfg.model.mlp_t:
        raise InputError("data.bucketing needs the attention model: mlp_t mixes a fixed sequence length")
    return BatchLayout(local, tcfg.grad_accum_steps, slice(d.rank * local, (d.rank + 1) * local))


def initial_state(cfg: RunConfig, built: BuiltSet, d: Dist, init_weights: dict[str, torch.Tensor] | None
                  ) -> TrainState:
    """Model (compiled where wanted), EMA, both optimisers, sampler and exploration RNG at step 0."""
    tcfg = cfg.train
    model = build_model(cfg, built.num_identifiers, d.device)
    if init_weights is not None:
        model.load_state_dict(init_weights)
    if wants_compile(tcfg.compile, d.device):
        # Only the tensor work: forward's reset and the puzzle-row gather stay eager.
        model.step = CompiledOrEager(model.step, backend=tcfg.compile_backend)
    ema = {n: p.detach().clone() for n, p in model.named_parameters()} if tcfg.ema_rate > 0 else None
    opts = Optimizers.for_model(model, tcfg)
    sampler = make_sampler(built, tcfg.seed, cfg.data.bucketing, tcfg.drop_last)
    sampler.check_batch(tcfg.global_batch_size)  # before the run folder holds a run a retry would meet
    return TrainState(model, ema, opts, sampler, torch.Generator().manual_seed(tcfg.seed + 1))


def start_run_folder(out: Path, cfg: RunConfig, step: int, resume: bool, d: Dist) -> None:
    """The run's config.json; a resumed run drops the metrics lines logged after its checkpoint
    (those steps run again) and keeps its config.json until a checkpoint is made with the new one
    (save_checkpoint), so a --set that fails in the first step is not the next --resume's too."""
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume or not (out / "config.json").is_file():
            write_text_atomic(out / "config.json", json.dumps(cfg.to_dict(), indent=2))
        if resume:
            runs.truncate_metrics(out / METRICS_FILE, step)


SKIPPED_FILE = "skipped_tasks.txt"  # in the run folder: the ids of the tasks the canvas skipped


@dataclass(frozen=True)
class Header:
    """What train says before it starts: the config and tasks line, and the skipped tasks' line
    (a warning when more than a quarter are skipped)."""

    config: str
    skipped: str | None = None
    many_skipped: bool = False


def header(cfg: RunConfig, built: BuiltSet, preset_name: str, skipped_file: Path) -> Header:
    c, skipped = cfg.data.canvas, list(built.meta.get("skipped", []))
    kept, total = built.counts["tasks"], built.counts["tasks"] + len(skipped)
    line = (f"train: {preset_name}, canvas {c}x{c}, global batch {cfg.train.global_batch_size}; tasks "
            f"{cfg.data.tasks}: {kept} kept, {len(skipped)} skipped")
    invalid = list(built.meta.get("invalid", []))  # the build's warning is not printed: the header says it
    left_out = f"; {len(invalid)} invalid left out by the build's --skip-bad-tasks: {few_ids(invalid)}" if invalid else ""
    if not skipped:
        return Header(line + left_out)
    many = len(skipped) > total / 4
    text = canvas_skip_line(skipped, total, c, str(skipped_file))
    if many:
        line += f" ({len(skipped) / total:.0%}: more than a quarter)"
        text += ("; --set data.canvas=30 keeps them" + (" (or --preset paper, made for GPUs)" if c < 30 else ""))
    return Header(line + left_out, text, many)


def print_header(cfg: RunConfig, built: BuiltSet, out: Path, preset_name: str) -> None:
    """The header's lines (from the build's metadata, so a cached build says the same); the full
    list of skipped tasks goes to RUN/skipped_tasks.txt."""
    skipped_file = out / SKIPPED_FILE
    h = header(cfg, built, preset_name, skipped_file)
    print(h.config, flush=True)
    if h.skipped:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(skipped_file, "".join(f"{i}\n" for i in built.meta["skipped"]))
        if h.many_skipped:
            eprint(f"warning: {h.skipped}")
        else:
            print(h.skipped, flush=True)


# ----------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainOptions:
    """How `train` runs besides the config.

    stop_at: end after this step with a checkpoint (as if pre-empted); `resume` continues.
    built: the augmented set, when the caller has it open (else it is built or opened here).
    init_weights: a state dict to start from (test-time training from a pretrained model).
    deadline: a time.time() by which training must have stopped and checkpointed; every rank
        stops at the same step once the next step would overrun it.
    stop: the caller's installed StopRequest (else train() installs one over its loop): on SIGINT
        or SIGTERM every rank finishes its step, checkpoints and returns (TrainResult.stopped_by).
    """

    resume: bool = False
    stop_at: int = 0
    progress: bool = True
    built: BuiltSet | None = None
    init_weights: dict[str, torch.Tensor] | None = None
    deadline: float | None = None
    stop: StopRequest | None = None
    preset: str = ""  # what the header names as the config's origin ("" = no header)
    latest: LatestCheckpoint | None = None  # with resume: the checkpoint, when the caller looked it up
    continues: bool = False  # with resume: a later phase of the caller's own run (no "resumed from" line)
    run_end: int = 0  # a caller training in phases (TTT): its run's last step, where the bar and ETA count to
    step_s: float = 0.0  # with a deadline: a step's seconds as the caller measured them (0: unknown)


@dataclass
class TrainResult:
    run: Path
    steps: int
    final_checkpoint: Path | None
    metrics: dict[str, float]
    step_s: float  # mean seconds per step of this call, its first step (which may compile) aside
    stopped_by: str | None = None  # the signal that stopped training early (a checkpoint holds the step)
    steps_total: int = 0  # the run's last step (more than `steps` when stop_at ended it early)


def train(cfg: RunConfig, out: Path, options: TrainOptions | None = None) -> TrainResult:
    """Train for cfg.train.max_steps (or epochs) into the run folder `out`."""
    options = options or TrainOptions()
    out, tcfg = Path(out), cfg.train
    d = setup(tcfg.device)
    device = d.device
    if not options.resume:
        runs.claim_run_folder(out, force=False, main=d.main)  # refuses a folder that holds a run
    if options.built is not None:
        built = options.built
    else:
        how = "made on first use, then reused; --build DIR picks the folder" if is_default_build(cfg) else "--build"
        print0(d, f"build: {default_build_dir(cfg)} ({how})")
        built = load_or_build(cfg, d, options.progress and d.main, warn=lambda line: None)  # the header says it
        if options.preset and d.main:
            print_header(cfg, built, out, options.preset)
    layout = batch_layout(cfg, d)
    state = initial_state(cfg, built, d, options.init_weights)
    resumed_from = restore(out, state, cfg, built, layout, d, options.latest) if options.resume else None
    if resumed_from is not None and not options.continues:  # ttt's next phase continues its own run quietly
        print0(d, f"resumed from step {state.step} ({resumed_from})")
    # W&B first: one that cannot start leaves no run behind to refuse the command's retry
    wandb_run = start_wandb(out, cfg) if d.main and tcfg.wandb_project else None
    start_run_folder(out, cfg, state.step, options.resume, d)
    id_map = built.identifier_map()
    steps_total = total_steps(cfg, built)
    end = min(steps_total, options.stop_at) if options.stop_at > 0 else steps_total
    shown_end = max(end, min(options.run_end, steps_total))  # what the bar, log lines and ETA count to
    if tcfg.eval_every > 0 and not any(t.role == "test" for t in built.tasks):
        warn_once(f"train.eval_every={tcfg.eval_every}: the tasks have no test split, so nothing is evaluated "
                  "(add a source with @test, e.g. --tasks arc-agi-1:training,arc-agi-1:evaluation@test)")
    if state.step == 0:
        print0(d, f"training {count_parameters(state.model):,} parameters, {built.num_identifiers:,} puzzle ids, "
                  f"{steps_total:,} steps of global batch {tcfg.global_batch_size} on {device} x{d.world}")
    sink = MetricsSink.open(out, d.main, wandb_run)
    # No bar (asked for none, or no terminal): a plain line per log step, with the ETA, instead.
    show_bar = bar_shown(options.progress and d.main)
    bar = progress_bar(show_bar, total=shown_end, initial=state.step, desc="train", unit="step", bar_format=BAR_FORMAT)
    step_setup = StepSetup(state.opts, d, tcfg.global_batch_size, tcfg.token_loss)
    last: dict[str, float] = {}
    window = LogWindow()
    final_dir = None
    # The state of the last batch consumed (what a checkpoint saves), read before the prefetch
    # thread starts drawing: a stop before the first step must not skip the batches it drew.
    state.sampler_state = state.sampler.state_dict()
    batches = Prefetcher(state.sampler, built, tcfg.global_batch_size, layout.rows, pin=device.type == "cuda")
    stop, stopped_by = options.stop or StopRequest(), None
    saved_step = state.step if state.step > 0 else -1  # a resumed run's checkpoint holds its first step
    if state.step >= end:  # the run's end, or a stop asked for at or before its step (--stop-at)
        final_dir = resumed_from  # the checkpoint restored (looked up once: a broken `latest` warns once)
        why = (f"the run's last of {steps_total} (to train further, raise train.max_steps with --set)"
               if state.step >= steps_total else f"at or past the stop asked for, step {end}")
        print0(d, f"nothing to train: {out} is already at step {state.step}, {why}")
    handlers = ExitStack()
    try:
        if options.stop is None:
            handlers.enter_context(stop.installed())
        handlers.enter_context(stop.polled())
        clock = StepClock(state.step, queues=device.type != "cpu", prior_s=options.step_s)
        while state.step < end:
            t_step = time.perf_counter()  # before the check: under torchrun its all-reduce waits for the device
            reason = stop_reason(options.deadline, clock.seconds_needed(2), stop, d,
                                 agree=state.step % tcfg.log_every == 0)
            if reason is not None:
                if reason == DEADLINE:
                    print0(d, f"stopping at step {state.step}: the deadline leaves no time for another step")
                else:
                    stopped_by = reason
                if window.steps:  # the steps since the last log line, logged as a run's last step logs them
                    last = log_record(window, state, d)
                    sink.log(last)
                saved = saved_step == state.step
                final_dir = ckpt.checkpoint_dir(out, state.step) if saved else save_checkpoint(out, state, cfg,
                                                                                              id_map, d)
                break
            state.step += 1
            step = state.step
            # 1. learning rates (warmup, then constant or cosine); the weights may wait (TTT)
            set_learning_rates(state.opts, tcfg, step, steps_total)

            # 2. one supervision step on one batch (every rank samples the global batch, keeps its
            #    slice, and runs it as `accum` micro-batches)
            fetched = batches.next()
            state.sampler_state = fetched.sampler_state
            try:
                batch = fetched.batch.map(lambda t: t.to(device, non_blocking=True))
                carry = state.carries.get(fetched.side) or [state.model.initial_carry(b)
                                                            for b in split_batch(batch, layout.accum)]
                min_steps = draw_min_halt_steps(tcfg.global_batch_size, cfg.model, state.explore)[layout.rows]
                state.model.train()
                result = train_step(state.model, carry, batch, min_steps.to(device, non_blocking=True), step_setup,
                                    update_weights=step > tcfg.freeze_model_steps)
            except torch.OutOfMemoryError:
                raise InputError(out_of_memory_line(layout, str(device))) from None
            state.carries[fetched.side] = result.carry

            # 3. EMA of the weights
            if state.ema is not None:
                ema_update(state.ema, state.model, ema_rate_at(step, tcfg.ema_rate, tcfg.ema_warmup))

            # 4. log (the only host synchronisation of a step, every log_every steps)
            window.add(result.stats, tcfg.global_batch_size)
            logged = step % tcfg.log_every == 0 or step == end
            if logged:
                last = log_record(window, state, d)
                sink.log(last)
                clock.step_done(step, time.perf_counter() - t_step, synced=True)
                eta_s = clock.eta(shown_end - step)
                bar.set_postfix_str(bar_text(last, eta_s))
                if not show_bar:  # a plain line, so a batch log shows the run going
                    print0(d, log_line(last, shown_end, eta_s))
                window = LogWindow()
            else:
                clock.step_done(step, time.perf_counter() - t_step, synced=False)
            bar.update(1)

            # 5. evaluate on the test split
            if tcfg.eval_every > 0 and (step % tcfg.eval_every == 0 or step == end):
                evaluate_during_training(cfg, state, built, d, sink)

            # 6. checkpoint
            if step % tcfg.checkpoint_every == 0 or step == end:
                final_dir, saved_step = save_checkpoint(out, state, cfg, id_map, d), step
        agree_on_signal(stop, d)  # one more check: a signal after the last one may have reached some ranks only
    finally:
        handlers.close()
        batches.close()
        bar.close()
        sink.close()
    return TrainResult(out, state.step, final_dir, last, clock.mean_step_s(), stopped_by, steps_total)


DEADLINE = "deadline"


def stop_reason(deadline: float | None, seconds_needed: float, stop: StopRequest, d: Dist,
                agree: bool = True) -> str | None:
    """Why training stops before the next step, the same on every rank: a signal's name when any
    rank received one, DEADLINE when any rank would overrun the deadline in `seconds_needed` (one
    more step, and a margin for the checkpoint), else None. Under torchrun one all-reduce decides
    both (a signal may reach one process only); without a deadline the ranks compare only when
    `agree` (at log steps, which synchronise anyway), so a step keeps no host sync and a signal
    stops within log_every."""
    late = deadline is not None and time.time() + seconds_needed > deadline
    if d.world == 1:
        return stop.name or (DEADLINE if late else None)
    if deadline is None and not agree:
        return None
    flags = torch.tensor([float(stop.signum or 0), float(late)], device=d.device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    signum, late = flags.tolist()
    if signum:
        return signal_name(int(signum))
    return DEADLINE if late else None


def evaluate_during_training(cfg: RunConfig, state: TrainState, built: BuiltSet, d: Dist, sink: MetricsSink) -> None:
    """Voted inference with halting on the test split, scored where solutions are known. Runs a
    fresh eager copy holding the EMA weights (a deep copy would keep a compiled `step` bound to
    the training model, and so its raw weights)."""
    eval_model = TRM(cfg.model).to(d.device)
    eval_model.load_state_dict({**state.model.state_dict(), **(state.ema or {})})
    run = ViewRun(canvas=built.canvas, bucketing=cfg.data.bucketing)
    result = evaluate_built(eval_model, built, views_per_input=cfg.train.eval_views, d=d, run=run)
    if d.main and result is not None:
        print(f"step {state.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()))
        sink.log({"step": state.step, **{f"eval_{k}": v for k, v in result.items()}})
