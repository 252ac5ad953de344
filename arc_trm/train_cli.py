"""Train TRM on a built ARC task set: CPU, one GPU, or many GPUs through torchrun.

  arc-trm train --tasks arc-agi-2 --out runs/agi2                 paper preset on a GPU
  arc-trm train --preset cpu-quick --tasks arc-agi-1:training --out runs/quick
  torchrun --nproc_per_node 4 -m arc_trm.cli train --tasks arc-agi-2 --out runs/agi2
  arc-trm train --out runs/agi2 --resume                          continue where it stopped
  arc-trm train --tasks arc-agi-2 --out runs/agi2 --force         new run; the old one moves to runs/agi2.old-<time>
  arc-trm train --tasks arc-agi-2 --out runs/agi2 --set train.grad_accum_steps=4   768 in micro-batches of 192

The augmented set is built on first use and cached (data/built/...). Overrides: `--set key=value`
(e.g. `--set model.hidden_size=256 --set lr=2e-4`). The resolved config (its task paths and build
folder absolute, so a resume from any directory reuses the build) is saved as JSON in the run
folder and beside every checkpoint. Metrics go to RUN/metrics.jsonl; `arc-trm plot RUN`
draws them. A run folder holds one run: without --resume a folder that holds one is refused.
Ctrl-C or SIGTERM finishes the current step, writes a checkpoint and prints the command that
continues (every torchrun rank stops at the same step); a second Ctrl-C stops at once. A signal
before the first step (the build) stops at once and says how to continue; one in the last step
lets it finish, and the exit status is 130 (SIGINT) or 143 (SIGTERM) either way.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
import torch.distributed as dist

from arc_trm import runs
from arc_trm.builds import DEFAULT_BUILDS, default_build_dir, is_default_build
from arc_trm.common import print0, setup, teardown
from arc_trm.config import TRAIN_LOG_LINES, RunConfig, config_from_json, preset
from arc_trm.overrides import apply_overrides, default_preset
from arc_trm.config_rules import check_device_available
from arc_trm.stopping import continue_command, current, exit_code, stopped_line
from arc_trm.metrics import step_text
from arc_trm.train import TrainOptions, train
from augment.console import add_progress_argument, eprint
from augment.errors import InputError
from augment.tasks import absolute_spec, source_specs, split_specs
from augment.files import finished_line, read_json
from submission.runfolder import checkpoints_by_step, step_of


def preset_name(args: argparse.Namespace) -> str:
    """--preset, else the default for the device asked for (--device cpu on a GPU machine: cpu-quick)."""
    return args.preset or default_preset("train", args.set or [], args.device)


def saved_config(out: Path) -> Path | None:
    """The config a resumed run continues with: RUN/config.json, else (a run copied without it,
    e.g. only checkpoints/ synced back) the copy beside its newest checkpoint; None for neither."""
    if (out / "config.json").is_file():
        return out / "config.json"
    beside = [p / "config.json" for p in checkpoints_by_step(out) if (p / "config.json").is_file()]
    return beside[-1] if beside else None


def config_origin(args: argparse.Namespace) -> str:
    """Where the run's config comes from, for the header."""
    overrides = " with --set overrides" if args.set else ""  # applied over a saved config too
    if args.resume and saved_config(Path(args.out)) is not None:
        return f"the run's saved config (resumed){overrides}"
    fresh = f" (--resume: {args.out} holds no run yet, so a new one starts)" if args.resume else ""
    return f"preset {preset_name(args)}{overrides}{fresh}"


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """Preset, then a resumed run's saved config, then --tasks/--augmentations, then --set; every
    field validated (one line naming the field) before any work starts."""
    cfg = preset(preset_name(args))
    saved, builds_in = saved_config(Path(args.out)), DEFAULT_BUILDS
    runs.check_force_resume(args.force, args.resume, Path(args.out))  # before any build
    runs.check_not_a_ttt_run(Path(args.out), args.force)
    if args.resume and saved is not None:
        cfg = config_from_json(read_json(saved, "run config"), saved)
        if cfg.data.build_dir and is_default_build(cfg):  # made on first use: --set data.* renames it, in place
            builds_in, cfg.data.build_dir = Path(cfg.data.build_dir).parent, ""
        if args.tasks and cfg.data.tasks and split_specs(absolute_spec(args.tasks)) != split_specs(
                absolute_spec(cfg.data.tasks)):  # "": imported
            raise InputError(f"the run was trained on {cfg.data.tasks}; you asked for {args.tasks} (leave out "
                             f"--tasks to continue it, or train a new run in another --out)")
    if args.tasks is not None:
        source_specs(args.tasks)  # an empty --tasks is refused, not read as "the preset's tasks"
        cfg.data.tasks = args.tasks
    if args.augmentations is not None:
        cfg.data.augmentations = args.augmentations
    if args.build:
        cfg.data.build_dir = args.build
    if args.stop_at < 0:
        raise InputError(f"--stop-at must be a step >= 0, got {args.stop_at}")
    flags = [f"train.{name}={value}" for name, value in (("seed", args.seed), ("device", args.device))
             if value is not None]
    try:
        cfg = apply_overrides(cfg, flags + (args.set or []))  # ranges checked once, as for --set
        check_device_available(cfg.train.device)
    except ValueError as e:
        raise InputError(str(e)) from None
    given = cfg.data.build_dir  # after --set, which may name the build folder too
    flag = ("--build" if args.build and given == args.build else "data.build_dir" if given else "default build")
    cfg = with_absolute_paths(cfg, builds_in)
    runs.check_apart(Path(args.out), Path(cfg.data.build_dir), flag)  # the default build too: --force moves --out aside
    return cfg


