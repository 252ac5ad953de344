"""Behaviour of arc_trm.model beyond reference parity: sizes, init, carry, halting, loss, precision, FLOPs."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from arc_trm.config import TOKEN_LOSSES, ModelConfig
from arc_trm.flops import count_parameters, flops_per_step
from arc_trm.loss import TOKEN_LOSS, compute_loss, softmax_cross_entropy, stablemax_cross_entropy
from arc_trm.layers import trunc_normal_
from arc_trm.model import TRM, Batch, Carry, StepOutput, draw_min_halt_steps
from augment.encoding import IGNORE_LABEL

TINY = ModelConfig(
    hidden_size=32,
    num_heads=2,
    L_layers=2,
    H_cycles=2,
    L_cycles=2,
    halt_max_steps=4,
    puzzle_emb_len=2,
    num_puzzle_ids=5,
    seq_len=16,
    forward_dtype="float32",
)


def make_batch(cfg: ModelConfig, batch_size: int, seed: int) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, cfg.vocab_size, (batch_size, cfg.seq_len), generator=gen, dtype=torch.int32)
    labels = torch.randint(0, cfg.vocab_size, (batch_size, cfg.seq_len), generator=gen, dtype=torch.int32)
    labels[:, ::3] = IGNORE_LABEL
    ids = torch.randint(1, cfg.num_puzzle_ids, (batch_size,), generator=gen, dtype=torch.int32)
    return Batch(inputs=inputs, labels=labels, puzzle_identifiers=ids)


def make_model(cfg: ModelConfig = TINY, seed: int = 0) -> TRM:
    torch.manual_seed(seed)
    model = TRM(cfg)
    with torch.no_grad():  # non-zero puzzle vectors so that they matter
        model.puzzle_table.normal_()
    return model


def rows(batch: Batch, idx: list[int]) -> Batch:
    return Batch(batch.inputs[idx], batch.labels[idx], batch.puzzle_identifiers[idx])


# -- sizes and initialisation --------------------------------------------------------------------


def test_parameter_count_arc_attention() -> None:
    with torch.device("meta"):  # shapes only: no time spent on initialisation
        model = TRM(ModelConfig(num_puzzle_ids=3))
    assert count_parameters(model) == 6_829_058
    assert sum(p.numel() for p in model.net.blocks[0].parameters()) == 3_407_872
    names = {n for n, _ in model.named_parameters()}
    assert not any("puzzle" in n or "init" in n for n in names), f"buffers leaked into parameters: {names}"
    assert {"puzzle_table", "y_init", "z_init"} <= set(model.state_dict())
    assert "rope_cos" not in model.state_dict(), "rope tables are recomputed, not saved"


def test_parameter_count_arc_mlp_t() -> None:
    with torch.device("meta"):
        model = TRM(ModelConfig(num_puzzle_ids=1000, pos_encodings="none", mlp_t=True))
    assert count_parameters(model) == 18_801_666


def test_trunc_normal_realised_std() -> None:
    t = trunc_normal_(torch.empty(200_000), std=0.5)
    assert t.abs().max() <= 2 * 0.5 / 0.8796 + 1e-6, "truncated at 2 sigma of the unit normal"
    assert abs(t.std().item() - 0.5) < 0.005, f"realised std {t.std().item()}"


def test_initialisation() -> None:
    model = TRM(replace(TINY, hidden_size=256, num_heads=4))
    assert torch.equal(model.q_head.weight, torch.zeros_like(model.q_head.weight))
    assert torch.equal(model.q_head.bias, torch.full((2,), -5.0))
    assert torch.equal(model.puzzle_table, torch.zeros(5, 256))
    qkv = model.net.blocks[0].attn.qkv.weight
    assert abs(qkv.std().item() - 256**-0.5) < 0.05 * 256**-0.5, "linear std 1/sqrt(fan_in)"
    down = model.net.blocks[0].mlp.down.weight  # fan_in = intermediate 768
    assert down.shape == (256, 768) and abs(down.std().item() - 768**-0.5) < 0.05 * 768**-0.5
    assert abs(model.embed_tokens.weight.std().item() - 1 / 16) < 0.2 / 16
    assert abs(model.y_init.std().item() - 1.0) < 0.2 and not torch.equal(model.y_init, model.z_init)


# -- carry and halting ---------------------------------------------------------------------------


def test_halted_rows_reset_and_refilled_others_continue() -> None:
    model = make_model().eval()
    a, b = make_batch(TINY, 3, seed=1), make_batch(TINY, 3, seed=2)
    with torch.no_grad():
        carry = model(model.initial_carry(a), a).carry
        carry = replace(carry, halted=torch.tensor([True, False, True]))
        out = model(carry, b)

        fresh_b = model(model.initial_carry(b), b)  # one step on b from scratch
        a1 = model(model.initial_carry(a), a)
        a2 = model(a1.carry, a)  # two steps on a

    c = out.carry
    assert torch.equal(c.current.inputs[[0, 2]], b.inputs[[0, 2]]), "halted rows take the new batch's row"
    assert torch.equal(c.current.puzzle_identifiers[1], a.puzzle_identifiers[1]), "running row keeps its sample"
    assert torch.equal(c.current.labels[1], a.labels[1])
    assert c.steps.tolist() == [1, 2, 1]
    torch.testing.assert_close(c.y[[0, 2]], fresh_b.carry.y[[0, 2]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c.z[[0, 2]], fresh_b.carry.z[[0, 2]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c.y[1], a2.carry.y[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits[1], a2.logits[1], rtol=1e-5, atol=1e-5)


def test_eval_halts_only_at_max_steps_even_if_q_says_halt() -> None:
    model = make_model().eval()
    with torch.no_grad():
        model.q_head.bias.fill_(5.0)  # q_halt = +5: "halt now"
    batch = make_batch(TINY, 2, seed=3)
    carry = model.initial_carry(batch)
    with torch.no_grad():
        for step in range(1, TINY.halt_max_steps + 1):
            out = model(carry, batch)
            carry = out.carry
            assert carry.halted.tolist() == [step == TINY.halt_max_steps] * 2, f"step {step}"
        assert model(carry, batch, use_q_halt=True).carry.halted.all(), "opt-in halting on q"
        restart = model(carry, batch)
    assert restart.carry.steps.tolist() == [1, 1], "halted rows restart at step 1"


def test_training_halts_on_q_and_respects_min_halt_steps() -> None:
    model = make_model().train()
    batch = make_batch(TINY, 3, seed=4)
    with torch.no_grad():
        model.q_head.bias.fill_(5.0)
    out = model(model.initial_carry(batch), batch)
    assert out.carry.halted.all(), "q_halt > 0 halts in training"

    floor = torch.tensor([0, 2, 4], dtype=torch.int32)
    carry = model.initial_carry(batch)
    halted_at = [[], [], []]
    for step in range(1, 5):
        carry = model(carry, batch, min_halt_steps=floor).carry
        carry = replace(carry, halted=carry.halted.clone())
        for r in range(3):
            if carry.halted[r]:
                halted_at[r].append(step)
        carry.halted.zero_()  # keep all rows running to see when each would halt
    assert [h[0] for h in halted_at] == [1, 2, 4]

    with torch.no_grad():
        model.q_head.bias.fill_(-5.0)
    carry = model.initial_carry(batch)
    for step in range(1, 5):
        carry = model(carry, batch).carry
        assert carry.halted.tolist() == [step == 4] * 3, "q_halt < 0: halt only at the step cap"


def test_draw_min_halt_steps() -> None:
    cfg = replace(TINY, halt_max_steps=16, halt_exploration_prob=0.1)
    draw = draw_min_halt_steps(20_000, cfg, torch.Generator().manual_seed(0))
    again = draw_min_halt_steps(20_000, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(draw, again), "deterministic given the generator"
    explored = draw[draw > 0]
    assert set(explored.unique().tolist()) == set(range(2, 17))
    assert abs(explored.numel() / draw.numel() - 0.1) < 0.01
    none = draw_min_halt_steps(100, replace(cfg, halt_exploration_prob=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(none, torch.zeros(100, dtype=torch.int32))


def test_carry_detached_and_grads_reach_params_and_puzzle_rows() -> None:
    model = make_model().train()
    batch = make_batch(TINY, 2, seed=5)
    out = model(model.initial_carry(batch), batch)
    assert not out.carry.y.requires_grad and not out.carry.z.requires_grad
    assert out.puzzle_rows is not None and out.puzzle_rows.is_leaf
    table_before = model.puzzle_table.clone()
    compute_loss(out).loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert out.puzzle_rows.grad is not None and out.puzzle_rows.grad.abs().sum() > 0
    assert torch.equal(model.puzzle_table, table_before), "backward must not touch the table"
    with torch.no_grad():
        assert model(model.initial_carry(batch), batch).puzzle_rows is None, "no leaf without grad"


def test_only_last_cycle_is_backpropagated() -> None:
    """With T cycles the gradient equals the 1-cycle gradient started from T-1 detached cycles."""
    model = make_model().train()
    batch = make_batch(TINY, 2, seed=6)
    out = model(model.initial_carry(batch), batch)
    compute_loss(out).loss.backward()
    grad_full = model.lm_head.weight.grad.clone()
    grad_embed = model.embed_tokens.weight.grad.clone()

    model.zero_grad()
    rows_ = model.gather_puzzle_rows(batch.puzzle_identifiers)
    x = model.input_embeddings(batch.inputs, rows_)
    y = model.y_init.expand_as(x)
    z = model.z_init.expand_as(x)
    net = model.cast_net()
    with torch.no_grad():
        pre = model.cycle(net, y, z, x, model.rotary())  # the T-1 = 1 no-grad cycle
    last = model.cycle(net, pre.y, pre.z, x, model.rotary())
    heads = model.heads(last.y)
    carry = replace(out.carry, y=last.y.detach(), z=last.z.detach())
    manual = StepOutput(carry, heads.logits, heads.q_halt_logits, heads.q_continue_logits, rows_, None)
    compute_loss(manual).loss.backward()
    torch.testing.assert_close(model.lm_head.weight.grad, grad_full)
    torch.testing.assert_close(model.embed_tokens.weight.grad, grad_embed)


def test_act_continue_variant_adds_q_continue_loss() -> None:
    model = make_model(replace(TINY, no_ACT_continue=False)).train()
    batch = make_batch(TINY, 2, seed=7)
    out = model(model.initial_carry(batch), batch)
    assert out.target_q_continue is not None and out.target_q_continue.shape == (2,)
    assert ((out.target_q_continue > 0) & (out.target_q_continue < 1)).all()
    losses = compute_loss(out)
    assert losses.q_continue_loss > 0
    torch.testing.assert_close(losses.loss, losses.lm_loss + 0.5 * (losses.q_halt_loss + losses.q_continue_loss).double())


# -- loss ---------------------------------------------------------------------------------------


def _stablemax_nll(logits: list[float], label: int) -> float:
    s = [1 / (1 - x) if x < 0 else x + 1 for x in logits]
    return -math.log(s[label] / sum(s))


def _loss_case() -> StepOutput:
    logits = torch.tensor(
        [
            [[2.0, -1.0, 0.5], [-3.0, 0.0, 1.0]],  # row 0: argmax [0, 2]
            [[0.1, 0.2, -0.4], [1.5, -2.0, 0.0]],  # row 1: argmax [1, 0]
            [[0.0, 0.0, 3.0], [0.0, 0.0, 0.0]],  # row 2: nothing supervised
        ]
    )
    labels = torch.tensor([[0, 2], [1, IGNORE_LABEL], [IGNORE_LABEL, IGNORE_LABEL]])
    batch = Batch(inputs=torch.zeros_like(labels), labels=labels, puzzle_identifiers=torch.zeros(3, dtype=torch.long))
    carry = Carry(
        y=torch.zeros(3, 1, 1),
        z=torch.zeros(3, 1, 1),
        steps=torch.tensor([3, 1, 2], dtype=torch.int32),
        halted=torch.tensor([True, False, True]),
        current=batch,
    )
    q_halt = torch.tensor([0.3, -1.0, 2.0])
    return StepOutput(carry, logits, q_halt, torch.zeros(3), None, None)


def test_stablemax_cross_entropy_by_hand() -> None:
    out = _loss_case()
    per_token = stablemax_cross_entropy(out.logits, out.carry.current.labels)
    assert per_token.dtype == torch.float64
    expected = torch.tensor(
        [
            [_stablemax_nll([2.0, -1.0, 0.5], 0), _stablemax_nll([-3.0, 0.0, 1.0], 2)],
            [_stablemax_nll([0.1, 0.2, -0.4], 1), 0.0],
            [0.0, 0.0],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(per_token, expected)


def test_softmax_cross_entropy_by_hand() -> None:
    out = _loss_case()
    nll = lambda xs, k: math.log(sum(math.exp(x) for x in xs)) - xs[k]  # noqa: E731
    expected = torch.tensor([[nll([2.0, -1.0, 0.5], 0), nll([-3.0, 0.0, 1.0], 2)],
                             [nll([0.1, 0.2, -0.4], 1), 0.0], [0.0, 0.0]])
    torch.testing.assert_close(softmax_cross_entropy(out.logits, out.carry.current.labels), expected)
    # The choice reaches the step's loss: only row 0 and row 1's first token are supervised.
    lm = compute_loss(out, "softmax").lm_loss
    torch.testing.assert_close(lm.double(), (expected[0].sum() / 2 + expected[1, 0]).double())
    assert tuple(TOKEN_LOSS) == TOKEN_LOSSES, "every name the config accepts has a loss"


def test_loss_and_metrics_by_hand() -> None:
    out = _loss_case()
    losses = compute_loss(out)
    lm = (
        (_stablemax_nll([2.0, -1.0, 0.5], 0) + _stablemax_nll([-3.0, 0.0, 1.0], 2)) / 2
        + _stablemax_nll([0.1, 0.2, -0.4], 1) / 1
        + 0.0  # no supervised tokens: divisor clamped to 1, contributes 0
    )
    assert losses.lm_loss.dtype == torch.float64
    assert abs(losses.lm_loss.item() - lm) < 1e-6  # logits are float32
    # Rows 0 and 1 are fully correct; row 2 (no supervised tokens) counts as correct too.
    # BCE-with-logits against target 1 is softplus(-q) = log(1 + exp(-q)).
    q = sum(math.log1p(math.exp(-v)) for v in (0.3, -1.0, 2.0))
    assert abs(losses.q_halt_loss.item() - q) < 1e-5
    assert abs(losses.loss.item() - (lm + 0.5 * q)) < 1e-5

    m = losses.metrics  # over halted rows with supervised tokens: row 0 only
    assert (m.count.item(), m.exact_accuracy.item(), m.q_halt_accuracy.item(), m.steps.item()) == (1, 1, 1, 3)
    assert m.accuracy.item() == pytest.approx(1.0)

    wrong = replace(out, q_halt_logits=torch.tensor([-0.3, -1.0, 2.0]))
    assert compute_loss(wrong).metrics.q_halt_accuracy.item() == 0


# -- precision and FLOPs ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [dict(pos_encodings="rope"), dict(pos_encodings="none", mlp_t=True)])
def test_bf16_forward_agrees_with_float32(variant: dict) -> None:
    cfg32 = replace(TINY, **variant)
    m32 = make_model(cfg32).eval()
    m16 = TRM(replace(cfg32, forward_dtype="bfloat16")).eval()
    m16.load_state_dict(m32.state_dict())
    batch = make_batch(cfg32, 3, seed=8)
    with torch.no_grad():
        o32 = m32(m32.initial_carry(batch), batch)
        o16 = m16(m16.initial_carry(batch), batch)
    assert o16.logits.dtype == torch.bfloat16 and o16.carry.y.dtype == torch.bfloat16
    assert o16.q_halt_logits.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in m16.parameters()), "master weights stay float32"
    err = ((o16.logits.float() - o32.logits).norm() / o32.logits.norm()).item()
    assert 0 < err < 5e-2, f"bf16 relative error {err}"
    m16.train()
    loss = compute_loss(m16(m16.initial_carry(batch), batch)).loss
    assert loss.dtype == torch.float64 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in m16.parameters())


@pytest.mark.parametrize("variant", [dict(pos_encodings="rope"), dict(pos_encodings="none", mlp_t=True)])
def test_flops_per_step_matches_flop_counter(variant: dict) -> None:
    cfg = replace(TINY, **variant)
    model = make_model(cfg)
    batch = make_batch(cfg, 2, seed=9)

    # The CPU fused attention kernel is invisible to FlopCounterMode; the math backend uses bmm.
    model.eval()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(model.initial_carry(batch), batch)
    assert counter.get_total_flops() == flops_per_step(cfg, 2, training=False).forward

    model.train()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        compute_loss(model(model.initial_carry(batch), batch)).loss.backward()
    assert counter.get_total_flops() == flops_per_step(cfg, 2).total


def test_step_traces_without_graph_breaks() -> None:
    """`TRM.step` must stay free of data-dependent Python control flow for torch.compile."""
    explain = pytest.importorskip("torch._dynamo").explain
    cfg = replace(TINY, L_layers=1, L_cycles=1)  # fewer unrolled ops: tracing time grows with them
    model = make_model(cfg).train()
    batch = make_batch(cfg, 2, seed=10)
    state = model.reset(model.initial_carry(batch), batch)
    puzzle_rows = model.gather_puzzle_rows(state.current.puzzle_identifiers)
    floor = torch.tensor([0, 3], dtype=torch.int32)
    report = explain(model.step)(state, puzzle_rows, floor, True)
    assert report.graph_break_count == 0, [str(b.reason)[:300] for b in report.break_reasons]
    assert report.graph_count == 1


# -- shapes refused by the config ------------------------------------------------------------------

BAD_SHAPES = {  # override -> the keys the one line names (the three, each failed at the first forward)
    "model.hidden_size=100 model.num_heads=4": ("model.hidden_size", "model.num_heads", "even"),
    "model.expansion=0.01": ("model.expansion", "model.hidden_size"),
    "model.hidden_size=64 model.num_heads=64": ("model.hidden_size", "model.num_heads", "head dim of 1"),
}


@pytest.mark.parametrize("overrides", sorted(BAD_SHAPES))
def test_the_cli_refuses_a_shape_the_first_forward_would_fail_on(overrides, tmp_path):
    from conftest import SMALL_TASKS, TINY as TINY_SETS, cli_in_process, sets

    proc = cli_in_process("train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--out", tmp_path / "run",
                          "--build", tmp_path / "build", "--no-progress", *sets(TINY_SETS + overrides.split()))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(key in lines[0] for key in BAD_SHAPES[overrides]), lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "build").exists()


@pytest.mark.parametrize("pos", ["rope", "learned", "none"])
@pytest.mark.parametrize("mlp_t", [False, True])
def test_the_config_accepts_exactly_the_shapes_whose_first_step_runs(pos, mlp_t) -> None:
    """Over small hidden sizes, head counts and expansions, each shape set on a config without
    validation: the validation accepts it if and only if a training forward and backward run."""
    outcomes = set()
    for hidden, heads, expansion in [(h, n, e) for h in (6, 8) for n in (1, 2, 3, 4, 6, 8) for e in (0.1, 4.0)]:
        cfg = replace(TINY, pos_encodings=pos, mlp_t=mlp_t, L_layers=1, H_cycles=1, L_cycles=1, seq_len=4)
        cfg.hidden_size, cfg.num_heads, cfg.expansion = hidden, heads, expansion  # plain fields: not validated
        try:
            cfg.__post_init__()
            accepted = True
        except ValueError:
            accepted = False
        try:
            torch.manual_seed(0)
            with pytest.MonkeyPatch.context() as mp:  # TRM(cfg) itself, past the config's own check
                mp.setattr(ModelConfig, "__post_init__", lambda self: None)
                model = TRM(cfg).train()
            batch = make_batch(cfg, 2, seed=0)
            compute_loss(model(model.initial_carry(batch), batch)).loss.backward()
            ran = True
        except (RuntimeError, ValueError, ZeroDivisionError):
            ran = False
        assert accepted == ran, (hidden, heads, expansion, accepted, ran)
        outcomes.add(ran)
    assert outcomes == {True, False}
