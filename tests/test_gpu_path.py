"""The GPU defaults, checked on CPU: compile with an eager fallback, no host reads inside a
training step, the prefetch thread, one weight cast per step, bf16 attention inputs."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from arc_trm.common import CompiledOrEager, Dist, wants_compile
from arc_trm.config import ModelConfig
from arc_trm.data import GroupSampler, Prefetcher
from arc_trm.loss import compute_loss
from arc_trm.model import TRM, Batch, draw_min_halt_steps
from arc_trm.optim import AdamATan2, SparseSignSGD
from arc_trm.step import Optimizers, StepSetup, train_step
from augment.store import BuiltSet

CFG = ModelConfig(hidden_size=32, num_heads=2, H_cycles=2, L_cycles=2, halt_max_steps=3, puzzle_emb_len=2,
                  seq_len=16, num_puzzle_ids=5, forward_dtype="float32")


def batch(cfg: ModelConfig, size: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, cfg.vocab_size, (size, cfg.seq_len), generator=g, dtype=torch.int32)
    return Batch(inputs, inputs.long(), torch.randint(1, cfg.num_puzzle_ids, (size,), generator=g, dtype=torch.int32))


def test_compile_auto_means_cuda_only():
    assert not wants_compile("auto", torch.device("cpu"))
    assert wants_compile("auto", torch.device("cuda"))
    assert wants_compile("on", torch.device("cpu")) and not wants_compile("off", torch.device("cuda"))


def failing_backend(gm, example_inputs):
    raise RuntimeError("no code generator here")


def test_failed_compilation_falls_back_to_eager_with_one_line(capsys):
    torch._dynamo.reset()
    model = TRM(CFG).eval()
    b = batch(CFG, 2, seed=0)
    expected = model(model.initial_carry(b), b).logits
    model.step = CompiledOrEager(model.step, backend=failing_backend)
    got = model(model.initial_carry(b), b).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    lines = [line for line in capsys.readouterr().out.splitlines() if "torch.compile failed" in line]
    assert len(lines) == 1 and "running eager" in lines[0]
    model(model.initial_carry(b), b)  # later calls go straight to eager, without another line
    assert "torch.compile failed" not in capsys.readouterr().out


def test_real_errors_are_not_swallowed_by_the_fallback():
    def broken(x):
        raise ValueError("a bug in the step itself")

    with pytest.raises(ValueError, match="a bug"):
        CompiledOrEager(broken, backend=failing_backend)(torch.ones(1))


def test_compiled_step_with_the_eager_backend_matches():
    torch._dynamo.reset()
    model = TRM(CFG).eval()
    b = batch(CFG, 3, seed=1)
    expected = model(model.initial_carry(b), b)
    model.step = CompiledOrEager(model.step, backend="eager")
    got = model(model.initial_carry(b), b)
    assert not model.step.failed
    torch.testing.assert_close(got.logits, expected.logits, rtol=0, atol=0)


class HostReads(TorchDispatchMode):
    """Counts ops that hand a tensor's value to the host (.item(), .tolist(), bool(t), ...),
    except reads of `exempt` tensors (host-side counters that never live on a GPU)."""

    def __init__(self, exempt: set[int]):
        super().__init__()
        self.exempt = exempt
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].data_ptr() not in self.exempt:
            self.reads += 1
        return func(*args, **(kwargs or {}))


def test_a_training_step_reads_nothing_back_to_the_host():
    torch.manual_seed(0)
    model = TRM(CFG).train()
    opts = Optimizers(AdamATan2(model.parameters()), SparseSignSGD(model.puzzle_table))
    b = batch(CFG, 4, seed=2)
    carry = model.initial_carry(b)
    explore = torch.Generator().manual_seed(0)
    for _ in range(2):  # the optimiser's lazily created state first, then a steady step
        min_steps = draw_min_halt_steps(4, CFG, explore)
        # AdamATan2's step counters stay on the host (as torch's own Adam keeps them): exempt.
        counters = {s["step"].data_ptr() for s in opts.weights.state.values()}
        with HostReads(exempt=counters) as reads:
            carry = train_step(model, carry, b, min_steps, StepSetup(opts, Dist(), 4)).carry
    assert reads.reads == 0


def test_weights_are_cast_once_per_step_not_once_per_application():
    model = TRM(replace(CFG, forward_dtype="bfloat16")).train()
    b = batch(CFG, 2, seed=3)
    net_weights = {p.data_ptr() for p in model.net.parameters()}

    class Casts(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._to_copy.default and args[0].data_ptr() in net_weights:
                Casts.count += 1
            return func(*args, **(kwargs or {}))

    with Casts():
        model(model.initial_carry(b), b)
    applications = CFG.H_cycles * (CFG.L_cycles + 1)
    assert Casts.count == len(net_weights), f"{Casts.count} casts for {len(net_weights)} weights, {applications} applications"


def bf16_gradients(model: TRM, b: Batch) -> dict[str, torch.Tensor]:
    compute_loss(model(model.initial_carry(b), b)).loss.backward()
    return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def test_bf16_weight_gradients_are_summed_in_float32_as_with_a_cast_per_use():
    """The step's one bf16 copy of each `net` weight serves T*(n+1) applications. Each application's
    gradient must reach the float32 weight in float32 and be summed there, as the reference's cast at
    every use does: the same gradients to the last bit (summed in bf16 they differed in ~88% of elements)."""
    cfg = replace(CFG, forward_dtype="bfloat16", L_cycles=3)
    torch.manual_seed(0)
    model = TRM(cfg).train()
    per_use = copy.deepcopy(model)
    per_use.cast_net = lambda: per_use.net  # every Linear casts its weight at each use
    b = batch(cfg, 4, seed=5)
    got, expected = bf16_gradients(model, b), bf16_gradients(per_use, b)
    assert got.keys() == expected.keys() and any(name.startswith("net.") for name in got)
    for name, grad in expected.items():
        assert grad.dtype == torch.float32 and grad.abs().sum() > 0
        assert torch.equal(got[name], grad), name


def test_bf16_gradients_compile_to_the_same_bits():
    """The cast-once path traces (the eager step's backward through aot_autograd) to the same gradients."""
    torch._dynamo.reset()
    cfg = replace(CFG, forward_dtype="bfloat16", L_cycles=1, H_cycles=1)
    torch.manual_seed(0)
    model = TRM(cfg).train()
    compiled = copy.deepcopy(model)
    compiled.step = CompiledOrEager(compiled.step, backend="aot_eager")
    b = batch(cfg, 2, seed=6)
    expected, got = bf16_gradients(model, b), bf16_gradients(compiled, b)
    assert not compiled.step.failed
    for name, grad in expected.items():
        assert torch.equal(got[name], grad), name


def test_attention_runs_sdpa_on_bf16_inputs(monkeypatch):
    seen = []
    original = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append((q.dtype, k.dtype, v.dtype))
        return original(q, k, v, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    model = TRM(replace(CFG, forward_dtype="bfloat16")).eval()
    b = batch(CFG, 2, seed=4)
    model(model.initial_carry(b), b)
    assert seen and all(dtypes == (torch.bfloat16,) * 3 for dtypes in seen)


def test_prefetched_batches_and_states_match_the_sampler(small_build):
    built = BuiltSet.open(small_build)
    direct = GroupSampler.for_built(built, seed=5)
    threaded = GroupSampler.for_built(built, seed=5)
    prefetch = Prefetcher(threaded, built, global_batch=6, rows=slice(2, 5), pin=False)
    try:
        for _ in range(4):
            draw = direct.next_batch(6)
            rows, examples = draw.rows, draw.examples
            inputs, _ = built.train_batch(rows[2:5], examples[2:5])
            got = prefetch.next()
            np.testing.assert_array_equal(got.batch.inputs.numpy(), inputs.astype(np.int32))
            np.testing.assert_array_equal(got.batch.puzzle_identifiers.numpy(), rows[2:5])
            assert got.sampler_state == direct.state_dict()  # what a checkpoint after this batch saves
    finally:
        prefetch.close()


def test_a_loader_error_reaches_the_training_thread(small_build):
    built = BuiltSet.open(small_build)
    sampler = GroupSampler.for_built(built, seed=0)
    def broken(batch_size):
        raise OSError("disk went away")

    sampler.next_batch = broken
    prefetch = Prefetcher(sampler, built, global_batch=4, rows=slice(0, 4), pin=False)
    try:
        with pytest.raises(OSError, match="disk went away"):
            prefetch.next()
    finally:
        prefetch.close()
