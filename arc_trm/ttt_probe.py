"""ttt's speed probe: seconds per training step and per inference step on the run's own batch,
timed as the loop runs them (arc_trm.ttt_phases plans the phases from it)."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from arc_trm.common import Dist, synchronize
from arc_trm.config import RunConfig
from arc_trm.data import to_model_batch
from arc_trm.model import TRM, Batch
from arc_trm.optim import AdamATan2, SparseSignSGD
from arc_trm.step import Optimizers, StepSetup, split_batch, train_step
from arc_trm.train import batch_layout
from arc_trm.ttt_plan import Throughput
from augment.store import BuiltSet


def measure_throughput(model: TRM, built: BuiltSet, cfg: RunConfig, batch_size: int, d: Dist,
                       time_left: Callable[[float], bool] = lambda needed: True) -> Throughput:
    """Seconds per training step (local batch, run as training runs it: in train.grad_accum_steps
    micro-batches, so the probe fits in memory where training does) and per inference step (full
    batch of views). `time_left(seconds)` (agreed by every process) says whether another call of
    that many seconds fits before the deadline; once one does not, each probe stops: the caller
    finds the deadline (nearly) passed and trains nothing."""
    device = d.device

    def timed(fn, repeats: int = 3) -> float:
        """The fastest of a few timed calls after a warm-up: on a busy machine one call can stall
        many times over (a probe once read 6.2 s/step for a loop that ran at 0.75). The warm-up's
        time (a compile included) when the deadline leaves no room for more."""
        synchronize(device)
        t = time.perf_counter()
        fn()  # warm-up
        synchronize(device)
        best = time.perf_counter() - t
        for _ in range(repeats):
            if not time_left(best):  # a call as long as the fastest yet would end past the deadline
                break
            synchronize(device)
            t = time.perf_counter()
            fn()
            synchronize(device)
            best = min(best, time.perf_counter() - t)
        return best

    layout = batch_layout(cfg, d)
    local = layout.local
    rows = np.asarray([g.start for g in built.groups] * local, dtype=np.int64)[:local]
    inputs, labels = built.train_batch(rows, np.zeros(local, dtype=np.int64))
    batch = to_model_batch(inputs, labels, rows, device)

    # The loop's own step, optimisers included, so the plan counts what a step really costs (the
    # model is a throwaway copy: its weights may move).
    step_setup = StepSetup(Optimizers(AdamATan2(model.parameters()), SparseSignSGD(model.puzzle_table)), d,
                           cfg.train.global_batch_size, cfg.train.token_loss)
    no_floor = torch.zeros(local, dtype=torch.int32, device=device)

    def one_train_step() -> None:
        model.train()
        carries = [model.initial_carry(micro) for micro in split_batch(batch, layout.accum)]
        train_step(model, carries, batch, no_floor, step_setup)

    views = Batch(batch.inputs[:1].repeat(batch_size, 1), batch.labels[:1].repeat(batch_size, 1),
                  batch.puzzle_identifiers[:1].repeat(batch_size))

    @torch.no_grad()
    def infer_step() -> None:
        model.eval()
        model(model.initial_carry(views), views)

    seconds = torch.tensor([timed(one_train_step), timed(infer_step)], device=device)
    if d.world > 1:
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    return Throughput(float(seconds[0]), float(seconds[1]))
