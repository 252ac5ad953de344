"""Benchmark: TRM training and inference steps: samples/s, MFU and memory, eager vs compiled.

A training step is `arc_trm.train.train_step`, the loop's own step: one supervision step with the
carry (reset of halted rows, T cycles of which the last is backpropagated), compute_loss,
backward of loss / batch, an AdamATan2 step on the weights and a sparse sign-SGD step on the
touched puzzle rows. An inference step is one eval-mode supervision step (no gradient, halting
decided by the Q head), what `predict` runs per slot refill. Batches are random tokens already
on the device: this measures the model, not the loader.

FLOPs are analytic (`arc_trm.flops.flops_per_step`: matmul FLOPs). MFU is achieved FLOP/s over
a matmul peak MEASURED IN THE SAME RUN (bf16 8192^3 on a GPU, float32 2048^3 on a CPU).

`--reference DIR` also runs the reference implementation (a checkout of
SamsungSAILMontreal/TinyRecursiveModels: its models/ folder, never part of this repository) on
the same device, config and batch: its model inside its loss head, compiled whole as its
pretrain.py does, with its sparse sign-SGD. Its AdamATan2 is a CUDA extension that is not
installable offline, so our AdamATan2 (the same update, plain torch) stands in for it.

Defaults
  CUDA: the paper's ARC config (hidden 512, 8 heads, 2 layers, T=3, n=4, 916 positions, bf16),
        batches 128 and 256 per GPU.
  CPU:  a reduced model (hidden 128, 4 heads, T=2, n=2, canvas 10), float32, batch 32.

    python benchmarks/train_step.py                                    # CPU, reduced size
    python benchmarks/train_step.py --device cuda --modes eager,compile --reference ../TRM --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import (Timer, add_device_arguments, copy_bandwidth, machine_info, machine_line, matmul_peak,  # noqa: E402
                    setup_device)

TARGET_MFU_H100 = 0.50
TARGET_VS_REFERENCE = 1.5
# NVIDIA L4 datasheet: 121 TFLOP/s dense bf16 tensor throughput, 300 GB/s GDDR6.
L4_BF16_TFLOPS = 121.0
L4_GB_PER_S = 300.0


@dataclass
class Measured:
    impl: str  # arc-trm | reference
    kind: str  # train | infer
    mode: str  # eager | compile
    batch: int
    seconds_per_step: float
    samples_per_s: float
    tflops: float
    mfu: float
    warmup_seconds: float
    peak_memory_gb: float | None

    @property
    def memory_per_sample_mb(self) -> float | None:
        return None if self.peak_memory_gb is None else 1e3 * self.peak_memory_gb / self.batch


def model_config(args: argparse.Namespace, device: torch.device):
    from arc_trm.config import ModelConfig

    cuda = device.type == "cuda"
    pick = lambda given, gpu, cpu: given if given is not None else (gpu if cuda else cpu)  # noqa: E731
    canvas = pick(args.canvas, 30, 10)
    return ModelConfig(
        hidden_size=pick(args.hidden, 512, 128), num_heads=pick(args.heads, 8, 4), L_layers=args.layers,
        H_cycles=pick(args.T, 3, 2), L_cycles=pick(args.n, 4, 2), halt_max_steps=args.halt_max_steps,
        puzzle_emb_len=args.puzzle_emb_len, num_puzzle_ids=args.puzzle_ids, seq_len=canvas * canvas,
        mlp_t=args.mlp_t, forward_dtype=args.dtype or ("bfloat16" if cuda else "float32"),
    )


def random_batches(cfg, batch: int, count: int, device: torch.device, seed: int):
    """`count` batches of random tokens; PAD (0) labels are ignored, as in real padded canvases."""
    from arc_trm.model import Batch
    from augment.encoding import IGNORE_LABEL

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        inputs = torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), generator=g)
        labels = torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), generator=g)
        labels[labels == 0] = IGNORE_LABEL
        ids = torch.randint(1, cfg.num_puzzle_ids, (batch,), generator=g)
        out.append(Batch(inputs.to(torch.int32), labels, ids.to(torch.int32)).map(lambda t: t.to(device)))
    return out


# ----------------------------------------------------------------------------------------------
# Step functions: each returns a zero-argument callable that runs one step


def ours_train(cfg, batch: int, device: torch.device, compile: bool, seed: int,
               backend: str = "inductor") -> Callable[[], None]:
    from arc_trm.common import CompiledOrEager, Dist
    from arc_trm.model import TRM, draw_min_halt_steps
    from arc_trm.optim import AdamATan2, SparseSignSGD
    from arc_trm.step import Optimizers, StepSetup, train_step

    torch.manual_seed(seed)
    model = TRM(cfg).to(device).train()
    if compile:
        model.step = CompiledOrEager(model.step, backend=backend)  # as the loop does
    opts = Optimizers(AdamATan2(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1),
                      SparseSignSGD(model.puzzle_table, lr=1e-2, weight_decay=0.1))
    explore = torch.Generator().manual_seed(seed + 1)
    batches = random_batches(cfg, batch, 4, device, seed)
    d = Dist(device=device)
    state = {"carry": model.initial_carry(batches[0]), "i": 0}

    def step() -> None:
        b = batches[state["i"] % len(batches)]
        state["i"] += 1
        min_steps = draw_min_halt_steps(batch, cfg, explore).to(device, non_blocking=True)
        state["carry"] = train_step(model, state["carry"], b, min_steps, StepSetup(opts, d, batch)).carry

    step.model = model  # the suite reads model.step.failed (a compile that fell back to eager)
    return step


def ours_infer(cfg, batch: int, device: torch.device, compile: bool, seed: int) -> Callable[[], None]:
    from arc_trm.common import CompiledOrEager
    from arc_trm.model import TRM

    torch.manual_seed(seed)
    model = TRM(cfg).to(device).eval()
    if compile:
        model.step = CompiledOrEager(model.step)
    b = random_batches(cfg, batch, 1, device, seed)[0]
    state = {"carry": model.initial_carry(b)}

    @torch.no_grad()
    def step() -> None:
        out = model(state["carry"], b, use_q_halt=True)
        out.carry.halted = out.carry.halted & False  # keep every slot busy, as a full queue of views
        state["carry"] = out.carry

    return step


def reference_train(cfg, batch: int, device: torch.device, compile: bool, seed: int,
                    reference: Path, backend: str = "inductor") -> Callable[[], None]:
    """The reference's model + loss head and its train_batch body, on our random batches."""
    sys.path.insert(0, str(reference))
    from models.losses import ACTLossHead  # noqa: E402  (the reference checkout)
    from models.recursive_reasoning.trm import TinyRecursiveReasoningModel_ACTV1  # noqa: E402
    from models.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed  # noqa: E402

    from arc_trm.optim import AdamATan2

    ref_cfg = dict(batch_size=batch, seq_len=cfg.seq_len, puzzle_emb_ndim=cfg.hidden_size,
                   num_puzzle_identifiers=cfg.num_puzzle_ids, vocab_size=cfg.vocab_size, H_cycles=cfg.H_cycles,
                   L_cycles=cfg.L_cycles, H_layers=0, L_layers=cfg.L_layers, hidden_size=cfg.hidden_size,
                   expansion=cfg.expansion, num_heads=cfg.num_heads, pos_encodings=cfg.pos_encodings,
                   halt_max_steps=cfg.halt_max_steps, halt_exploration_prob=cfg.halt_exploration_prob,
                   forward_dtype=cfg.forward_dtype, mlp_t=cfg.mlp_t, puzzle_emb_len=cfg.puzzle_emb_len,
                   no_ACT_continue=cfg.no_ACT_continue, causal=False)
    torch.manual_seed(seed)
    with torch.device(device):
        model = ACTLossHead(TinyRecursiveReasoningModel_ACTV1(ref_cfg), loss_type="stablemax_cross_entropy")
        if compile:
            model = torch.compile(model, backend=backend)
    opts = [CastedSparseEmbeddingSignSGD_Distributed(model.model.puzzle_emb.buffers(), lr=1e-2, weight_decay=0.1,
                                                     world_size=1),
            AdamATan2(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)]
    batches = [{"inputs": b.inputs, "labels": b.labels, "puzzle_identifiers": b.puzzle_identifiers}
               for b in random_batches(cfg, batch, 4, device, seed)]
    with torch.device(device):
        state = {"carry": model.initial_carry(batches[0]), "i": 0}

    def step() -> None:
        b = batches[state["i"] % len(batches)]
        state["i"] += 1
        state["carry"], loss, _, _, _ = model(carry=state["carry"], batch=b, return_keys=[])
        ((1 / batch) * loss).backward()
        for opt in opts:
            opt.step()
            opt.zero_grad()

    return step


