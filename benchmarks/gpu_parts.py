"""The timing parts of benchmarks/gpu_suite.py (device, train_step, bucketing, numerics; the others
are in gpu_learning.py), one function per part, each run in its own process.

A part fills a `Recorder` as it goes (every `put` rewrites its file atomically), so a part that
is stopped at its cap still returns what it measured. `--tiny` changes sizes only (`sizes`); every
part runs the same code on a CPU as on a GPU, except `oom`, which needs CUDA memory to exhaust.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median

import torch

from augment.files import write_json_atomic
from common import copy_bandwidth, device_name, matmul_peak, synchronize  # benchmarks/ is on sys.path
from train_step import ours_train, reference_train, sdpa_backends

# ----------------------------------------------------------------------------------------------
# Sizes: the paper config on a GPU, a tiny one with --tiny (the same code paths)


@dataclass(frozen=True)
class Sizes:
    model: object  # arc_trm.config.ModelConfig of the timed model
    batches: tuple[int, ...]  # train_step batch sizes
    warmup: int  # steps before timing (compilation happens in the first)
    repeats: int  # timed repeats; the median is reported
    inner: int  # steps per timed repeat
    peak_size: int  # matmul side of the peak measurement
    copy_mb: int
    bucket_tasks: str  # the task set whose examples weight the bucket sides
    numerics_batch: int
    learn_preset: str
    learn_overrides: tuple[str, ...]
    learn_train_s: float  # training seconds of the learning run (less when the cap is short)
    learn_steps: int  # at most this many steps (the deadline ends the GPU run first)
    bucket_batch: int
    slots: int  # views in flight at inference
    infer_repeats: int
    oom_batch: int  # a global batch far beyond the device's memory


def sizes(device: torch.device, tiny: bool) -> Sizes:
    from arc_trm.config import ModelConfig

    gpu = device.type == "cuda"
    dtype = "bfloat16" if gpu else "float32"  # bf16 matmuls on a CPU are emulated and slow
    if tiny:
        model = ModelConfig(hidden_size=32, num_heads=2, H_cycles=2, L_cycles=1, halt_max_steps=3, puzzle_emb_len=2,
                            num_puzzle_ids=64, seq_len=36, forward_dtype=dtype)
        learn = ("model.hidden_size=32", "model.num_heads=2", "model.H_cycles=2", "model.L_cycles=1",
                 "model.halt_max_steps=3", "model.puzzle_emb_len=2", "data.canvas=8", "data.augmentations=2",
                 "train.global_batch_size=8", "train.lr_warmup_steps=2", "train.log_every=1")
        return Sizes(model, (4, 8), 1, 2, 1, 128, 4, "arc-agi-1:training/3c9b0459+6150a2bd+74dd1130", 4,
                     "cpu-quick", learn, 60.0, 12, 4, 4, 1, 64)
    # The paper's ARC config (hidden 512, 8 heads, 2 layers, T=3, n=4, 16 + 900 positions).
    model = ModelConfig(num_puzzle_ids=4096, forward_dtype=dtype)
    # The Kaggle preset (the paper model, batch 256) on the main job's 8 x 8 canvas; eager, so
    # that the seconds go to learning rather than to compiling.
    learn = ("data.canvas=8", "data.augmentations=64", "train.log_every=20")
    return Sizes(model, (128, 256), 2, 5, 2, 8192, 1024, "arc-agi-2", 16, "kaggle", learn, 75.0, 1_000_000, 256, 256, 2,
                 8192)


# ----------------------------------------------------------------------------------------------
# What every part gets


@dataclass
class Recorder:
    """A part's record, rewritten atomically to `path` on every put."""

    path: Path
    data: dict = field(default_factory=dict)

    def put(self, **values) -> None:
        self.data.update(values)
        write_json_atomic(self.path, self.data, indent=1)

    def add(self, key: str, item) -> None:
        self.data.setdefault(key, []).append(item)
        self.put()


