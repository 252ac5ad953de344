"""Accounting: trainable parameters and the analytic matmul FLOPs of one supervision step."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from arc_trm.config import ModelConfig, mlp_width


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the puzzle table is a buffer and is not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class StepFlops:
    forward: int
    backward: int

    @property
    def total(self) -> int:
        return self.forward + self.backward


def _swiglu_matmul_params(dim: int, expansion: float) -> int:
    return 3 * dim * mlp_width(dim, expansion)


def net_flops(cfg: ModelConfig, batch_size: int, length: int | None = None) -> int:
    """Matmul FLOPs of one application of `net` (2 per multiply-add); `length` grid tokens
    (default seq_len; fewer under length bucketing)."""
    B, L, D = batch_size, cfg.puzzle_emb_len + (length or cfg.seq_len), cfg.hidden_size
    per_block = 2 * B * L * _swiglu_matmul_params(D, cfg.expansion)
    if cfg.mlp_t:
        per_block += 2 * B * D * _swiglu_matmul_params(L, cfg.expansion)  # over the sequence axis
    else:
        per_block += 2 * B * L * 4 * D * D  # qkv + out projections
        per_block += 2 * 2 * B * L * L * D  # scores q k^T and weights @ v
    return cfg.L_layers * per_block


def flops_per_step(cfg: ModelConfig, batch_size: int, training: bool = True, length: int | None = None) -> StepFlops:
    """Analytic matmul FLOPs of one supervision step: forward T*(n+1) applications of net plus
    the heads; backward (training only) = 2x the forward of the last cycle's n+1 applications
    and the heads. With no_ACT_continue False, training adds one more no-grad forward."""
    B, D = batch_size, cfg.hidden_size
    net = net_flops(cfg, B, length)
    heads = 2 * B * (cfg.puzzle_emb_len + (length or cfg.seq_len)) * D * cfg.vocab_size + 2 * B * D * 2  # lm + q heads
    applications = cfg.H_cycles * (cfg.L_cycles + 1)
    forward = applications * net + heads
    if not training:
        return StepFlops(forward=forward, backward=0)
    if not cfg.no_ACT_continue:
        forward *= 2
    backward = 2 * ((cfg.L_cycles + 1) * net + heads)
    return StepFlops(forward=forward, backward=backward)
