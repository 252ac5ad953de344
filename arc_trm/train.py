"""Train TRM on a built ARC task set: CPU, one GPU, or many GPUs through torchrun.

  arc-trm train --tasks arc-agi-2 --out runs/agi2                 paper preset on a GPU
  arc-trm train --preset cpu-quick --tasks arc-agi-1:training --out runs/quick
  torchrun --nproc_per_node 4 -m arc_trm.cli train --tasks arc-agi-2 --out runs/agi2
  arc-trm train --out runs/agi2 --resume                          continue where it stopped

The augmented set is built on first use and cached (data/built/...). Overrides: `--set key=value`
(e.g. `--set model.hidden_size=256 --set lr=2e-4`). The resolved config is saved as JSON in the
run folder and beside every checkpoint. Metrics go to RUN/metrics.jsonl; `arc-trm plot RUN`
draws them.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from arc_trm import checkpoint as ckpt
from arc_trm.config import RunConfig, apply_overrides, check_device_available, preset
from arc_trm.data import GroupSampler, to_model_batch
from arc_trm.model import TRM, Batch, Carry, compute_loss, count_parameters, draw_min_halt_steps
from arc_trm.optim import AdamATan2, SparseSignSGD
from augment.build import ensure_built
from augment.store import BuiltSet
from augment.tasks import InputError


# ----------------------------------------------------------------------------------------------
# Processes and devices


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    on_gpu = device in ("auto", "cuda") and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_gpu else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


def default_build_dir(cfg: RunConfig) -> Path:
    """data/built/<readable prefix>-<hash of the full source spec and the build parameters>."""
    if cfg.data.build_dir:
        return Path(cfg.data.build_dir)
    d = cfg.data
    key = json.dumps({"tasks": d.tasks, "augmentations": d.augmentations, "canvas": d.canvas,
                      "build_seed": d.build_seed}, sort_keys=True)
    digest = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in d.tasks)[:40].strip("_")
    return Path("data/built") / f"{slug}-a{d.augmentations}-c{d.canvas}-{digest}"


def check_own_build(out: Path, cfg: RunConfig) -> None:
    """A --build folder that holds a build of other parameters or sources is refused, never
    rebuilt over (the user's own build)."""
    meta_path = out / "metadata.json"
    if not meta_path.is_file():
        return
    meta = ckpt.read_json(meta_path, "build metadata")
    params = meta.get("params", {}) if isinstance(meta, dict) else {}
    want = {"augmentations": cfg.data.augmentations, "seed": cfg.data.build_seed, "canvas": cfg.data.canvas}
    have = {k: params.get(k) for k in want} if isinstance(params, dict) else {}
    specs = [s.strip() for s in cfg.data.tasks.split(",") if s.strip()]
    sources = meta.get("sources") if isinstance(meta, dict) else None
    if have != want or sources != specs:
        raise InputError(f"--build {out}: holds a build of {sources} with {have}, not {specs} with {want}; "
                         f"pass the same --tasks/--set data.* or another --build (it is never rebuilt over)")


def load_or_build(cfg: RunConfig, d: Dist, progress: bool) -> BuiltSet:
    """Rank 0 builds (or reuses) the cached augmented set; the others wait and open it."""
    out = default_build_dir(cfg)
    if d.main:
        if cfg.data.build_dir:
            check_own_build(out, cfg)
        ensure_built(cfg.data.tasks, out, augmentations=cfg.data.augmentations, seed=cfg.data.build_seed,
                     canvas=cfg.data.canvas, progress=progress)
    if d.world > 1:
        dist.barrier()
    return BuiltSet.open(out)


# ----------------------------------------------------------------------------------------------
# Small pieces of the loop


def lr_at(step: int, base: float, warmup: int) -> float:
    """Linear warmup from 0 over `warmup` steps, then constant (step counts from 1)."""
    return base * min(1.0, step / max(1, warmup))


def total_steps(cfg: RunConfig, built: BuiltSet) -> int:
    if cfg.train.max_steps > 0:
        return cfg.train.max_steps
    # An epoch visits every task group once with one augmented version's examples.
    per_epoch = sum(built.num_train_examples(g.start) for g in built.groups)
    return max(1, math.ceil(cfg.train.epochs * per_epoch / cfg.train.global_batch_size))


def all_reduce_grads(model: torch.nn.Module, d: Dist) -> None:
    if d.world == 1:
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)