@dataclass
class Context:
    device: torch.device
    tiny: bool
    sizes: Sizes
    work: Path  # scratch folder shared by the parts of one suite run (the learned checkpoint)
    cap_s: float
    reference: Path | None = None
    peak_tflops: float | None = None  # from the device part; measured again when absent
    learn_set: tuple[str, ...] = ()
    started: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.cap_s - (time.perf_counter() - self.started)


# ----------------------------------------------------------------------------------------------
# Timing


@dataclass
class StepTiming:
    first_s: float  # the first call: compilation, if any, happens here
    warmup_s: float  # the first call and the other warm-up calls
    median_s: float  # per step, median of the repeats
    spread: float  # (slowest - fastest) / median of the repeats
    repeats: int


def time_steps(step, device: torch.device, warmup: int, repeats: int, inner: int) -> StepTiming:
    """Warm up, then `repeats` timings of `inner` back-to-back steps: CUDA events on a GPU (the
    device's own clock), perf_counter after a synchronisation elsewhere."""
    synchronize(device)
    t0 = time.perf_counter()
    step()
    synchronize(device)
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        step()
    synchronize(device)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / inner)
        else:
            t = time.perf_counter()
            for _ in range(inner):
                step()
            times.append((time.perf_counter() - t) / inner)
    mid = median(times)
    return StepTiming(first, warm, mid, (max(times) - min(times)) / mid, repeats)


def fresh_device(device: torch.device) -> None:
    """Forget compiled graphs and peak-memory counts between cases."""
    import gc

    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def compile_backend(device: torch.device) -> str:
    # Inductor on a GPU (what users run); on a CPU dynamo still traces the step, but generating
    # C++ would cost minutes on the test machine.
    return "inductor" if device.type == "cuda" else "eager"


# ----------------------------------------------------------------------------------------------
# device


def part_device(ctx: Context, rec: Recorder) -> None:
    import platform

    d = ctx.device
    rec.put(name=device_name(d), torch=torch.__version__, cuda=torch.version.cuda, python=platform.python_version())
    if d.type == "cuda":
        props = torch.cuda.get_device_properties(d)
        rec.put(capability=f"{props.major}.{props.minor}", memory_gb=round(props.total_memory / 1e9, 1),
                multiprocessors=props.multi_processor_count)
    dtype = getattr(torch, ctx.sizes.model.forward_dtype)
    peak = matmul_peak(d, dtype, ctx.sizes.peak_size, repeats=10)
    rec.put(matmul_peak=peak.to_dict(), matmul_peak_tflops=peak.tflops)
    rec.put(copy_bandwidth=copy_bandwidth(d, ctx.sizes.copy_mb).to_dict())
    rec.put(sdpa_backends=sdpa_backends(ctx.sizes.model, d))


# ----------------------------------------------------------------------------------------------
# train_step


def reference_problem(path: Path | None) -> str | None:
    """Why the reference cannot run here, or None when its model imports."""
    if path is None:
        return "skipped: no reference checkout given (--reference PATH)"
    if not (path / "models").is_dir():
        return f"skipped: {path} holds no models/ folder"
    sys.path.insert(0, str(path))
    try:
        import models.losses  # noqa: F401
        import models.recursive_reasoning.trm  # noqa: F401
        import models.sparse_embedding  # noqa: F401  (the puzzle table the reference trains)
    except Exception as e:  # its code and its dependencies (pydantic, einops) are not ours to vouch for
        return f"skipped: {type(e).__name__}: {e}"
    return None


def peak_tflops(ctx: Context) -> float:
    if ctx.peak_tflops is None:
        ctx.peak_tflops = matmul_peak(ctx.device, getattr(torch, ctx.sizes.model.forward_dtype),
                                      ctx.sizes.peak_size, repeats=10).tflops
    return ctx.peak_tflops