# ----------------------------------------------------------------------------------------------
# Timing


@dataclass
class Case:
    impl: str
    kind: str
    mode: str
    batch: int
    make: Callable[[], Callable[[], None]]
    flop_per_step: float


def measure(case: Case, device: torch.device, warmup: int, steps: int, peak_tflops: float) -> Measured:
    torch._dynamo.reset()  # each case compiles afresh (no dynamic-shape recompile from an earlier batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with Timer(device) as tw:
        step = case.make()
        for _ in range(warmup):
            step()
    with Timer(device) as t:
        for _ in range(steps):
            step()
    peak_mem = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    del step
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    sps = t.seconds / steps
    tflops = case.flop_per_step / sps / 1e12
    return Measured(case.impl, case.kind, case.mode, case.batch, sps, case.batch / sps, tflops,
                    tflops / peak_tflops, tw.seconds, peak_mem)


def sdpa_backends(cfg, device: torch.device) -> dict[str, str]:
    """Which fused attention kernels accept the model's attention shapes and dtype (CUDA only),
    and their time for one forward + backward at batch 16."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    B, H, L, hd = 16, cfg.num_heads, cfg.total_len, cfg.hidden_size // cfg.num_heads
    dtype = getattr(torch, cfg.forward_dtype)
    # The model's layout: (B, L, H, hd) transposed to (B, H, L, hd), not contiguous.
    q, k, v = (torch.randn(B, L, H, hd, device=device, dtype=dtype).transpose(1, 2).requires_grad_() for _ in range(3))
    report = {}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                    SDPBackend.MATH):
        try:
            with sdpa_kernel(backend):
                for _ in range(3):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v).sum().backward()
                with Timer(device) as t:
                    for _ in range(10):
                        torch.nn.functional.scaled_dot_product_attention(q, k, v).sum().backward()
            report[backend.name] = f"ok, {1e3 * t.seconds / 10:.2f} ms fwd+bwd"
        except RuntimeError as e:
            report[backend.name] = f"refused ({str(e).splitlines()[0][:80]})"
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arguments(ap)
    ap.add_argument("--batches", default=None, help="per-device batches, comma-separated (default: 128,256 CUDA; 32 CPU)")
    ap.add_argument("--modes", default="eager", help="eager, compile or both: eager,compile (default eager)")
    ap.add_argument("--kinds", default="train,infer", help="train, infer or both (default both)")
    ap.add_argument("--reference", type=Path, default=None,
                    help="a TinyRecursiveModels checkout (its models/ folder): also time the reference")
    ap.add_argument("--reference-batches", default=None, help="batches for the reference (default: --batches)")
    ap.add_argument("--hidden", type=int, default=None, help="hidden size (default: 512 on CUDA, 128 on CPU)")
    ap.add_argument("--heads", type=int, default=None, help="attention heads (default: 8 on CUDA, 4 on CPU)")
    ap.add_argument("--layers", type=int, default=2, help="blocks in the network (default 2)")
    ap.add_argument("--T", type=int, default=None, help="H_cycles (default: 3 on CUDA, 2 on CPU)")
    ap.add_argument("--n", type=int, default=None, help="L_cycles (default: 4 on CUDA, 2 on CPU)")
    ap.add_argument("--canvas", type=int, default=None, help="canvas side, seq_len = canvas^2 (default: 30 / 10)")
    ap.add_argument("--puzzle-emb-len", type=int, default=16, help="prefix positions (default 16)")
    ap.add_argument("--puzzle-ids", type=int, default=4096, help="rows of the puzzle table (default 4096)")
    ap.add_argument("--halt-max-steps", type=int, default=16)
    ap.add_argument("--mlp-t", action="store_true", help="the MLP-over-sequence variant instead of attention")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                    help="forward dtype (default: bfloat16 on CUDA, float32 on CPU)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on CUDA, 5 on CPU)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up steps, compilation included (default 3)")
    args = ap.parse_args()

    device, threads = setup_device(args)
    cuda = device.type == "cuda"
    from arc_trm.flops import count_parameters, flops_per_step
    from arc_trm.model import TRM

    cfg = model_config(args, device)
    info = machine_info(device)
    print(machine_line(info), flush=True)
    peak_dtype = torch.bfloat16 if cuda and cfg.forward_dtype == "bfloat16" else torch.float32
    peak = matmul_peak(device, peak_dtype, 8192 if cuda else 2048, repeats=10 if cuda else 5)
    print(f"measured matmul peak: {peak.dtype} {peak.size}^3 -> {peak.tflops:.1f} TFLOP/s", flush=True)
    bandwidth = copy_bandwidth(device)
    print(f"measured copy bandwidth: {bandwidth.gb_per_s:.1f} GB/s (read + written)", flush=True)
    with torch.device("meta"):
        params = count_parameters(TRM(cfg))
    print(f"model: hidden {cfg.hidden_size}, {cfg.num_heads} heads, T={cfg.H_cycles}, n={cfg.L_cycles}, "
          f"L={cfg.total_len}, {cfg.forward_dtype}, {params:,} parameters", flush=True)
    backends = sdpa_backends(cfg, device) if cuda else {}
    for name, verdict in backends.items():
        print(f"sdpa {name}: {verdict}", flush=True)

    batches = [int(b) for b in (args.batches or ("128,256" if cuda else "32")).split(",")]
    ref_batches = [int(b) for b in args.reference_batches.split(",")] if args.reference_batches else batches
    modes = args.modes.split(",")
    kinds = args.kinds.split(",")
    cases: list[Case] = []
    for b in sorted(set(batches) | set(ref_batches if args.reference else []), reverse=True):  # largest first
        for mode in modes:
            compile = mode == "compile"
            if "train" in kinds and b in batches:
                cases.append(Case("arc-trm", "train", mode, b, lambda b=b, c=compile: ours_train(cfg, b, device, c, args.seed),
                                  flops_per_step(cfg, b, training=True).total))
            if args.reference is not None and b in ref_batches:
                cases.append(Case("reference", "train", mode, b,
                                  lambda b=b, c=compile: reference_train(cfg, b, device, c, args.seed, args.reference),
                                  flops_per_step(cfg, b, training=True).total))
            if "infer" in kinds and b in batches:
                cases.append(Case("arc-trm", "infer", mode, b, lambda b=b, c=compile: ours_infer(cfg, b, device, c, args.seed),
                                  flops_per_step(cfg, b, training=False).total))
    steps = args.steps or (20 if cuda else 5)
    results = []
    for case in cases:
        try:
            m = measure(case, device, args.warmup, steps, peak.tflops)
        except torch.OutOfMemoryError:
            gc.collect()
            torch.cuda.empty_cache()
            print(f"[{case.impl} {case.kind} {case.mode} batch {case.batch}] out of memory", flush=True)
            continue
        results.append(m)
        mem = f", {m.peak_memory_gb:.1f} GB peak ({m.memory_per_sample_mb:.0f} MB/sample)" if m.peak_memory_gb else ""
        print(f"[{m.impl} {m.kind} {m.mode} batch {m.batch}] {1e3 * m.seconds_per_step:.1f} ms/step, "
              f"{m.samples_per_s:,.0f} samples/s, {m.tflops:.1f} TFLOP/s, MFU {100 * m.mfu:.1f}%{mem}, "
              f"warm-up {m.warmup_seconds:.1f} s", flush=True)

    print(f"\ndevice {info['device']}, torch {torch.__version__}, peak {peak.tflops:.1f} TFLOP/s measured")
    print("| impl | step | mode | batch | ms/step | samples/s | TFLOP/s | MFU | peak GB | MB/sample | warm-up s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m in results:
        mem = f"{m.peak_memory_gb:.1f} | {m.memory_per_sample_mb:.0f}" if m.peak_memory_gb else "- | -"
        print(f"| {m.impl} | {m.kind} | {m.mode} | {m.batch} | {1e3 * m.seconds_per_step:.1f} | {m.samples_per_s:,.0f} "
              f"| {m.tflops:.1f} | {100 * m.mfu:.1f}% | {mem} | {m.warmup_seconds:.1f} |")
    print(f"\nan L4 (datasheet {L4_BF16_TFLOPS:.0f} TFLOP/s bf16, {L4_GB_PER_S:.0f} GB/s), scaled from this device "
          f"({peak.tflops:.2f} TFLOP/s, {bandwidth.gb_per_s:.1f} GB/s measured): s/step x measured/L4")
    print("| impl | step | mode | batch | here s/step | L4 if compute-bound | L4 if memory-bound |")
    print("|---|---|---|---|---|---|---|")
    for m in results:
        compute = m.seconds_per_step * peak.tflops / L4_BF16_TFLOPS
        memory = m.seconds_per_step * bandwidth.gb_per_s / L4_GB_PER_S
        print(f"| {m.impl} | {m.kind} | {m.mode} | {m.batch} | {m.seconds_per_step:.4g} | {compute:.4g} | {memory:.4g} |")
    by_key = {(m.impl, m.kind, m.mode, m.batch): m for m in results}
    for m in results:
        if m.impl == "arc-trm" and m.kind == "train":
            eager = by_key.get(("arc-trm", "train", "eager", m.batch))
            if m.mode == "compile" and eager:
                print(f"batch {m.batch}: compile vs eager {eager.seconds_per_step / m.seconds_per_step:.2f}x")
            best_ref = min((r for r in results if r.impl == "reference" and r.batch == m.batch),
                           key=lambda r: r.seconds_per_step, default=None)
            if best_ref is not None:
                ratio = best_ref.seconds_per_step / m.seconds_per_step
                print(f"batch {m.batch}: arc-trm {m.mode} vs the reference's best ({best_ref.mode}): {ratio:.2f}x "
                      f"samples/s (target >= {TARGET_VS_REFERENCE}x)")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "threads": threads, "config": cfg.to_dict(), "parameters": params,
            "peak": peak.to_dict(), "bandwidth": bandwidth.to_dict(), "sdpa": backends, "results": [asdict(m) for m in results],
            "targets": {"mfu_h100": TARGET_MFU_H100, "vs_reference": TARGET_VS_REFERENCE},
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
