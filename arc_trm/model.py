"""Tiny Recursive Model (TRM), "Less is More: Recursive Reasoning with Tiny Networks".

One small network `net` (2 post-norm blocks) is applied recursively. Per supervision step:

    for each of T cycles (only the last one is backpropagated):
        repeat n times:  z <- net(z, y + x)     # refine the latent
        y <- net(y, z)                          # refine the answer

`y` is the answer state (the reference's z_H) and `z` the latent (the reference's z_L); both
carry over between supervision steps, detached. A Q head on y[:, 0] learns when to halt.
Behaviour matches the reference implementation (REFERENCE §4 and §5 in docs/REFERENCE.md) to float32 round-off.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from arc_trm.config import ModelConfig
from arc_trm.layers import Attention, Embedding, Linear, Rotary, SwiGLU, rms_norm, rotary_tables, trunc_normal_

# ----------------------------------------------------------------------------------------------
# The network


class Block(nn.Module):
    """Post-norm block: h = norm(h + mix(h)); h = norm(h + mlp(h)).

    `mix` is attention, or with `mlp_t` a SwiGLU across the sequence axis. In the latter case
    the reference takes the post-norm while still transposed, i.e. over the sequence axis.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.eps = cfg.rms_norm_eps
        self.use_mlp_t = cfg.mlp_t
        if cfg.mlp_t:
            self.mlp_t = SwiGLU(cfg.total_len, cfg.expansion)
        else:
            self.attn = Attention(cfg)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.expansion)

    def forward(self, h: Tensor, rope: Rotary | None) -> Tensor:  # (B, L, D) -> (B, L, D)
        if self.use_mlp_t:
            ht = h.transpose(1, 2)  # (B, D, L)
            h = rms_norm(ht + self.mlp_t(ht), self.eps).transpose(1, 2)
        else:
            h = rms_norm(h + self.attn(h, rope), self.eps)
        return rms_norm(h + self.mlp(h), self.eps)


