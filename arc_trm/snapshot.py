"""What a training run saves at a checkpoint and how a resumed run picks it up again: weights,
EMA, optimiser moments, sampler position, the exploration RNG and each rank's carries, so that
a resumed run continues bit-identically."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from arc_trm import checkpoint as ckpt
from arc_trm.common import Dist, print0
from arc_trm.config import RunConfig
from arc_trm.data import Sampler
from arc_trm.model import TRM, Carry
from arc_trm.step import Optimizers, carries_from_state, carry_state, split_carry
from augment.identifier_map import IdentifierMap
from augment.store import BuiltSet
from augment.errors import InputError
from augment.files import write_text_atomic


@dataclass
class TrainState:
    """Everything the loop updates, and so everything a checkpoint holds besides the config and
    the identifier map."""

    model: TRM
    ema: dict[str, torch.Tensor] | None
    opts: Optimizers
    sampler: Sampler
    explore: torch.Generator  # the only random draws in the loop besides the sampler
    carries: dict[int, list[Carry]] = field(default_factory=dict)  # per length bucket, one per micro-batch
    step: int = 0
    sampler_state: dict = field(default_factory=dict)  # the sampler's state after the last batch consumed


@dataclass(frozen=True)
class BatchLayout:
    """How the global batch splits over ranks and micro-batches."""

    local: int  # rows on this rank
    accum: int  # micro-batches per rank (train.grad_accum_steps)
    rows: slice  # this rank's rows of the global batch


def check_compatible(saved: dict, cfg: RunConfig, path: Path) -> None:
    """A checkpoint from another model config cannot continue this run."""
    mismatched = {k: (saved["model"].get(k), v) for k, v in cfg.model.to_dict().items()
                  if saved["model"].get(k) != v}
    if mismatched:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs run {b!r}" for k, (a, b) in sorted(mismatched.items()))
        raise InputError(f"{path}: checkpoint is from another model config ({detail})")


@dataclass(frozen=True)
class LatestCheckpoint:
    """A run's latest checkpoint (None: it has none), looked up once and passed on: the lookup
    warns when `latest` is broken, and one command should say so once."""

    folder: Path | None

    @classmethod
    def of(cls, run: Path) -> "LatestCheckpoint":
        return cls(ckpt.latest_checkpoint(run))


def restore(out: Path, state: TrainState, cfg: RunConfig, built: BuiltSet, layout: BatchLayout, d: Dist,
            latest: LatestCheckpoint | None = None) -> Path | None:
    """Load the run's latest checkpoint (`latest` when the caller has looked it up) into `state`;
    returns its folder. A run folder with none starts at step 0."""
    found = (latest or LatestCheckpoint.of(out)).folder
    if found is None:
        if not out.is_dir():
            raise InputError(f"{out}: --resume given but there is no such run folder")
        print0(d, f"{out} has no checkpoint yet: starting from step 0")
        return None
    previous = ckpt.load_checkpoint(found, map_location=d.device)
    saved = previous.state
    check_compatible(json.loads(saved["config"]), cfg, found)
    difference = previous.id_map.first_difference(built.identifier_map())
    if difference is not None:
        raise InputError(f"{found}: the checkpoint's puzzle rows mean other tasks than this build's: {difference}")
    state.model.load_state_dict(saved["model"])
    if state.ema is not None:  # one turned on at --resume starts from the restored weights, not the initial
        state.ema = ({k: v.to(d.device) for k, v in saved["ema"].items()} if saved["ema"] is not None
                     else {n: p.detach().clone() for n, p in state.model.named_parameters()})
    state.opts.weights.load_state_dict(saved["optim"])
    state.opts.configure(cfg.train)  # a --set at --resume wins over the saved param groups
    if saved["sampler"] is not None:  # an imported run has none: its sampler starts afresh
        state.sampler.load_state_dict(saved["sampler"])
    state.explore.set_state(saved["explore_rng"])
    state.step = int(saved["step"])
    if cfg.train.save_carry:
        state.carries = restore_carries(found, built.canvas, layout, d)
    return found


def restore_carries(found: Path, canvas: int, layout: BatchLayout, d: Dist) -> dict[int, list[Carry]]:
    """This rank's carries, split into its micro-batches; none when they were saved at another
    local batch size (every row then restarts from the initial state)."""
    carry_file = found / f"carry_rank{d.rank}.pt"
    if not carry_file.exists():
        return {}
    joined = carries_from_state(ckpt.load_state(found, carry_file.name, d.device), canvas, d.device)
    if any(c.steps.shape[0] != layout.local for c in joined.values()):
        print0(d, f"the carry was saved at another local batch size (another number of processes); "
                  f"every row restarts from the initial state (local batch now {layout.local})")
        return {}
    return {side: split_carry(c, layout.accum) for side, c in joined.items()}


def checkpoint_state(state: TrainState, cfg: RunConfig, id_map: IdentifierMap) -> dict:
    """The state.pt dict (rank 0's)."""
    return {
        "model": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        "ema": None if state.ema is None else {k: v.detach().cpu() for k, v in state.ema.items()},
        "optim": state.opts.weights.state_dict(),
        "sampler": state.sampler_state,
        "explore_rng": state.explore.get_state(),
        "step": state.step,
        "config": json.dumps(cfg.to_dict(), indent=2),
        "identifiers": id_map.identifiers,
    }


def save_checkpoint(out: Path, state: TrainState, cfg: RunConfig, id_map: IdentifierMap, d: Dist) -> Path:
    """OUT/checkpoints/step_N with every rank's carry, committed atomically; returns its folder."""
    step = state.step
    if d.main:
        ckpt.begin_checkpoint(out, step)
    barrier(d)
    tmp = ckpt.temporary_checkpoint_dir(out, step)
    if cfg.train.save_carry and state.carries:
        ckpt.torch_save_atomic(carry_state(state.carries), tmp / f"carry_rank{d.rank}.pt")
    if d.main:
        saved = checkpoint_state(state, cfg, id_map)
        ckpt.torch_save_atomic(saved, tmp / "state.pt")
        (tmp / "config.json").write_text(saved["config"])
        (tmp / "identifiers.json").write_text(json.dumps(id_map.to_json()))
    barrier(d)
    final = ckpt.checkpoint_dir(out, step)
    if d.main:
        final = ckpt.commit_checkpoint(out, step, keep=cfg.train.keep_checkpoints)
        write_text_atomic(out / "config.json", json.dumps(cfg.to_dict(), indent=2))  # the config checkpoints run with
    barrier(d)
    return final


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def out_of_memory_line(layout: BatchLayout, device: str) -> str:
    """What to change when a step runs out of device memory: more micro-batches of fewer rows."""
    micro = layout.local // layout.accum
    more = next((k for k in range(layout.accum + 1, layout.local + 1) if layout.local % k == 0), layout.local)
    return (f"out of memory on {device} at a micro-batch of {micro} rows (train.grad_accum_steps {layout.accum}); "
            f"split the batch further, e.g. --set train.grad_accum_steps={more} (micro-batches of "
            f"{layout.local // more} rows), or lower train.global_batch_size")
