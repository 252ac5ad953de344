"""The loss of one supervision step: cross-entropy on the grid tokens plus the halting heads' binary
cross-entropies (REFERENCE §5 in docs/REFERENCE.md), and the halted rows' metrics. The token loss
is the reference's stablemax by default; `train.token_loss=softmax` swaps in the usual softmax."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from arc_trm.model import StepOutput
from augment.encoding import IGNORE_LABEL

Q_HALT_LOSS_WEIGHT = 0.5


def stablemax_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-token -log stablemax(logits)[label] in float64; 0 where label == IGNORE_LABEL."""
    x = logits.double()
    s = torch.where(x < 0, 1 / (1 - x + 1e-30), x + 1)
    logprobs = torch.log(s / s.sum(-1, keepdim=True))
    mask = labels != IGNORE_LABEL
    target = torch.where(mask, labels, 0).long().unsqueeze(-1)
    return -torch.where(mask, logprobs.gather(-1, target).squeeze(-1), 0)


def softmax_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-token -log softmax(logits)[label] in float32; 0 where label == IGNORE_LABEL."""
    return F.cross_entropy(logits.float().transpose(1, -1), labels.long(), ignore_index=IGNORE_LABEL,
                           reduction="none")


TOKEN_LOSS = {"stablemax": stablemax_cross_entropy, "softmax": softmax_cross_entropy}  # config.TOKEN_LOSSES


@dataclass
class Metrics:
    """Sums over rows that halted this step (and have any supervised token), as the reference.

    Sums (not means) so that ranks can be all-reduced.
    """

    count: Tensor
    accuracy: Tensor  # sum of per-row token accuracy
    exact_accuracy: Tensor  # rows fully correct
    q_halt_accuracy: Tensor  # rows where (q_halt >= 0) == fully correct
    steps: Tensor  # sum of step counts


@dataclass
class LossOutput:
    loss: Tensor  # lm_loss + 0.5 * (q_halt_loss + q_continue_loss), summed over the batch
    lm_loss: Tensor  # float64
    q_halt_loss: Tensor
    q_continue_loss: Tensor
    metrics: Metrics


def compute_loss(out: StepOutput, token_loss: str = "stablemax") -> LossOutput:
    """The step's loss, a SUM over the batch (the reference backprops loss / global batch)."""
    labels = out.carry.current.labels  # (B, L)
    mask = labels != IGNORE_LABEL
    with torch.no_grad():
        counts = mask.sum(-1)  # (B,)
        divisor = counts.clamp_min(1)
        correct = mask & (out.logits.argmax(-1) == labels)
        seq_correct = correct.sum(-1) == counts  # (B,)
        valid = out.carry.halted & (counts > 0)
        metrics = Metrics(
            count=valid.sum(),
            accuracy=torch.where(valid, correct.float().sum(-1) / divisor, 0).sum(),
            exact_accuracy=(valid & seq_correct).sum(),
            q_halt_accuracy=(valid & ((out.q_halt_logits >= 0) == seq_correct)).sum(),
            steps=torch.where(valid, out.carry.steps, 0).sum(),
        )

    lm_loss = (TOKEN_LOSS[token_loss](out.logits, labels).sum(-1) / divisor).sum()
    q_halt_loss = F.binary_cross_entropy_with_logits(
        out.q_halt_logits, seq_correct.to(out.q_halt_logits.dtype), reduction="sum"
    )
    q_continue_loss = torch.zeros((), dtype=q_halt_loss.dtype, device=q_halt_loss.device)
    if out.target_q_continue is not None:
        q_continue_loss = F.binary_cross_entropy_with_logits(
            out.q_continue_logits, out.target_q_continue, reduction="sum"
        )
    loss = lm_loss + Q_HALT_LOSS_WEIGHT * (q_halt_loss + q_continue_loss)
    return LossOutput(loss=loss, lm_loss=lm_loss, q_halt_loss=q_halt_loss, q_continue_loss=q_continue_loss, metrics=metrics)
