"""One training step: micro-batches with their own carries, the gradient summed over ranks in one
bucket, both optimisers stepped (what the loop and benchmarks/train_step.py run).

Gradient accumulation (train.grad_accum_steps = k) splits each rank's batch into k micro-batches
of consecutive rows. Micro-batch m of one process sees exactly the rows and carries that rank m of
k processes would, and the gradients add up the same way, so both give the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from arc_trm.common import Dist
from arc_trm.config import TrainConfig
from arc_trm.loss import compute_loss
from arc_trm.model import TRM, Batch, Carry
from arc_trm.optim import AdamATan2, SparseSignSGD


def all_reduce_grads(model: torch.nn.Module, d: Dist) -> None:
    """Sum the weights' gradients over ranks in one flat bucket (one collective, not one per
    parameter). The puzzle table is a buffer: its rows are gathered by SparseSignSGD instead."""
    if d.world == 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    parts = flat.split([g.numel() for g in grads])
    torch._foreach_copy_(grads, [f.view_as(g) for f, g in zip(parts, grads)])


CARRY_FIELDS = ("y", "z", "steps", "halted", "inputs", "labels", "puzzle_identifiers")


def carry_tensors(c: Carry) -> tuple[torch.Tensor, ...]:
    """A carry's tensors in CARRY_FIELDS order."""
    return (c.y, c.z, c.steps, c.halted, c.current.inputs, c.current.labels, c.current.puzzle_identifiers)


def carry_from_tensors(t: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> Carry:
    return Carry(t[0], t[1], t[2], t[3], Batch(t[4], t[5], t[6]))


def split_batch(batch: Batch, parts: int) -> list[Batch]:
    """`parts` equal micro-batches of consecutive rows (gradient accumulation)."""
    if parts == 1:
        return [batch]
    return [Batch(*ts) for ts in zip(*(t.chunk(parts) for t in (batch.inputs, batch.labels, batch.puzzle_identifiers)))]


def join_carries(parts: list[Carry]) -> Carry:
    """The micro-batches' carries as one carry over the rank's whole batch, rows in order."""
    if len(parts) == 1:
        return parts[0]
    return carry_from_tensors([torch.cat(ts) for ts in zip(*map(carry_tensors, parts))])


def split_carry(carry: Carry, parts: int) -> list[Carry]:
    """Inverse of join_carries: one carry per micro-batch."""
    if parts == 1:
        return [carry]
    return [carry_from_tensors(ts) for ts in zip(*(t.chunk(parts) for t in carry_tensors(carry)))]


def carry_state(carries: dict[int, list[Carry]]) -> dict[str, torch.Tensor]:
    """Each length bucket's carry as flat `side.field` tensors (what carry_rank{r}.pt holds). The
    micro-batches' carries are joined, so the file does not depend on train.grad_accum_steps."""
    return {f"{side}.{name}": t.detach().cpu()
            for side, parts in carries.items() for name, t in zip(CARRY_FIELDS, carry_tensors(join_carries(parts)))}


def carries_from_state(state: dict[str, torch.Tensor], canvas: int, device: torch.device) -> dict[int, Carry]:
    """Inverse of carry_state, one joined carry per side (split_carry makes the micro-batches');
    files written before bucketing hold one carry with bare field names."""
    if "y" in state:
        state = {f"{canvas}.{k}": v for k, v in state.items()}
    sides = sorted({int(k.partition(".")[0]) for k in state})
    return {side: carry_from_tensors([state[f"{side}.{name}"].to(device) for name in CARRY_FIELDS])
            for side in sides}


@dataclass
class Optimizers:
    weights: AdamATan2  # every parameter
    table: SparseSignSGD  # the rows of the puzzle table a batch touched

    @classmethod
    def for_model(cls, model: TRM, tcfg: TrainConfig) -> "Optimizers":
        opts = cls(AdamATan2(model.parameters(), lr=0.0), SparseSignSGD(model.puzzle_table, lr=0.0))
        opts.configure(tcfg)
        return opts

    def configure(self, tcfg: TrainConfig) -> None:
        """The hyperparameters besides lr (set each step) from the config: at the start and again
        after a resume, whose loaded param groups hold the values the run was saved with."""
        for g in self.weights.param_groups:
            g.update(betas=(tcfg.beta1, tcfg.beta2), weight_decay=tcfg.weight_decay)
        self.table.param_groups[0]["weight_decay"] = tcfg.puzzle_emb_weight_decay


@dataclass
class StepSetup:
    """What every step of a run shares: the optimisers, the process group and the global batch
    (the loss is divided by it, so the gradient summed over ranks and micro-batches is the mean)."""

    opts: Optimizers
    d: Dist
    global_batch: int
    token_loss: str = "stablemax"  # train.token_loss


@dataclass
class StepResult:
    carry: Carry | list[Carry]  # of the same kind as train_step's `carry`
    stats: torch.Tensor  # (6,) float64 on the device: the sums LogWindow.stats adds up


def train_step(model: TRM, carry: Carry | list[Carry], batch: Batch, min_halt_steps: torch.Tensor,
               setup: StepSetup, update_weights: bool = True) -> StepResult:
    """One step of the loop: a supervision step on every row, loss / global batch backpropagated,
    gradients summed over ranks, both optimisers stepped. No host synchronisation.

    Gradient accumulation: with a list of k carries, the batch (and min_halt_steps) is split into
    k micro-batches of consecutive rows, each run with its own carry and backpropagated as
    loss / global batch, so the summed gradient is the whole batch's; the puzzle rows of all
    micro-batches go to one sparse step, in row order as the ranks' would."""
    opts = setup.opts
    parts = carry if isinstance(carry, list) else [carry]
    new_carries, ids, row_grads, stats = [], [], [], []
    for part, micro, floor in zip(parts, split_batch(batch, len(parts)), min_halt_steps.chunk(len(parts))):
        out = model(part, micro, min_halt_steps=floor)
        result = compute_loss(out, setup.token_loss)
        (result.loss / setup.global_batch).backward()
        new_carries.append(out.carry)
        ids.append(out.carry.current.puzzle_identifiers)
        row_grads.append(out.puzzle_rows.grad)
        m = result.metrics
        stats.append(torch.stack([result.loss.detach().double(), m.count.double(), m.exact_accuracy.double(),
                                  m.steps.double(), m.accuracy.double(), m.q_halt_accuracy.double()]))
    all_reduce_grads(model, setup.d)
    if update_weights:
        opts.weights.step()
    one = len(parts) == 1
    opts.table.step(ids[0] if one else torch.cat(ids), row_grads[0] if one else torch.cat(row_grads))
    opts.weights.zero_grad(set_to_none=True)
    return StepResult(new_carries if isinstance(carry, list) else new_carries[0],
                      stats[0] if one else torch.stack(stats).sum(0))