def ema_rate_at(step: int, rate: float) -> float:
    """EMA rate warmed up over the first steps, so short runs are not dominated by the initial
    weights (0.99 over 150 steps would still hold 22% of them). Departs from the reference's
    constant rate only for the first ~10 / (1 - rate) steps."""
    return min(rate, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: dict[str, torch.Tensor], model: torch.nn.Module, rate: float) -> None:
    for name, p in model.named_parameters():
        ema[name].mul_(rate).add_(p.detach(), alpha=1 - rate)


def carry_state(carry: Carry) -> dict[str, torch.Tensor]:
    c = carry.current
    return {"y": carry.y, "z": carry.z, "steps": carry.steps, "halted": carry.halted,
            "inputs": c.inputs, "labels": c.labels, "puzzle_identifiers": c.puzzle_identifiers}


def carry_from_state(s: dict[str, torch.Tensor], device: torch.device) -> Carry:
    s = {k: v.to(device) for k, v in s.items()}
    return Carry(s["y"], s["z"], s["steps"], s["halted"], Batch(s["inputs"], s["labels"], s["puzzle_identifiers"]))


def build_model(cfg: RunConfig, num_puzzle_ids: int, device: torch.device) -> TRM:
    """TRM initialised from cfg.train.seed (identical on every rank); the caller's global RNG
    state is left as it was."""
    cfg.model.num_puzzle_ids = num_puzzle_ids
    cfg.model.seq_len = cfg.data.canvas ** 2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        model = TRM(cfg.model)
    return model.to(device)


def check_compatible(saved: dict, cfg: RunConfig, path: Path) -> None:
    """A checkpoint from another model config cannot continue this run."""
    mismatched = {k: (saved["model"].get(k), v) for k, v in cfg.model.to_dict().items()
                  if saved["model"].get(k) != v}
    if mismatched:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs run {b!r}" for k, (a, b) in sorted(mismatched.items()))
        raise InputError(f"{path}: checkpoint is from another model config ({detail})")


# ----------------------------------------------------------------------------------------------
# The loop


@dataclass
class LogWindow:
    """Sums over the steps since the last log line, over all ranks."""

    loss: float = 0.0  # summed over samples
    halted: float = 0.0  # rows that halted (the metrics are over those, as the reference)
    exact: float = 0.0
    halt_steps: float = 0.0
    samples: int = 0
    steps: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def add(self, stats: list[float], batch_size: int) -> None:
        loss, halted, exact, halt_steps = stats
        self.loss += loss
        self.halted += halted
        self.exact += exact
        self.halt_steps += halt_steps
        self.samples += batch_size
        self.steps += 1

    def summary(self) -> dict[str, float]:
        halted = max(self.halted, 1.0)
        return {"loss": self.loss / max(self.samples, 1), "exact_accuracy": self.exact / halted,
                "halt_steps": self.halt_steps / halted,
                "samples_per_s": self.samples / max(time.perf_counter() - self.t0, 1e-9)}


@dataclass
class TrainResult:
    run: Path
    steps: int
    final_checkpoint: Path | None
    metrics: dict[str, float]


