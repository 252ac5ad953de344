"""Benchmark: training FLOPs and time per sample with length bucketing vs the fixed 30 x 30 canvas.

Without bucketing every example fills 16 + 900 = 916 positions. With `data.bucketing` an example
sits on the smallest bucket canvas (10, 15, 20 or 30) that holds its grid pair and EOS, so it
fills 16 + side^2 positions. Over one epoch of the sampler each task contributes each of its
training pairs once, so the FLOPs per sample are the example-weighted mean over the build's
pairs (analytic counter, `arc_trm.flops.flops_per_step`, paper config).

Measured wall time: one training step (`arc_trm.train.train_step`) of a reduced model on random
tokens at each bucket length and at the full length, on this machine; per-sample time is the
same example-weighted mean. Target: >= 2.5x fewer FLOPs per sample.

    python benchmarks/bucketing.py                                 # ARC-AGI-2 training + evaluation
    python benchmarks/bucketing.py --tasks arc-agi-1 --device cuda --hidden 512 --T 3 --n 4 --batch 128
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import Timer, add_device_arguments, machine_info, machine_line, setup_device  # noqa: E402

TARGET_FLOP_RATIO = 2.5


def examples_per_bucket(tasks: str, augmentations: int) -> dict[int, int]:
    """Training examples per bucket side in one sampler epoch (each pair of each task once)."""
    from arc_trm.data import BucketSampler
    from augment.build import ensure_built
    from augment.options import BuildOptions
    from augment.store import BuiltSet

    with tempfile.TemporaryDirectory() as tmp:
        ensure_built(tasks, Path(tmp) / "b", BuildOptions(augmentations=augmentations, canvas=30, progress=False))
        built = BuiltSet.open(Path(tmp) / "b")
        sampler = BucketSampler.for_built(built, 0)
        return {side: int(sub.sizes.sum()) for side, sub in sampler.samplers.items()}


def step_seconds(cfg, side: int, batch: int, device: torch.device, steps: int) -> float:
    """Seconds of one training step at `batch` rows of side*side grid tokens."""
    from arc_trm.common import Dist
    from arc_trm.model import TRM, Batch, draw_min_halt_steps
    from arc_trm.optim import AdamATan2, SparseSignSGD
    from arc_trm.step import Optimizers, StepSetup, train_step

    torch.manual_seed(0)
    model = TRM(cfg).to(device).train()
    opts = Optimizers(AdamATan2(model.parameters()), SparseSignSGD(model.puzzle_table))
    g = torch.Generator().manual_seed(1)
    inputs = torch.randint(2, cfg.vocab_size, (batch, side * side), generator=g, dtype=torch.int32)
    b = Batch(inputs, inputs.long(), torch.randint(1, cfg.num_puzzle_ids, (batch,), generator=g, dtype=torch.int32))
    b = b.map(lambda t: t.to(device))
    carry = model.initial_carry(b)
    explore = torch.Generator().manual_seed(2)

    def one() -> None:
        nonlocal carry
        carry = train_step(model, carry, b, draw_min_halt_steps(batch, cfg, explore).to(device),
                           StepSetup(opts, Dist(device=device), batch)).carry

    one()
    with Timer(device) as t:
        for _ in range(steps):
            one()
    return t.seconds / steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arguments(ap)
    ap.add_argument("--tasks", default="arc-agi-2", help="task sources (default arc-agi-2: training + evaluation)")
    ap.add_argument("--augmentations", type=int, default=4,
                    help="augmented versions per task for the build (the buckets do not depend on it; default 4)")
    ap.add_argument("--hidden", type=int, default=64, help="hidden size of the timed model (default 64)")
    ap.add_argument("--T", type=int, default=1, help="H_cycles of the timed model (default 1)")
    ap.add_argument("--n", type=int, default=1, help="L_cycles of the timed model (default 1)")
    ap.add_argument("--batch", type=int, default=8, help="batch of the timed steps (default 8)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per length (default 3)")
    args = ap.parse_args()
    device, _ = setup_device(args)
    from arc_trm.config import ModelConfig
    from arc_trm.flops import flops_per_step

    print(machine_line(machine_info(device)), flush=True)
    counts = examples_per_bucket(args.tasks, args.augmentations)
    total = sum(counts.values())
    paper = ModelConfig(num_puzzle_ids=2)
    full = flops_per_step(paper, 1).total
    bucketed = sum(n * flops_per_step(paper, 1, length=s * s).total for s, n in counts.items()) / total
    print(f"\n{args.tasks}: {total:,} training examples per epoch")
    print("| bucket side | positions | examples | share | FLOPs/sample (paper) |")
    print("|---|---|---|---|---|")
    for s, n in sorted(counts.items()):
        print(f"| {s} | {16 + s * s} | {n:,} | {n / total:.1%} | {flops_per_step(paper, 1, length=s * s).total:.3g} |")
    ratio = full / bucketed
    print(f"FLOPs per training sample: fixed canvas {full:.3g}, bucketed {bucketed:.3g}: {ratio:.2f}x fewer "
          f"(target >= {TARGET_FLOP_RATIO}x: {'MET' if ratio >= TARGET_FLOP_RATIO else 'MISSED'})")

    small = ModelConfig(hidden_size=args.hidden, num_heads=max(1, args.hidden // 32), H_cycles=args.T,
                        L_cycles=args.n, num_puzzle_ids=64, forward_dtype="bfloat16" if device.type == "cuda" else "float32")
    seconds = {s: step_seconds(small, s, args.batch, device, args.steps) for s in sorted(set(counts) | {30})}
    per_sample_full = seconds[30] / args.batch
    per_sample = sum(n * seconds[s] for s, n in counts.items()) / total / args.batch
    print(f"\nmeasured on {machine_info(device)['device']} (hidden {args.hidden}, T={args.T}, n={args.n}, "
          f"batch {args.batch}, {args.steps} steps per length):")
    for s in sorted(seconds):
        print(f"  side {s}: {1e3 * seconds[s]:.1f} ms/step")
    print(f"time per training sample: fixed canvas {1e3 * per_sample_full:.2f} ms, bucketed {1e3 * per_sample:.2f} ms: "
          f"{per_sample_full / per_sample:.2f}x faster")
    if args.json:
        import json

        args.json.write_text(json.dumps({"examples": counts, "flops_fixed": full, "flops_bucketed": bucketed,
                                         "flop_ratio": ratio, "seconds_per_step": seconds,
                                         "time_ratio": per_sample_full / per_sample}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
