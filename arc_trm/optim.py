"""Optimisers of the reference ARC run (REFERENCE §6).

- `AdamATan2` for all parameters: Adam whose update is atan2(m, sqrt(v)) instead of m / (sqrt(v) + eps).
- `SparseSignSGD` for the puzzle-embedding table (a buffer): only the rows a batch touched move.

Both expose `param_groups` with an "lr" entry so a warmup schedule can set lr the same way on each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


class AdamATan2(torch.optim.Optimizer):
    """p *= 1 - lr*wd;  m, v as Adam;  p -= lr / (1 - b1^t) * atan2(m, sqrt(v / (1 - b2^t))).

    No epsilon: atan2 is bounded and defined at (0, 0). State (step, m, v) lives in
    `state_dict()`, so a resumed run continues bit-exactly.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.1,
    ):
        if lr < 0:
            raise ValueError(f"invalid lr {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        assert closure is None, "AdamATan2 does not support closures"
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = int(state["step"].item())
                m, v, g = state["exp_avg"], state["exp_avg_sq"], p.grad

                p.mul_(1.0 - lr * wd)
                m.lerp_(g, 1.0 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                bias1 = 1.0 - beta1**t
                bias2 = 1.0 - beta2**t
                p.add_(torch.atan2(m, (v / bias2).sqrt()), alpha=-lr / bias1)


def sparse_sign_sgd_update(table: Tensor, ids: Tensor, grad: Tensor, lr: float, weight_decay: float) -> None:
    """In place, on the touched rows only: row <- row * (1 - lr*wd) - lr * sign(summed grad).

    ids: (N,) row indices, possibly repeated; grad: (N, D). Duplicate ids are summed first.
    """
    assert ids.dim() == 1 and grad.dim() == 2 and grad.shape[0] == ids.shape[0], (
        f"expected ids (N,) and grad (N, D), got {tuple(ids.shape)} and {tuple(grad.shape)}"
    )
    # Fixed-size ops only (sort, cumsum, index_add): `unique` would make the GPU wait for the host.
    order = ids.long().argsort(stable=True)
    sorted_ids = ids.long()[order]  # (N,)
    first = torch.ones_like(sorted_ids, dtype=torch.bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    group = first.cumsum(0) - 1  # (N,) index of each id's run of duplicates
    summed = torch.zeros_like(grad).index_add_(0, group, grad[order])  # (N, D), one row per run
    rows = table[sorted_ids]
    rows.mul_(1.0 - lr * weight_decay).add_(torch.sign(summed[group]).to(rows.dtype), alpha=-lr)
    table[sorted_ids] = rows  # duplicates write identical rows


@dataclass
class RowGrads:
    ids: Tensor  # (N,)
    grad: Tensor  # (N, D)


def all_gather_rows(ids: Tensor, grad: Tensor) -> RowGrads:
    """Concatenate ids and grads of all ranks in rank order. Every rank must pass the same N
    (fixed-size collectives); gloo and nccl both support list all_gather."""
    world = dist.get_world_size()
    id_parts = [torch.empty_like(ids) for _ in range(world)]
    grad_parts = [torch.empty_like(grad) for _ in range(world)]
    dist.all_gather(id_parts, ids.contiguous())
    dist.all_gather(grad_parts, grad.contiguous())
    return RowGrads(ids=torch.cat(id_parts), grad=torch.cat(grad_parts))


class SparseSignSGD:
    """Sign-SGD with decoupled weight decay on the rows of an embedding table (a buffer).

    Usage per training step: `opt.step(ids, rows.grad)` where rows is StepOutput.puzzle_rows and
    ids the batch's puzzle identifiers. Under torch.distributed with world size > 1, ids and grads
    are gathered from every rank first, so all ranks apply the same update to their table copy.
    """

    def __init__(self, table: Tensor, lr: float = 1e-2, weight_decay: float = 0.1):
        self.table = table
        self.param_groups: list[dict[str, Any]] = [dict(lr=lr, weight_decay=weight_decay)]

    @torch.no_grad()
    def step(self, ids: Tensor, grad: Tensor) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = all_gather_rows(ids, grad)
            ids, grad = gathered.ids, gathered.grad
        group = self.param_groups[0]
        sparse_sign_sgd_update(self.table, ids, grad, group["lr"], group["weight_decay"])