def train(cfg: RunConfig, out: Path, *, resume: bool = False, stop_at: int = 0, progress: bool = True,
          built: BuiltSet | None = None, init_weights: dict[str, torch.Tensor] | None = None,
          deadline: float | None = None) -> TrainResult:
    """Train for cfg.train.max_steps (or epochs).

    stop_at: end after this step with a checkpoint (as if pre-empted); `resume` continues.
    init_weights: a state dict to start from (test-time training from a pretrained model).
    deadline: a time.time() by which training must have stopped and checkpointed; every rank
        stops at the same step once the next step would overrun it.
    """
    out = Path(out)
    d = setup_distributed(cfg.train.device)
    device = pick_device(cfg.train.device, d.local_rank)
    built = built if built is not None else load_or_build(cfg, d, progress and d.main)
    tcfg = cfg.train
    if tcfg.global_batch_size % d.world:
        raise InputError(f"global_batch_size {tcfg.global_batch_size} is not divisible by {d.world} processes")
    local_bs = tcfg.global_batch_size // d.world
    rows_slice = slice(d.rank * local_bs, (d.rank + 1) * local_bs)

    model = build_model(cfg, built.num_identifiers, device)
    if init_weights is not None:
        model.load_state_dict(init_weights)
    if tcfg.compile:
        model.step = torch.compile(model.step)  # the tensor work; forward's reset stays eager
    ema = {n: p.detach().clone() for n, p in model.named_parameters()} if tcfg.ema_rate > 0 else None
    opt = AdamATan2(model.parameters(), lr=0.0, betas=(tcfg.beta1, tcfg.beta2), weight_decay=tcfg.weight_decay)
    emb_opt = SparseSignSGD(model.puzzle_table, lr=0.0, weight_decay=tcfg.puzzle_emb_weight_decay)
    sampler = GroupSampler.for_built(built, tcfg.seed)
    explore = torch.Generator().manual_seed(tcfg.seed + 1)
    carry: Carry | None = None
    step = 0
    id_map = identifier_map(built) if d.main else {}

    if resume:
        found = ckpt.latest_checkpoint(out)
        if found is None:
            raise InputError(f"{out}: --resume given but the run has no checkpoint")
        state = ckpt.load_state(found, map_location=device)
        check_compatible(json.loads(state["config"]), cfg, found)
        if state["identifiers"] != built.identifiers:
            raise InputError(f"{found}: checkpoint was trained on another build (identifier map differs)")
        model.load_state_dict(state["model"])
        if ema is not None and state["ema"] is not None:
            ema = {k: v.to(device) for k, v in state["ema"].items()}
        opt.load_state_dict(state["optim"])
        sampler.load_state_dict(state["sampler"])
        explore.set_state(state["explore_rng"])
        step = int(state["step"])
        carry_file = found / f"carry_rank{d.rank}.pt"
        if tcfg.save_carry and carry_file.exists():
            carry = carry_from_state(ckpt.load_state(found, carry_file.name, device), device)

    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.write_text_atomic(out / "config.json", json.dumps(cfg.to_dict(), indent=2))
    steps_total = total_steps(cfg, built)
    end = min(steps_total, stop_at) if stop_at > 0 else steps_total
    metrics_file = open(out / "metrics.jsonl", "a") if d.main else None
    bar = tqdm(total=end, initial=step, desc="train", unit="step", disable=not (progress and d.main),
               dynamic_ncols=True)
    if d.main and step == 0:
        print(f"training {count_parameters(model):,} parameters, {built.num_identifiers:,} puzzle ids, "
              f"{steps_total:,} steps of global batch {tcfg.global_batch_size} on {device} x{d.world}")
    last: dict[str, float] = {}
    window = LogWindow()
    final_dir = None
    step_seconds = 0.0  # running mean, for the deadline

    while step < end:
        if deadline is not None and out_of_time(deadline, step_seconds, d, device):
            if d.main:
                print(f"stopping at step {step}: the deadline leaves no time for another step")
            final_dir = save_checkpoint(out, step, cfg, model, ema, opt, sampler, explore, carry, id_map, d)
            break
        t_step = time.perf_counter()
        step += 1
        # 1. learning rates (warmup); the model's weights wait while only the table trains (TTT)
        freeze = step <= tcfg.freeze_model_steps
        for g in opt.param_groups:
            g["lr"] = 0.0 if freeze else lr_at(step, tcfg.lr, tcfg.lr_warmup_steps)
        emb_opt.param_groups[0]["lr"] = lr_at(step, tcfg.puzzle_emb_lr, tcfg.lr_warmup_steps)

        # 2. one supervision step on one batch (every rank samples the global batch, keeps its slice)
        rows, examples = sampler.next_batch(tcfg.global_batch_size)
        rows, examples = rows[rows_slice], examples[rows_slice]
        inputs, labels = built.train_batch(rows, examples)
        batch = to_model_batch(inputs, labels, rows, device)
        if carry is None:
            carry = model.initial_carry(batch)
        min_steps = draw_min_halt_steps(tcfg.global_batch_size, cfg.model, explore)[rows_slice]
        model.train()
        out_step = model(carry, batch, min_halt_steps=min_steps)
        result = compute_loss(out_step)
        (result.loss / tcfg.global_batch_size).backward()
        all_reduce_grads(model, d)
        if not freeze:
            opt.step()
        emb_opt.step(out_step.carry.current.puzzle_identifiers, out_step.puzzle_rows.grad)
        opt.zero_grad(set_to_none=True)
        carry = out_step.carry

        # 3. EMA of the weights
        if ema is not None:
            ema_update(ema, model, ema_rate_at(step, tcfg.ema_rate))

        # 4. log
        m = result.metrics
        stats = torch.stack([result.loss.detach().double(), m.count.double(), m.exact_accuracy.double(),
                             m.steps.double()])
        if d.world > 1:
            dist.all_reduce(stats)
        window.add(stats.tolist(), tcfg.global_batch_size)
        if step % tcfg.log_every == 0 or step == end:
            last = {"step": step, **window.summary(), "lr": opt.param_groups[0]["lr"], "epoch": sampler.epoch}
            if metrics_file is not None:
                metrics_file.write(json.dumps(last) + "\n")
                metrics_file.flush()
            bar.set_postfix(loss=f"{last['loss']:.3f}", exact=f"{last['exact_accuracy']:.2f}",
                            steps=f"{last['halt_steps']:.1f}", sps=f"{last['samples_per_s']:.0f}")
            window = LogWindow()
        bar.update(1)
        step_seconds = 0.9 * step_seconds + 0.1 * (time.perf_counter() - t_step) if step_seconds else \
            time.perf_counter() - t_step

        # 5. evaluate on the test split
        if tcfg.eval_every > 0 and (step % tcfg.eval_every == 0 or step == end):
            evaluate_during_training(cfg, model, ema, built, device, d, step, metrics_file)

        # 6. checkpoint
        if step % tcfg.checkpoint_every == 0 or step == end:
            final_dir = save_checkpoint(out, step, cfg, model, ema, opt, sampler, explore, carry, id_map, d)
    bar.close()
    if metrics_file is not None:
        metrics_file.close()
    return TrainResult(out, step, final_dir, last)


