"""AdamATan2 against a float64 hand computation; sparse sign-SGD, single and multi-process."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from arc_trm.optim import AdamATan2, SparseSignSGD, sparse_sign_sgd_update


def _adam_atan2_reference(p0: torch.Tensor, grads: list[torch.Tensor], lrs: list[float], wd: float) -> torch.Tensor:
    """Element-wise float64 transcription of REFERENCE §6."""
    b1, b2 = 0.9, 0.95
    p = p0.double().flatten().tolist()
    m = [0.0] * len(p)
    v = [0.0] * len(p)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        g = g.double().flatten().tolist()
        for i in range(len(p)):
            p[i] *= 1 - lr * wd
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            p[i] -= lr / (1 - b1**t) * math.atan2(m[i], math.sqrt(v[i] / (1 - b2**t)))
    return torch.tensor(p, dtype=torch.float64).view(p0.shape)


def test_adam_atan2_matches_hand_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(4, 5, generator=gen)
    grads = [torch.randn(4, 5, generator=gen) * 10 ** (-k) for k in range(5)]
    grads[2][0, 0] = 0.0  # atan2 without epsilon must handle zeros
    lrs = [0.1, 0.05, 0.2, 0.01, 0.3]  # lr changes per step (warmup)
    wd = 0.1

    param = torch.nn.Parameter(p0.clone())
    opt = AdamATan2([param], lr=lrs[0], weight_decay=wd)
    for g, lr in zip(grads, lrs):
        opt.param_groups[0]["lr"] = lr
        param.grad = g.clone()
        opt.step()
    expected = _adam_atan2_reference(p0, grads, lrs, wd)
    assert torch.allclose(param.double(), expected, rtol=1e-5, atol=1e-6), (param.double() - expected).abs().max()
    assert not torch.allclose(param, p0), "parameters must have moved"


def test_adam_atan2_state_dict_resume_is_exact() -> None:
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(3, 3, generator=gen) for _ in range(6)]

    def run(resume_at: int | None) -> torch.Tensor:
        param = torch.nn.Parameter(torch.ones(3, 3))
        opt = AdamATan2([param], lr=1e-2)
        for i, g in enumerate(grads):
            if i == resume_at:
                saved_p, saved_opt = param.detach().clone(), opt.state_dict()
                param = torch.nn.Parameter(saved_p)
                opt = AdamATan2([param], lr=123.0)  # overwritten by load_state_dict
                opt.load_state_dict(saved_opt)
            param.grad = g.clone()
            opt.step()
        return param.detach()

    assert torch.equal(run(None), run(3))


def test_adam_atan2_skips_params_without_grad() -> None:
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = AdamATan2([a, b], lr=0.1, weight_decay=0.5)
    a.grad = torch.ones(2)
    opt.step()
    assert torch.equal(b, torch.ones(2)), "no grad: no decay, no update"
    assert (a < 1).all()


def test_sign_sgd_duplicates_summed_and_untouched_rows_unchanged() -> None:
    table = torch.arange(12, dtype=torch.float32).view(6, 2) + 1.0
    before = table.clone()
    ids = torch.tensor([1, 3, 1])
    # Row 1 appears twice: +2 and -3 sum to -1 (sign -1); a per-occurrence update would differ.
    grad = torch.tensor([[2.0, 0.5], [-1.0, 0.0], [-3.0, 0.25]])
    lr, wd = 0.1, 0.5
    sparse_sign_sgd_update(table, ids, grad, lr, wd)

    decay = 1 - lr * wd
    assert torch.allclose(table[1], before[1] * decay - lr * torch.tensor([-1.0, 1.0]))
    assert torch.allclose(table[3], before[3] * decay - lr * torch.tensor([-1.0, 0.0])), "sign(0) = 0, decay only"
    for row in (0, 2, 4, 5):
        assert torch.equal(table[row], before[row]), f"untouched row {row} must not decay"


def test_sign_sgd_optimizer_uses_param_group_lr() -> None:
    table = torch.zeros(3, 2)
    opt = SparseSignSGD(table, lr=1.0, weight_decay=0.0)
    opt.param_groups[0]["lr"] = 0.25
    opt.step(torch.tensor([2]), torch.tensor([[1.0, -1.0]]))
    assert torch.equal(table, torch.tensor([[0.0, 0.0], [0.0, 0.0], [-0.25, 0.25]]))


# -- multi-process ------------------------------------------------------------------------------

WORLD = 2
LR, WD = 0.1, 0.3


def _dist_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    table = torch.randn(10, 4, generator=gen)
    # Same local batch size on each rank; id 5 is shared across ranks with opposite-ish grads.
    ids = torch.tensor([[5, 1, 2], [5, 7, 2]])
    grads = torch.randn(WORLD, 3, 4, generator=gen)
    return table, ids, grads


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        table, ids, grads = _dist_case()
        opt = SparseSignSGD(table, lr=LR, weight_decay=WD)
        opt.step(ids[rank], grads[rank])
        torch.save(table, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_sign_sgd_multiprocess_matches_single_process(tmp_path: Path) -> None:
    init_file = str(tmp_path / "rendezvous")  # must not exist yet for file:// rendezvous
    mp.spawn(_worker, args=(init_file, str(tmp_path)), nprocs=WORLD, join=True)

    table, ids, grads = _dist_case()
    expected = table.clone()
    sparse_sign_sgd_update(expected, ids.flatten(), grads.flatten(0, 1), LR, WD)
    local_only = table.clone()
    sparse_sign_sgd_update(local_only, ids[0], grads[0], LR, WD)
    assert not torch.equal(expected, local_only), "test case must distinguish gathered from local updates"

    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for r, res in enumerate(results):
        assert torch.equal(res, expected), f"rank {r} table differs from the 1-process update"


@pytest.mark.parametrize("bad", [(0.9, 1.0), (-0.1, 0.9)])
def test_adam_atan2_rejects_bad_betas(bad: tuple[float, float]) -> None:
    with pytest.raises(ValueError):
        AdamATan2([torch.nn.Parameter(torch.zeros(1))], betas=bad)