def with_absolute_paths(cfg: RunConfig, builds_in: Path = DEFAULT_BUILDS) -> RunConfig:
    """The config with its task paths and build folder absolute (with no --build, the default one
    in `builds_in`), so the run's record resumes and reuses its build from any working directory;
    bundled set names stay as they are."""
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, tasks=absolute_spec(cfg.data.tasks)))
    build_dir = str(default_build_dir(cfg, builds_in).resolve())  # named after the absolute sources
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, build_dir=build_dir))


CPU_SECONDS_PER_SAMPLE = 28.8  # the paper model's training step on a CPU, per sample (docs/KAGGLE.md)


def gpu_preset_warning(preset_name: str | None, cfg: RunConfig, device: torch.device) -> str | None:
    """A line for a GPU preset named on a CPU, where one step of its batch takes hours."""
    if preset_name not in ("paper", "kaggle") or device.type != "cpu":
        return None
    hours = cfg.train.global_batch_size * CPU_SECONDS_PER_SAMPLE / 3600
    return (f"warning: the {preset_name} preset is made for GPUs: at its batch of {cfg.train.global_batch_size} a "
            f"step takes about {hours:.0f} h on a CPU (about {CPU_SECONDS_PER_SAMPLE:.0f} s per sample was "
            f"measured); --preset cpu-quick is made for CPUs")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", metavar="SOURCE", help="task sources, comma-separated (default: the preset's, arc-agi-2)")
    p.add_argument("--out", required=True, help="run folder for config, metrics and checkpoints")
    p.add_argument("--preset", choices=["paper", "kaggle", "cpu-quick"],
                   help="hyperparameters (default: paper on a GPU, cpu-quick otherwise or with --device cpu)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, e.g. --set lr=3e-4 --set model.H_cycles=2 (repeatable)")
    p.add_argument("--augmentations", type=int, help="augmented versions per task (default: preset)")
    p.add_argument("--seed", type=int, help="seed of the initial weights and the sampler, train.seed (default: preset, 0)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps, train.device (default: preset, auto)")
    p.add_argument("--build", help="use/create the augmented set in this folder (default: "
                                   "data/built/<sources>-a<augmentations>-c<canvas>-<hash>, made on first use and reused)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run's latest checkpoint, with its saved config (--preset is not used; "
                        "--set still applies)")
    p.add_argument("--force", action="store_true",
                   help="--out holds another run: move it aside to OUT.old-<time> (never deleted) and start anew")
    p.add_argument("--stop-at", type=int, default=0, metavar="STEP",
                   help="stop after this step with a checkpoint (as if pre-empted); --resume continues (default 0: "
                        "train to the end)")
    add_progress_argument(p, TRAIN_LOG_LINES)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    d = setup(cfg.train.device)
    resumed = args.resume and saved_config(Path(args.out)) is not None  # its saved config, not the preset, runs
    warning = None if resumed else gpu_preset_warning(preset_name(args), cfg, d.device)
    if warning and d.main:
        eprint(warning)
    if args.force:
        runs.claim_run_folder(Path(args.out), force=True, main=d.main)
        if d.world > 1:
            dist.barrier()  # the old run is aside before any rank looks at the folder
    if d.main and not args.resume:  # a resumed run's folder must exist already (train() says so)
        runs.make_output_folder(Path(args.out))
    out = Path(args.out)
    stop = current()  # the CLI's (for the command's whole life), else one installed here
    # Every process: under torchrun the one a signal reached before the loop may be another than rank 0.
    stop.describe = lambda signame: interrupted_line(signame, out, stop.again)
    with stop.installed():  # a signal before the loop stops at once; in the loop, after the step
        result = train(cfg, out, TrainOptions(resume=args.resume, stop_at=args.stop_at, progress=not args.no_progress,
                                              stop=stop, preset=config_origin(args)))
    teardown()
    line = lambda signame: stopped_line(signame, result.steps, result.final_checkpoint,  # noqa: E731
                                        continue_command("train", out))
    if result.stopped_by is not None:
        if d.main:
            eprint(line(result.stopped_by))
        return exit_code(result.stopped_by)
    if result.metrics:
        m = result.metrics
        print0(d, f"trained to step {result.steps}: {step_text(m)}, lr {m['lr']:.3g}, epoch {m['epoch']:.0f}")
    print0(d, f"checkpoint: {result.final_checkpoint}")
    if result.steps < result.steps_total:  # --stop-at ended it, as a pre-emption would: say how to continue
        print0(d, f"stopped at step {result.steps} of {result.steps_total} (--stop-at); continue with: "
                  f"{continue_command('train', out)}")
    # A signal in the last step, which finished: the guard says so and exits 128 + it.
    stop.describe = (line if result.steps < result.steps_total else  # a finished run has nothing to continue
                     lambda signame: finished_line(signame, "training", f"checkpoint {result.final_checkpoint}"))
    return 0


def interrupted_line(signame: str, out: Path, again: str) -> str:
    """The line of a signal before the training loop (a build, a restore): a run with a saved config
    continues with --resume from its latest checkpoint (a new run's first step starts afresh);
    before that nothing is written, and the same command starts it."""
    if saved_config(out) is None:
        return f"{signame}: stopped before training began (no checkpoint); continue with: {again or 'the same command'}"
    done = [p for p in checkpoints_by_step(out) if (p / "state.pt").is_file()]
    return stopped_line(signame, step_of(done[-1]) or 0 if done else 0, done[-1] if done else None,
                        continue_command("train", out))