def identifier_map(built: BuiltSet) -> dict[str, list[str]]:
    """Row -> stable identifier and augmentation record, saved beside every checkpoint."""
    return {"identifiers": list(built.identifiers), "augmentations": built.augmentation_records()}


def out_of_time(deadline: float, step_seconds: float, d: Dist, device: torch.device) -> bool:
    """True on every rank when any rank would overrun the deadline with one more step (+ a margin
    for the checkpoint)."""
    late = torch.tensor([float(time.time() + 2 * step_seconds > deadline)], device=device)
    if d.world > 1:
        dist.all_reduce(late, op=dist.ReduceOp.MAX)
    return bool(late.item())


def save_checkpoint(out: Path, step: int, cfg: RunConfig, model: TRM, ema: dict | None, opt: AdamATan2,
                    sampler: GroupSampler, explore: torch.Generator, carry: Carry | None, id_map: dict,
                    d: Dist) -> Path:
    tcfg = cfg.train
    if d.main:
        tmp = ckpt.begin_checkpoint(out, step)
    if d.world > 1:
        dist.barrier()
    tmp = out / "checkpoints" / f".tmp_step_{step:07d}"
    if tcfg.save_carry and carry is not None:
        ckpt.torch_save_atomic({k: v.detach().cpu() for k, v in carry_state(carry).items()},
                               tmp / f"carry_rank{d.rank}.pt")
    if d.main:
        config_json = json.dumps(cfg.to_dict(), indent=2)
        state = {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "ema": None if ema is None else {k: v.detach().cpu() for k, v in ema.items()},
            "optim": opt.state_dict(),
            "sampler": sampler.state_dict(),
            "explore_rng": explore.get_state(),  # the only random draws in the loop besides the sampler
            "step": step,
            "config": config_json,
            "identifiers": id_map["identifiers"],
        }
        ckpt.torch_save_atomic(state, tmp / "state.pt")
        (tmp / "config.json").write_text(config_json)
        (tmp / "identifiers.json").write_text(json.dumps(id_map))
    if d.world > 1:
        dist.barrier()
    final = ckpt.checkpoint_dir(out, step)
    if d.main:
        final = ckpt.commit_checkpoint(out, step, keep=tcfg.keep_checkpoints)
    if d.world > 1:
        dist.barrier()
    return final


