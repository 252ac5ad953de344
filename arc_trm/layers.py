"""The building blocks of TRM's network: initialisation, casting linear layers, SwiGLU, RMSNorm
and rotary attention (REFERENCE §4). model.py assembles them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arc_trm.config import ModelConfig, mlp_width


# ----------------------------------------------------------------------------------------------
# Initialisation and small building blocks


def _truncated_std(bound: float) -> float:
    """Std of a standard normal truncated to [-bound, bound] (about 0.8796 for bound 2)."""
    pdf = math.exp(-0.5 * bound * bound) / math.sqrt(2 * math.pi)
    mass = math.erf(bound / math.sqrt(2))
    return math.sqrt(1 - 2 * bound * pdf / mass)


def trunc_normal_(t: Tensor, std: float, bound: float = 2.0) -> Tensor:
    """JAX-style truncated normal: truncate at +-bound sigma, then rescale so the std is `std`."""
    with torch.no_grad():
        if std == 0:
            return t.zero_()
        nn.init.trunc_normal_(t, mean=0.0, std=1.0, a=-bound, b=bound)
        return t.mul_(std / _truncated_std(bound))


def rms_norm(x: Tensor, eps: float) -> Tensor:
    """Weightless RMSNorm over the last axis, computed in float32."""
    h = x.float()
    h = h * torch.rsqrt(h.square().mean(-1, keepdim=True) + eps)
    return h.to(x.dtype)


class Linear(nn.Module):
    """Linear layer with a float32 master weight cast to the input's dtype at use (bf16 forward)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(out_features, in_features), std=in_features**-0.5))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


class Embedding(nn.Module):
    """Embedding table (float32 master) whose output is cast to the forward dtype."""

    def __init__(self, num: int, dim: int, std: float):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(num, dim), std=std))

    def forward(self, ids: Tensor, dtype: torch.dtype) -> Tensor:
        return F.embedding(ids.long(), self.weight.to(dtype))


class SwiGLU(nn.Module):
    """down(silu(gate) * up), with gate and up fused in one projection (gate rows first)."""

    def __init__(self, dim: int, expansion: float):
        super().__init__()
        inter = mlp_width(dim, expansion)
        self.gate_up = Linear(dim, 2 * inter)
        self.down = Linear(inter, dim)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


# ----------------------------------------------------------------------------------------------
# Attention with rotary positions


@dataclass
class Rotary:
    cos: Tensor  # (L, head_dim) float32
    sin: Tensor  # (L, head_dim) float32


def rotary_tables(head_dim: int, length: int, theta: float) -> Rotary:
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)  # (L, head_dim/2)
    angles = torch.cat((angles, angles), dim=-1)  # rotate-half layout
    return Rotary(cos=angles.cos(), sin=angles.sin())


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: Tensor, rope: Rotary) -> Tensor:
    """x: (B, L, H, hd). Rotation done in float32, like the reference."""
    cos, sin = rope.cos.unsqueeze(-2), rope.sin.unsqueeze(-2)  # (L, 1, hd)
    h = x.float()
    return (h * cos + rotate_half(h) * sin).to(x.dtype)


class Attention(nn.Module):
    """Non-causal multi-head self-attention, fused qkv, no biases."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.qkv = Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.out = Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, h: Tensor, rope: Rotary | None) -> Tensor:
        B, L, D = h.shape
        qkv = self.qkv(h).view(B, L, 3 * self.num_heads, self.head_dim)
        q, k, v = qkv.split(self.num_heads, dim=2)  # each (B, L, H, hd)
        if rope is not None:
            q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, hd)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.out(a.transpose(1, 2).reshape(B, L, D))