def run_case(ctx: Context, impl: str, mode: str, batch: int) -> dict:
    """One training-step case: samples/s, MFU, memory per sample, compile time."""
    from arc_trm.flops import flops_per_step

    cfg, d, s = ctx.sizes.model, ctx.device, ctx.sizes
    compile, backend = mode == "compile", compile_backend(d)
    fresh_device(d)
    if impl == "arc-trm":
        step = ours_train(cfg, batch, d, compile, 0, backend=backend)
    else:
        step = reference_train(cfg, batch, d, compile, 0, ctx.reference, backend=backend)
    t = time_steps(step, d, s.warmup, s.repeats, s.inner)
    flop = flops_per_step(cfg, batch, training=True).total
    tflops = flop / t.median_s / 1e12
    mem = peak_memory_gb(d)
    compiled = getattr(getattr(step, "model", None), "step", None)
    out = {"impl": impl, "mode": mode, "batch": batch, "backend": backend if compile else None,
           "ms_per_step": 1e3 * t.median_s, "samples_per_s": batch / t.median_s, "tflops": tflops,
           "mfu": tflops / peak_tflops(ctx), "first_step_s": t.first_s, "spread": t.spread,
           "peak_memory_gb": mem, "memory_per_sample_mb": None if mem is None else 1e3 * mem / batch,
           "compile_fell_back": bool(getattr(compiled, "failed", False))}
    del step
    fresh_device(d)
    return out