def evaluate_during_training(cfg: RunConfig, model: TRM, ema: dict | None, built: BuiltSet,
                             device: torch.device, d: Dist, step: int, metrics_file) -> None:
    """Voted inference with halting on the test split, scored where solutions are known."""
    from arc_trm.infer import evaluate_built  # late import: inference is not needed to train

    eval_model = model
    if ema is not None:
        eval_model = copy.deepcopy(model)
        eval_model.load_state_dict({**model.state_dict(), **ema})
    result = evaluate_built(eval_model, built, views_per_input=cfg.train.eval_views, device=device,
                            rank=d.rank, world=d.world, progress=False)
    if d.main and result is not None:
        line = {"step": step, **{f"eval_{k}": v for k, v in result.items()}}
        print(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()))
        if metrics_file is not None:
            metrics_file.write(json.dumps(line) + "\n")
            metrics_file.flush()


# ----------------------------------------------------------------------------------------------
# Command line


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """Preset, then a resumed run's saved config, then --tasks/--augmentations, then --set; every
    field validated (one line naming the field) before any work starts."""
    name = args.preset or ("paper" if torch.cuda.is_available() else "cpu-quick")
    cfg = preset(name)
    saved = Path(args.out) / "config.json"
    if args.resume and saved.exists():
        data = ckpt.read_json(saved, "run config")
        try:
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object with model, train and data sections")
            cfg = RunConfig.from_dict(data)
        except (ValueError, TypeError, KeyError) as e:
            raise InputError(f"{saved}: run config is not one this arc-trm reads ({e})") from None
    if args.tasks:
        cfg.data.tasks = args.tasks
    if args.augmentations is not None:
        cfg.data.augmentations = args.augmentations
    if args.build:
        cfg.data.build_dir = args.build
    if args.stop_at < 0:
        raise InputError(f"--stop-at must be a step >= 0, got {args.stop_at}")
    try:
        cfg = apply_overrides(cfg, args.set or [])
        check_device_available(cfg.train.device)
    except ValueError as e:
        raise InputError(str(e)) from None
    return cfg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", help="task sources, comma-separated (default: the preset's, arc-agi-2)")
    p.add_argument("--out", required=True, help="run folder for config, metrics and checkpoints")
    p.add_argument("--preset", choices=["paper", "kaggle", "cpu-quick"],
                   help="hyperparameters (default: paper on a GPU, cpu-quick otherwise)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, e.g. --set lr=3e-4 --set model.H_cycles=2 (repeatable)")
    p.add_argument("--augmentations", type=int, help="augmented versions per task (default: preset)")
    p.add_argument("--build", help="use/create the augmented set in this folder")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--stop-at", type=int, default=0, metavar="STEP",
                   help="stop after this step with a checkpoint (as if pre-empted); --resume continues")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    result = train(cfg, Path(args.out), resume=args.resume, stop_at=args.stop_at, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        summary = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if k != "step")
        print(f"trained to step {result.steps}: {summary}")
        print(f"checkpoint: {result.final_checkpoint}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
