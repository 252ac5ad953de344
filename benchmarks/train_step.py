"""Benchmark: TRM training-step throughput (samples/s), achieved TFLOP/s and MFU.

One timed step is one full step of the training loop (arc_trm/train.py): one supervision step
with the carry (reset of halted rows, T cycles of which the last is backpropagated), compute_loss,
backward of loss / batch, an AdamATan2 step on the weights, a sparse sign-SGD step on the touched
puzzle-table rows, zero_grad. (The loop's EMA update and logging are not included.) Batches are
random tokens, fresh each step, already on the device: this measures the model, not the loader.

FLOPs are counted analytically (arc_trm.model.flops_per_step: matmul FLOPs, forward and backward).
MFU is achieved FLOP/s over a matmul peak MEASURED IN THE SAME RUN: a bf16 8192^3 matmul timed
with CUDA events on a GPU, a float32 2048^3 matmul on a CPU (a CPU "MFU" against that).

Defaults
  CUDA: the paper's ARC config (hidden 512, 8 heads, 2 layers, T=3, n=4, canvas 30 -> 916
        positions), bf16 forward, batch 768 per GPU; if 768 does not fit in memory and --batch was
        not given, the batch is halved until it does. Eager autograd saves about 0.23 GB of
        activations per sample at this config (measured on CPU with saved_tensors_hooks, bf16), so
        768 needs ~175 GB and ~192-256 is what fits in an 80 GB H100 (the reference's global 768
        on 4 GPUs is 192 per GPU).
  CPU:  a reduced model (hidden 128, 4 heads, T=2, n=2, canvas 10, batch 32), float32.
  Every size is a flag.

    python benchmarks/train_step.py                       # CPU here, reduced size
    python benchmarks/train_step.py --compile             # eager and torch.compile, same run
    python benchmarks/train_step.py --device cuda --compile --json out.json   # on an H100
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import Timer, add_device_arguments, machine_info, machine_line, matmul_peak, setup_device  # noqa: E402

TARGET_MFU_H100 = 0.50


@dataclass
class Measured:
    mode: str
    batch: int
    warmup_steps: int
    steps: int
    seconds_per_step: float
    samples_per_s: float
    tflops: float
    mfu: float
    warmup_seconds: float
    peak_memory_gb: float | None


def model_config(args: argparse.Namespace, device: torch.device):
    from arc_trm.config import ModelConfig

    cuda = device.type == "cuda"
    pick = lambda given, gpu, cpu: given if given is not None else (gpu if cuda else cpu)  # noqa: E731
    canvas = pick(args.canvas, 30, 10)
    return ModelConfig(
        hidden_size=pick(args.hidden, 512, 128),
        num_heads=pick(args.heads, 8, 4),
        L_layers=args.layers,
        H_cycles=pick(args.T, 3, 2),
        L_cycles=pick(args.n, 4, 2),
        halt_max_steps=args.halt_max_steps,
        puzzle_emb_len=args.puzzle_emb_len,
        num_puzzle_ids=args.puzzle_ids,
        seq_len=canvas * canvas,
        mlp_t=args.mlp_t,
        forward_dtype=args.dtype or ("bfloat16" if cuda else "float32"),
    )


def random_batches(cfg, batch: int, count: int, device: torch.device, seed: int):
    """`count` distinct batches of random tokens (grid colours 2..11, some PAD=0 positions
    ignored in the labels, as real padded canvases), already on the device."""
    from arc_trm.model import IGNORE_LABEL, Batch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        inputs = torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), generator=g)
        labels = torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), generator=g)
        labels[labels == 0] = IGNORE_LABEL
        ids = torch.randint(1, cfg.num_puzzle_ids, (batch,), generator=g)
        out.append(Batch(inputs.to(torch.int32).to(device), labels.to(device), ids.to(torch.int32).to(device)))
    return out


def measure(cfg, batch: int, device: torch.device, *, compile: bool, warmup: int, steps: int,
            flop_per_step: float, peak_tflops: float, seed: int, compile_mode: str | None = None) -> Measured:
    """Build a fresh model and optimisers, warm up, then time `steps` training steps."""
    from arc_trm.model import TRM, compute_loss, draw_min_halt_steps
    from arc_trm.optim import AdamATan2, SparseSignSGD

    torch.manual_seed(seed)
    model = TRM(cfg).to(device)
    model.train()
    if compile:
        model.step = torch.compile(model.step, mode=compile_mode)  # as the loop does with train.compile
    opt = AdamATan2(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    emb_opt = SparseSignSGD(model.puzzle_table, lr=1e-2, weight_decay=0.1)
    explore = torch.Generator().manual_seed(seed + 1)
    batches = random_batches(cfg, batch, 4, device, seed)
    state = {"carry": None, "i": 0}

    def one_step() -> None:
        b = batches[state["i"] % len(batches)]
        state["i"] += 1
        if state["carry"] is None:
            state["carry"] = model.initial_carry(b)
        min_steps = draw_min_halt_steps(batch, cfg, explore)
        out = model(state["carry"], b, min_halt_steps=min_steps)
        result = compute_loss(out)
        (result.loss / batch).backward()
        opt.step()
        emb_opt.step(out.carry.current.puzzle_identifiers, out.puzzle_rows.grad)
        opt.zero_grad(set_to_none=True)
        state["carry"] = out.carry

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with Timer(device) as tw:
        for _ in range(warmup):
            one_step()
    with Timer(device) as t:
        for _ in range(steps):
            one_step()
    peak_mem = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    sps = t.seconds / steps
    tflops = flop_per_step / sps / 1e12
    del model, opt, emb_opt, batches, state
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Measured("compile" if compile else "eager", batch, warmup, steps, sps, batch / sps, tflops,
                    tflops / peak_tflops, tw.seconds, peak_mem)


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arguments(ap)
    ap.add_argument("--batch", type=int, default=None, help="per-device batch (default: 768 on CUDA, 32 on CPU)")
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
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on CUDA, 10 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: 3, 5 with --compile)")
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile(model.step); ratio vs eager")
    ap.add_argument("--compile-mode", default=None,
                    help="torch.compile mode, e.g. max-autotune (default: torch's default, as the training loop)")
    ap.add_argument("--compile-only", action="store_true", help="with --compile: skip the eager measurement")
    ap.add_argument("--peak-size", type=int, default=None, help="matmul side for the peak (default: 8192 CUDA, 2048 CPU)")
    args = ap.parse_args()

    device, threads = setup_device(args)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 runs (--dtype float32) use TF32 as usual
        torch.backends.cudnn.allow_tf32 = True
    from arc_trm.model import TRM, count_parameters, flops_per_step

    cfg = model_config(args, device)
    info = machine_info(device)
    print(machine_line(info), flush=True)

    # Measured matmul peak in the forward's dtype (bf16 on GPU; float32 on CPU).
    peak_dtype = torch.bfloat16 if cuda and cfg.forward_dtype == "bfloat16" else torch.float32
    peak_size = args.peak_size or (8192 if cuda else 2048)
    peak = matmul_peak(device, peak_dtype, peak_size, repeats=10 if cuda else 5)
    print(f"measured matmul peak: {peak.dtype} {peak.size}^3 in {peak.seconds * 1e3:.2f} ms -> "
          f"{peak.tflops:.2f} TFLOP/s", flush=True)

    with torch.device("meta"):
        params = count_parameters(TRM(cfg))
    print(f"model: hidden {cfg.hidden_size}, {cfg.num_heads} heads, {cfg.L_layers} layers, T={cfg.H_cycles}, "
          f"n={cfg.L_cycles}, seq {cfg.seq_len}+{cfg.puzzle_emb_len} = {cfg.total_len}, "
          f"{'mlp_t' if cfg.mlp_t else 'attention'}, forward {cfg.forward_dtype}, {params:,} parameters, "
          f"{cfg.num_puzzle_ids:,} puzzle rows", flush=True)

    steps = args.steps or (20 if cuda else 10)
    modes = ([] if args.compile and args.compile_only else [False]) + ([True] if args.compile else [])
    batch = args.batch or (768 if cuda else 32)
    results: list[Measured] = []
    notes: list[str] = []
    for compile in modes:
        warmup = args.warmup if args.warmup is not None else (5 if compile else 3)
        while True:
            flops = flops_per_step(cfg, batch, training=True)
            oom = False
            try:
                m = measure(cfg, batch, device, compile=compile, warmup=warmup, steps=steps,
                            flop_per_step=flops.total, peak_tflops=peak.tflops, seed=args.seed,
                            compile_mode=args.compile_mode)
            except RuntimeError as e:  # torch.OutOfMemoryError is a RuntimeError
                if not (cuda and is_oom(e)) or args.batch is not None or batch <= 1:
                    raise
                oom = True
            if not oom:
                break
            # Outside the except block, so the traceback no longer pins the failed step's tensors.
            gc.collect()
            torch.cuda.empty_cache()
            notes.append(f"batch {batch} ran out of GPU memory ({'compile' if compile else 'eager'}); halved")
            print(f"note: {notes[-1]}", flush=True)
            batch //= 2
        results.append(m)
        mem = f", peak memory {m.peak_memory_gb:.1f} GB" if m.peak_memory_gb is not None else ""
        print(f"[{m.mode}] batch {m.batch}: {m.seconds_per_step:.4f} s/step, {m.samples_per_s:,.1f} samples/s, "
              f"{m.tflops:.3f} TFLOP/s, MFU {100 * m.mfu:.1f}% (warm-up {m.warmup_steps} steps "
              f"{m.warmup_seconds:.1f} s{mem})", flush=True)

    flops = flops_per_step(cfg, results[-1].batch, training=True)
    print()
    print(f"device       {info['device']} ({threads} CPU threads, load average {info['loadavg_1_5_15'][0]:.2f} "
          f"at start, {machine_info(device)['loadavg_1_5_15'][0]:.2f} at end)")
    print(f"config       hidden {cfg.hidden_size}, heads {cfg.num_heads}, T={cfg.H_cycles}, n={cfg.L_cycles}, "
          f"L={cfg.total_len}, batch {results[-1].batch}, forward {cfg.forward_dtype}")
    print(f"parameters   {params:,}")
    print(f"FLOPs/step   {flops.total:.4g} (forward {flops.forward:.4g}, backward {flops.backward:.4g}) "
          f"at batch {results[-1].batch}")
    print(f"peak         {peak.tflops:.2f} TFLOP/s measured ({peak.dtype} {peak.size}^3 matmul)")
    for m in results:
        print(f"{m.mode:<12} {m.seconds_per_step:.4f} s/step, {m.samples_per_s:,.1f} samples/s, "
              f"{m.tflops:.3f} TFLOP/s, MFU {100 * m.mfu:.1f}%")
    ratio = None
    if len(results) == 2 and results[0].batch == results[1].batch:
        ratio = results[0].seconds_per_step / results[1].seconds_per_step
        print(f"compile vs eager: {ratio:.2f}x the samples/s")
    best = max(results, key=lambda m: m.mfu)
    target_line = (f"target: MFU >= {100 * TARGET_MFU_H100:.0f}% on an H100 (bf16, paper config); ")
    if cuda and "H100" in info["device"]:
        target_line += f"measured {100 * best.mfu:.1f}% ({best.mode}): {'MET' if best.mfu >= TARGET_MFU_H100 else 'MISSED'}"
    else:
        target_line += "not applicable on this device (run with --device cuda --compile on an H100)"
    print(target_line)

    if args.json:
        res = {
            "machine": info, "loadavg_end": machine_info(device)["loadavg_1_5_15"], "threads": threads,
            "config": cfg.to_dict(), "parameters": params,
            "flops_per_step": {"forward": flops.forward, "backward": flops.backward, "total": flops.total,
                               "batch": results[-1].batch},
            "peak": peak.to_dict(), "results": [m.__dict__ for m in results], "compile_vs_eager": ratio,
            "target_mfu": TARGET_MFU_H100, "notes": notes,
        }
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