class Net(nn.Module):
    """net(h, injection) = blocks(h + injection). The one network used for both updates."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.L_layers))

    def forward(self, h: Tensor, injection: Tensor, rope: Rotary | None) -> Tensor:
        h = h + injection
        for block in self.blocks:
            h = block(h, rope)
        return h


class SharedCast(torch.autograd.Function):
    """One use of a weight's cached low-precision copy: forward hands out the copy (no new cast);
    backward returns this use's gradient in the weight's own dtype. Autograd sums the gradients
    of several uses where they meet, so with one node per use they meet, and are summed, in float32."""

    @staticmethod
    def forward(ctx, weight: Tensor, cast: Tensor) -> Tensor:  # type: ignore[override]
        ctx.dtype = weight.dtype
        return cast.view_as(cast)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad.to(ctx.dtype), None


# ----------------------------------------------------------------------------------------------
# Named inputs and outputs


@dataclass
class Batch:
    inputs: Tensor  # (B, L) int tokens
    labels: Tensor  # (B, L) int, IGNORE_LABEL where unsupervised
    puzzle_identifiers: Tensor  # (B,) int

    def map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        return Batch(fn(self.inputs), fn(self.labels), fn(self.puzzle_identifiers))

    def where(self, mask: Tensor, other: Batch) -> Batch:
        """Rows where `mask` is set come from `other`, the rest from self."""

        def pick(new: Tensor, old: Tensor) -> Tensor:
            return torch.where(mask.view(-1, *([1] * (new.dim() - 1))), new, old)

        return Batch(
            inputs=pick(other.inputs, self.inputs),
            labels=pick(other.labels, self.labels),
            puzzle_identifiers=pick(other.puzzle_identifiers, self.puzzle_identifiers),
        )


@dataclass
class Carry:
    """Per-sample state that persists across supervision steps (and training batches)."""

    y: Tensor  # (B, L_total, D) answer state, forward dtype
    z: Tensor  # (B, L_total, D) latent state, forward dtype
    steps: Tensor  # (B,) int32 supervision steps taken on the current sample
    halted: Tensor  # (B,) bool; a halted row is replaced by the next batch's row
    current: Batch  # the sample each row is working on


@dataclass
class Latents:
    y: Tensor  # (B, L_total, D)
    z: Tensor  # (B, L_total, D)


@dataclass
class Heads:
    logits: Tensor  # (B, L, V)
    q_halt_logits: Tensor  # (B,) float32
    q_continue_logits: Tensor  # (B,) float32


@dataclass
class StepOutput:
    carry: Carry  # carry after this step (y, z detached; `halted` decided by this step)
    logits: Tensor  # (B, L, V) over grid positions, forward dtype
    q_halt_logits: Tensor  # (B,) float32
    q_continue_logits: Tensor  # (B,) float32
    # Training only: the batch's puzzle-table rows as a leaf tensor, so that the sign-SGD
    # optimiser can read `.grad` (ids are carry.current.puzzle_identifiers). None otherwise.
    puzzle_rows: Tensor | None
    target_q_continue: Tensor | None  # (B,) only when no_ACT_continue is False in training


# ----------------------------------------------------------------------------------------------
# The model


class TRM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.hidden_size
        self.forward_dtype = getattr(torch, cfg.forward_dtype)
        self.embed_scale = math.sqrt(D)
        embed_std = 1.0 / self.embed_scale

        self.embed_tokens = Embedding(cfg.vocab_size, D, std=embed_std)
        if cfg.pos_encodings == "learned":
            self.embed_pos = Embedding(cfg.total_len, D, std=embed_std)
        if cfg.pos_encodings == "rope":
            rope = rotary_tables(D // cfg.num_heads, cfg.total_len, cfg.rope_theta)
            self.register_buffer("rope_cos", rope.cos, persistent=False)
            self.register_buffer("rope_sin", rope.sin, persistent=False)
        self.net = Net(cfg)
        self.lm_head = Linear(D, cfg.vocab_size)
        self.q_head = Linear(D, 2, bias=True)
        with torch.no_grad():  # start by never halting early: q_halt = -5
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)

        # Fixed (never trained) initial answer and latent, broadcast over positions.
        self.register_buffer("y_init", trunc_normal_(torch.empty(D), std=1.0))
        self.register_buffer("z_init", trunc_normal_(torch.empty(D), std=1.0))
        # One vector per augmented puzzle; a buffer trained by sparse sign-SGD (optim.py).
        self.register_buffer("puzzle_table", torch.zeros(cfg.num_puzzle_ids, D))

    @classmethod
    def to_assign(cls, cfg: ModelConfig) -> "TRM":
        """A TRM whose puzzle table is only declared (meta device), to be filled by
        `load_state_dict(..., assign=True)`: a published table (1.8 GB) is never allocated twice."""
        model = cls(dataclasses.replace(cfg, num_puzzle_ids=1))
        model.cfg = cfg
        model.puzzle_table = torch.empty(cfg.num_puzzle_ids, cfg.hidden_size, device="meta")
        return model

    # -- pieces ---------------------------------------------------------------------------------

    def positions(self, length: int, device: torch.device) -> Tensor | None:
        """(L_total,) rows of the full canvas's position tables for a sequence of `length` grid
        tokens, or None for the full canvas. A bucket canvas of side s keeps the full canvas's
        row stride: its cell (r, c) sits at position prefix + r * full_side + c (length bucketing)."""
        if length == self.cfg.seq_len:
            return None
        if self.cfg.mlp_t:
            raise ValueError("length bucketing needs attention: mlp_t mixes a fixed sequence length")
        full, side = math.isqrt(self.cfg.seq_len), math.isqrt(length)
        P = self.cfg.puzzle_emb_len
        grid = (torch.arange(side, device=device)[:, None] * full + torch.arange(side, device=device)).reshape(-1)
        return torch.cat((torch.arange(P, device=device), P + grid))

    def rotary(self, positions: Tensor | None = None) -> Rotary | None:
        if self.cfg.pos_encodings != "rope":
            return None
        if positions is None:
            return Rotary(cos=self.rope_cos, sin=self.rope_sin)
        return Rotary(cos=self.rope_cos[positions], sin=self.rope_sin[positions])

    def gather_puzzle_rows(self, ids: Tensor) -> Tensor:
        """(B,) -> (B, D) float32. In training a fresh leaf that collects the rows' gradient."""
        rows = self.puzzle_table[ids.long()].detach()
        if self.training and torch.is_grad_enabled():
            rows.requires_grad_(True)
        return rows

    def input_embeddings(self, inputs: Tensor, puzzle_rows: Tensor) -> Tensor:
        """x = sqrt(D) * [puzzle vector, 0, ..., 0, token embeddings]  -> (B, L_total, D)."""
        B = inputs.shape[0]
        tokens = self.embed_tokens(inputs, self.forward_dtype)  # (B, L, D)
        pad = tokens.new_zeros(B, self.cfg.puzzle_emb_len - 1, tokens.shape[-1])
        x = torch.cat((puzzle_rows.to(self.forward_dtype).unsqueeze(1), pad, tokens), dim=1)  # (B, L_total, D)
        if self.cfg.pos_encodings == "learned":
            pos = self.embed_pos.weight.to(self.forward_dtype)  # (L_total, D)
            positions = self.positions(inputs.shape[1], inputs.device)
            x = 0.707106781 * (x + (pos if positions is None else pos[positions]))  # ~1/sqrt(2), as the reference
        return self.embed_scale * x

    def cast_net(self) -> Callable[[Tensor, Tensor, Rotary | None], Tensor]:
        """`net` with its float32 master weights cast to the forward dtype once, not once per
        application: T*(n+1) applications share one cast per step. With gradients, each
        application takes the copy through its own SharedCast, so the applications' weight
        gradients are summed in float32, as with a cast per use (the reference), not in bf16."""
        params = dict(self.net.named_parameters())
        cast = {name: p.detach().to(self.forward_dtype) for name, p in params.items()}

        def net(h: Tensor, injection: Tensor, rope: Rotary | None) -> Tensor:
            weights = cast
            if torch.is_grad_enabled():
                weights = {name: p if p.dtype == self.forward_dtype else SharedCast.apply(p, cast[name])
                           for name, p in params.items()}
            return functional_call(self.net, weights, (h, injection, rope))

        return net

    def cycle(self, net: Callable, y: Tensor, z: Tensor, x: Tensor, rope: Rotary | None) -> Latents:
        for _ in range(self.cfg.L_cycles):  # n
            z = net(z, y + x, rope)
        y = net(y, z, rope)
        return Latents(y=y, z=z)

    def recurse(self, y: Tensor, z: Tensor, x: Tensor, noise: Tensor | None = None) -> Latents:
        """One supervision step: T cycles, gradient only through the last one. `noise` (T, B, L, D),
        added to the latent before each cycle, makes a noisy trajectory (PTRM; inference only)."""
        rope = self.rotary(self.positions(x.shape[1] - self.cfg.puzzle_emb_len, x.device))
        net = self.cast_net()
        with torch.no_grad():
            for t in range(self.cfg.H_cycles - 1):  # T - 1
                latents = self.cycle(net, y, z if noise is None else z + noise[t], x, rope)
                y, z = latents.y, latents.z
        return self.cycle(net, y, z if noise is None else z + noise[-1], x, rope)

    def heads(self, y: Tensor) -> Heads:
        logits = self.lm_head(y)[:, self.cfg.puzzle_emb_len :]  # (B, L, V): prefix dropped
        q = self.q_head(y[:, 0]).float()  # (B, 2)
        return Heads(logits=logits, q_halt_logits=q[:, 0], q_continue_logits=q[:, 1])

    # -- carry and step -------------------------------------------------------------------------

    def initial_carry(self, batch: Batch) -> Carry:
        """All rows halted, so the first step loads every row of its batch from the init vectors."""
        B = batch.inputs.shape[0]
        device = batch.inputs.device
        shape = (B, self.cfg.puzzle_emb_len + batch.inputs.shape[1], self.cfg.hidden_size)  # a bucket's length
        return Carry(
            y=torch.zeros(shape, dtype=self.forward_dtype, device=device),
            z=torch.zeros(shape, dtype=self.forward_dtype, device=device),
            steps=torch.zeros(B, dtype=torch.int32, device=device),
            halted=torch.ones(B, dtype=torch.bool, device=device),
            current=Batch(*(torch.zeros_like(t) for t in (batch.inputs, batch.labels, batch.puzzle_identifiers))),
        )

    def reset(self, carry: Carry, batch: Batch) -> Carry:
        """Halted rows restart from the init vectors at step 0 with the new batch's row;
        the other rows keep their state and sample."""
        halted = carry.halted.view(-1, 1, 1)
        return Carry(
            y=torch.where(halted, self.y_init.to(self.forward_dtype), carry.y),  # (B, L_total, D)
            z=torch.where(halted, self.z_init.to(self.forward_dtype), carry.z),
            steps=torch.where(carry.halted, 0, carry.steps),
            halted=carry.halted,
            current=carry.current.where(carry.halted, batch),
        )

    def forward(
        self,
        carry: Carry,
        batch: Batch,
        min_halt_steps: Tensor | None = None,
        use_q_halt: bool | None = None,
        noise: Tensor | None = None,
    ) -> StepOutput:
        """One supervision step on every row (reference ACT semantics, REFERENCE §5).

        min_halt_steps: (B,) int, exploration minimum per row (0 = none); see draw_min_halt_steps.
        use_q_halt: halt on the Q head; None = only in training (the reference evaluates with a
            fixed halt_max_steps).
        noise: (T, B, L_total, D) added to the latent z before each cycle (noisy trajectories).

        The eager part (reset, gathering the puzzle rows as a grad leaf) lives here; the tensor
        work is `step`, which compiles without graph breaks: `model.step = torch.compile(model.step)`.
        """
        state = self.reset(carry, batch)
        puzzle_rows = self.gather_puzzle_rows(state.current.puzzle_identifiers)  # (B, D)
        if use_q_halt is None:
            use_q_halt = self.training
        return self.step(state, puzzle_rows, min_halt_steps, use_q_halt, noise)

    def step(self, state: Carry, puzzle_rows: Tensor, min_halt_steps: Tensor | None, use_q_halt: bool,
             noise: Tensor | None = None) -> StepOutput:
        """Recursion, heads and halting decision for a carry already reset by `reset`."""
        cfg = self.cfg
        y, z, steps, current = state.y, state.z, state.steps, state.current
        x = self.input_embeddings(current.inputs, puzzle_rows)
        latents = self.recurse(y, z, x, noise)
        heads = self.heads(latents.y)
        q_halt, q_continue = heads.q_halt_logits, heads.q_continue_logits

        with torch.no_grad():
            steps = steps + 1
            halted = steps >= cfg.halt_max_steps
            target_q_continue = None
            if use_q_halt and cfg.halt_max_steps > 1:
                if cfg.no_ACT_continue:
                    halted = halted | (q_halt > 0)
                else:
                    halted = halted | (q_halt > q_continue)
                if min_halt_steps is not None:
                    halted = halted & (steps >= min_halt_steps.to(steps.device))
                if self.training and not cfg.no_ACT_continue:
                    # Q-learning target: the next step's value (bootstrapped with no grad).
                    nxt = self.recurse(latents.y, latents.z, x)
                    nh = self.heads(nxt.y)
                    bootstrap = torch.where(
                        steps >= cfg.halt_max_steps, nh.q_halt_logits, torch.maximum(nh.q_halt_logits, nh.q_continue_logits)
                    )
                    target_q_continue = torch.sigmoid(bootstrap)

        new_carry = Carry(
            y=latents.y.detach(), z=latents.z.detach(), steps=steps.to(torch.int32), halted=halted, current=current
        )
        return StepOutput(
            carry=new_carry,
            logits=heads.logits,
            q_halt_logits=q_halt,
            q_continue_logits=q_continue,
            puzzle_rows=puzzle_rows if puzzle_rows.requires_grad else None,
            target_q_continue=target_q_continue,
        )


def draw_min_halt_steps(batch_size: int, cfg: ModelConfig, generator: torch.Generator) -> Tensor:
    """Exploration: with prob halt_exploration_prob a row may not halt before a step in 2..max."""
    explore = torch.rand(batch_size, generator=generator) < cfg.halt_exploration_prob
    if cfg.halt_max_steps < 2:  # one step: nothing to explore
        return torch.zeros(batch_size, dtype=torch.int32)
    floor = torch.randint(2, cfg.halt_max_steps + 1, (batch_size,), generator=generator, dtype=torch.int32)
    return explore.to(torch.int32) * floor