def part_train_step(ctx: Context, rec: Recorder) -> None:
    """Eager and compiled steps at two batches, the most telling cases first: a case whose
    compilation would not fit in what is left of the cap is recorded as skipped."""
    from arc_trm.flops import count_parameters
    from arc_trm.model import TRM

    cfg = ctx.sizes.model
    with torch.device("meta"):
        params = count_parameters(TRM(cfg))
    ref_problem = reference_problem(ctx.reference)
    rec.put(config=cfg.to_dict(), parameters=params, peak_tflops=peak_tflops(ctx), reference=ref_problem or "ran",
            cases=[])
    small, large = sorted(ctx.sizes.batches)
    plan = [("arc-trm", "eager", large), ("arc-trm", "compile", large), ("reference", "compile", large),
            ("arc-trm", "eager", small), ("reference", "eager", large), ("arc-trm", "compile", small),
            ("reference", "compile", small)]
    compile_s = 0.0  # the longest first step seen: what the next compiled case is expected to cost
    for impl, mode, batch in plan:
        if impl == "reference" and ref_problem:
            continue
        expected = 1.3 * compile_s + 5 if mode == "compile" else 0.0
        if ctx.left() < expected:
            rec.add("cases", {"impl": impl, "mode": mode, "batch": batch,
                              "skipped": f"{ctx.left():.0f} s left of the cap, compiling took {compile_s:.0f} s"})
            continue
        try:
            case = run_case(ctx, impl, mode, batch)
        except torch.OutOfMemoryError:
            fresh_device(ctx.device)
            case = {"impl": impl, "mode": mode, "batch": batch, "error": "out of memory"}
        except Exception as e:  # one case's failure (the reference under this torch, say) is a result too
            fresh_device(ctx.device)
            case = {"impl": impl, "mode": mode, "batch": batch, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        if mode == "compile" and "first_step_s" in case:
            compile_s = max(compile_s, case["first_step_s"])
        rec.add("cases", case)
    ratios = speedups(rec.data["cases"])
    rec.put(**ratios)


def speedups(cases: list[dict]) -> dict:
    """compile over eager and arc-trm over the reference's best, per batch."""
    done = {(c["impl"], c["mode"], c["batch"]): c["samples_per_s"] for c in cases if "samples_per_s" in c}
    out: dict[str, dict] = {"compile_vs_eager": {}, "vs_reference": {}}
    for (impl, mode, batch), sps in done.items():
        if impl != "arc-trm":
            continue
        if mode == "compile" and ("arc-trm", "eager", batch) in done:
            out["compile_vs_eager"][str(batch)] = sps / done[("arc-trm", "eager", batch)]
        ref = max((v for (i, _, b), v in done.items() if i == "reference" and b == batch), default=None)
        if ref and sps / ref > out["vs_reference"].get(str(batch), 0.0):
            out["vs_reference"][str(batch)] = sps / ref
    return out


# ----------------------------------------------------------------------------------------------
# bucketing


def part_bucketing(ctx: Context, rec: Recorder) -> None:
    """Wall time per training sample, each bucket side weighted by its examples, against every
    sample on the full canvas. Eager steps: a compile per side would not fit in the cap."""
    from arc_trm.flops import flops_per_step
    from bucketing import examples_per_bucket

    cfg, d, s = ctx.sizes.model, ctx.device, ctx.sizes
    counts = examples_per_bucket(s.bucket_tasks, 1)  # the buckets do not depend on the augmentations
    total = sum(counts.values())
    full = flops_per_step(cfg, 1, length=900).total
    flop_bucketed = sum(n * flops_per_step(cfg, 1, length=side * side).total for side, n in counts.items()) / total
    rec.put(tasks=s.bucket_tasks, examples={str(k): v for k, v in counts.items()}, flop_ratio=full / flop_bucketed,
            mode="eager", batch=s.bucket_batch, seconds_per_step={})
    batch = s.bucket_batch
    seconds = {}
    for side in sorted(set(counts) | {30}):
        fresh_device(d)
        step = ours_train(replace(cfg, seq_len=side * side), batch, d, False, 0)
        seconds[side] = time_steps(step, d, 2, 3, 1).median_s  # five steps per side: eager runs no compile
        del step
        rec.put(seconds_per_step={str(k): v for k, v in seconds.items()})
    fixed = seconds[30] / batch
    bucketed = sum(n * seconds[side] for side, n in counts.items()) / total / batch
    rec.put(ms_per_sample_fixed=1e3 * fixed, ms_per_sample_bucketed=1e3 * bucketed, time_ratio=fixed / bucketed)


# ----------------------------------------------------------------------------------------------
# numerics


def attention_ops(fn) -> list[str]:
    """The aten attention ops that one call of `fn` ran (the SDPA backend torch chose)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sorted({e.key for e in prof.key_averages() if "attention" in e.key and e.key.startswith("aten::_")})


def part_numerics(ctx: Context, rec: Recorder) -> None:
    """One eval-mode supervision step of the same weights on the same batch in float32 and bfloat16."""
    from arc_trm.loss import compute_loss
    from arc_trm.model import TRM
    from train_step import random_batches

    d = ctx.device
    cfg32 = replace(ctx.sizes.model, forward_dtype="float32")
    cfg16 = replace(ctx.sizes.model, forward_dtype="bfloat16")
    torch.manual_seed(0)
    m32 = TRM(cfg32).to(d).eval()
    m16 = TRM(cfg16).to(d).eval()
    m16.load_state_dict(m32.state_dict())
    batch = random_batches(cfg32, ctx.sizes.numerics_batch, 1, d, 0)[0]

    @torch.no_grad()
    def forward(model):
        out = model(model.initial_carry(batch), batch)
        return out.logits.float(), compute_loss(out).loss.float()

    l32, loss32 = forward(m32)
    l16, loss16 = forward(m16)
    diff = (l16 - l32).abs()
    rec.put(batch=ctx.sizes.numerics_batch, float32_matmul_precision=torch.get_float32_matmul_precision(),
            logits_max_rel=float(diff.max() / l32.abs().max()), logits_mean_rel=float(diff.mean() / l32.abs().mean()),
            logits_norm_rel=float(torch.linalg.vector_norm(l16 - l32) / torch.linalg.vector_norm(l32)),
            loss_fp32=float(loss32), loss_bf16=float(loss16), loss_rel=float((loss16 - loss32).abs() / loss32.abs()),
            argmax_agreement=float((l16.argmax(-1) == l32.argmax(-1)).float().mean()))
    ops = attention_ops(lambda: forward(m16))
    rec.put(sdpa_ops=ops, sdpa_backend=backend_name(ops))


def backend_name(ops: list[str]) -> str:
    names = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
             "math": "MATH"}
    found = [name for key, name in names.items() if any(key in op for op in ops)]
    return ", ".join(found) or "none seen"


PARTS = {"device": part_device, "train_step": part_train_step, "bucketing": part_bucketing, "numerics": part_numerics}
