"""GPU evidence in one call: every measurement a lent GPU is wanted for, under 5 minutes of wall time.

    python benchmarks/gpu_suite.py [--device cuda|cpu] [--tiny] --out DIR [--reference PATH]

writes DIR/gpu_suite.json, DIR/gpu_suite.md (a table per part) and DIR/gpu_suite.log (every
part's output). The JSON holds `suite` (how it ran) and one entry per part:

  device      the device, a bf16 matmul peak and copy bandwidth measured in this run, the SDPA
              backends that accept the model's attention
  train_step  the paper config's training step (arc_trm.step.train_step), eager and compiled, at
              two batches: samples/s, MFU against the measured peak, peak memory per sample, the
              first step's seconds (compilation); the reference's model + loss head on the same
              batches when --reference names a checkout that imports (else "skipped: why")
  bucketing   wall time per training sample, length-bucketed against the fixed 30 x 30 canvas
  numerics    bfloat16 against float32 logits and loss, same weights and batch; the SDPA backend
  learning    the main job's 16 tasks (scripts/main_job.sh) trained for ~75 s at a GPU preset
              (kaggle: the paper model), its loss curve and held-out pass@1/2 with Wilson intervals
  inference   views/s with halting against every view run to the step cap, on that model
  oom         `arc-trm train` with a batch far beyond memory ends in one line naming
              train.grad_accum_steps (a CPU run records "not applicable")

Each part runs in its own process under its own time cap (a part that fails or runs over is
recorded with its error line and the others still run); the files are rewritten after each part,
so a run cut short returns what it measured. --tiny shrinks the sizes, never the code paths: the
CPU test runs `--device cpu --tiny`. The caps and the total budget are in CAPS and --budget.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from augment.files import write_json_atomic, write_text_atomic  # noqa: E402

PART_NAMES = ("device", "train_step", "bucketing", "numerics", "learning", "inference", "oom")
# The cheap and the must-have parts first; inference needs the learning part's model.
RUN_ORDER = ("device", "oom", "numerics", "bucketing", "train_step", "learning", "inference")
# Seconds per part on the GPU, sized from the H200 runs of 2026-12-04 (benchmarks/gpu/): device 8 s,
# oom 21, numerics 12, bucketing 25, inference 38 with two repeats. Compiling the paper config
# (35-47 s a case) dominates train_step: its cases run in order of interest, and a compile that
# would not fit in what is left is skipped. The learning run trains until 15 s before its cap.
# They sum to 325 s: --budget (295 s) trims the last part, and the run stays under 5 minutes.
CAPS = {"device": 20, "oom": 30, "numerics": 15, "bucketing": 25, "train_step": 125, "learning": 70, "inference": 40}
# --tiny: generous, for a loaded 2-core test machine (a tiny part runs in a few seconds).
TINY_CAPS = {name: 120 for name in PART_NAMES}
GPU_BUDGET_S = 295.0
TINY_BUDGET_S = 600.0
MIN_CAP_S = 5.0  # a part with less than this left of the budget is skipped


def parse_pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in PART_NAMES:
            raise SystemExit(f"{what} {item!r}: expected PART=VALUE with PART one of {', '.join(PART_NAMES)}")
        out[name] = value
    return out


def arguments() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                    help="auto = cuda when torch sees one (default auto)")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes, the same code paths (the CPU test)")
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_suite.json, .md and .log")
    ap.add_argument("--reference", type=Path, default=None,
                    help="a TinyRecursiveModels checkout (its models/ folder) to time beside arc-trm (default: none)")
    ap.add_argument("--parts", default=",".join(RUN_ORDER), help="parts to run, in this order (default: %(default)s)")
    ap.add_argument("--cap", action="append", default=[], metavar="PART=SECONDS",
                    help=f"a part's time cap (defaults: {CAPS} on a GPU, {TINY_CAPS['device']} s each with --tiny)")
    ap.add_argument("--budget", type=float, default=None,
                    help=f"seconds for all parts together (default {GPU_BUDGET_S:.0f}, {TINY_BUDGET_S:.0f} with --tiny)")
    ap.add_argument("--learn-set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override for the learning run (repeatable; default none)")
    ap.add_argument("--inject", action="append", default=[], metavar="PART=fail|stall",
                    help="testing the harness: make a part raise, or hang until its cap (default none)")
    # A part's own process (the parent passes these).
    ap.add_argument("--part", choices=PART_NAMES, help=argparse.SUPPRESS)
    ap.add_argument("--part-file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--part-cap", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--peak-tflops", type=float, default=None, help=argparse.SUPPRESS)
    return ap


# ----------------------------------------------------------------------------------------------
# A part, in its own process


def run_one_part(args: argparse.Namespace) -> int:
    injected = parse_pairs(args.inject, "--inject").get(args.part)
    if injected:  # before importing torch, so that a short cap still sees the record
        write_json_atomic(args.part_file, {"injected": injected})
        if injected == "fail":
            raise RuntimeError(f"injected failure in part {args.part} (--inject)")
        time.sleep(10 * 3600)
    import torch

    import gpu_learning
    import gpu_parts
    from gpu_parts import Context, Recorder, sizes

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(0)
    torch.set_num_threads(1 if device.type == "cpu" else torch.get_num_threads())
    ctx = Context(device, args.tiny, sizes(device, args.tiny), args.work, args.part_cap, args.reference,
                  args.peak_tflops, tuple(args.learn_set))
    {**gpu_parts.PARTS, **gpu_learning.PARTS}[args.part](ctx, Recorder(args.part_file))
    return 0


# ----------------------------------------------------------------------------------------------
# The parent: each part in a child process under its cap


def last_line(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return lines[-1][:400] if lines else ""


def run_part(name: str, cap: float, args: argparse.Namespace, device: str, work: Path, log: Path,
             peak: float | None) -> dict:
    part_file = work / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--part-file", str(part_file),
           "--work", str(work), "--part-cap", str(cap), "--device", device, "--out", str(args.out)]
    cmd += ["--tiny"] if args.tiny else []
    cmd += ["--reference", str(args.reference)] if args.reference else []
    cmd += [a for v in args.learn_set for a in ("--learn-set", v)]
    cmd += [a for v in args.inject for a in ("--inject", v)]
    cmd += ["--peak-tflops", str(peak)] if peak else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    with log.open("a") as f:
        f.write(f"\n===== {name} (cap {cap:.0f} s) {datetime.datetime.now(datetime.timezone.utc).isoformat()}\n")
        f.flush()
        start_offset = f.tell()
        t0, cpu0 = time.perf_counter(), children_cpu_s()
        # Its own process group: at the cap the part goes with its compile workers.
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=HERE.parent,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    seconds, cpu_s = time.perf_counter() - t0, children_cpu_s() - cpu0
    with log.open() as f:
        f.seek(start_offset)
        output = f.read()
    record = json.loads(part_file.read_text()) if part_file.exists() else {}
    if rc is None:
        status = {"status": "over-cap", "error": f"stopped at its {cap:.0f} s cap; last output: {last_line(output)}"}
    elif rc != 0:
        status = {"status": "failed", "error": last_line(output) or f"exit code {rc}"}
    elif "not_applicable" in record:
        status = {"status": "not applicable"}
    else:
        status = {"status": "ok"}
    return {**status, "seconds": round(seconds, 2), "cpu_s": round(cpu_s, 2), "cap_s": cap, **record}


def children_cpu_s() -> float:
    """CPU seconds of the finished child processes (a part's host-side cost, beside its wall time)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_suite(args: argparse.Namespace) -> int:
    device = args.device
    if device != "cpu":  # the parent imports torch only to look for a GPU; the parts do the work
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if args.device == "cuda" and device != "cuda":
            raise SystemExit("--device cuda: torch sees no CUDA device")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PART_NAMES]
    if unknown:
        raise SystemExit(f"--parts: unknown {unknown}; choose from {', '.join(PART_NAMES)}")
    parse_pairs(args.inject, "--inject")
    caps = {**(TINY_CAPS if args.tiny else CAPS), **{k: float(v) for k, v in parse_pairs(args.cap, "--cap").items()}}
    budget = args.budget or (TINY_BUDGET_S if args.tiny else GPU_BUDGET_S)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "gpu_suite.log"
    log.write_text("")
    results: dict = {"suite": {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "device": device, "tiny": args.tiny,
        "budget_s": budget, "caps_s": {p: caps[p] for p in parts}, "torch": importlib.metadata.version("torch"),
        "reference": str(args.reference) if args.reference else None, "elapsed_s": 0.0}}
    results.update({p: {"status": "pending"} for p in PART_NAMES})
    for p in PART_NAMES:
        if p not in parts:
            results[p] = {"status": "skipped", "error": "not in --parts"}
    write_outputs(args.out, results)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp:
        for name in parts:
            left = budget - (time.perf_counter() - t0)
            cap = min(caps[name], left)
            if cap < MIN_CAP_S:
                results[name] = {"status": "skipped", "error": f"the suite's {budget:.0f} s budget is spent"}
            else:
                print(f"[{name}] running (cap {cap:.0f} s)", flush=True)
                results[name] = run_part(name, cap, args, device, Path(tmp), log, results["device"].get(
                    "matmul_peak_tflops"))
            results["suite"]["elapsed_s"] = round(time.perf_counter() - t0, 2)
            write_outputs(args.out, results)
            r = results[name]
            print(f"[{name}] {r['status']} in {r.get('seconds', 0):.1f} s"
                  + (f": {r['error']}" if r.get("error") else ""), flush=True)
    print(f"\nwrote {args.out / 'gpu_suite.json'} and {args.out / 'gpu_suite.md'} "
          f"({results['suite']['elapsed_s']:.0f} s)\n")
    print(markdown(results))
    return 0


# ----------------------------------------------------------------------------------------------
# The Markdown report


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(results: dict) -> str:
    s = results["suite"]
    out = [f"# GPU suite: {s['device']}{' (tiny sizes)' if s['tiny'] else ''}", "",
           f"Started {s['started']}, torch {s['torch']}, {s['elapsed_s']:.0f} s of a {s['budget_s']:.0f} s budget. "
           f"`{s['command']}`", "", "| part | status | seconds | CPU s | cap s | note |", "|---|---|---|---|---|---|"]
    for p in PART_NAMES:
        r = results[p]
        note = r.get("error") or r.get("not_applicable") or ""
        out.append(f"| {p} | {r['status']} | {fmt(r.get('seconds'))} | {fmt(r.get('cpu_s'))} | {fmt(r.get('cap_s'))} "
                   f"| {note[:160]} |")
    d = results["device"]
    if "matmul_peak" in d:
        out += ["", f"**device** {d.get('name')}: {d['matmul_peak']['dtype']} matmul "
                f"{d['matmul_peak']['size']}^3 at {d['matmul_peak_tflops']:.1f} TFLOP/s measured"
                + (f", copy {d['copy_bandwidth']['gb_per_s']:.0f} GB/s" if "copy_bandwidth" in d else "")
                + (", SDPA: " + "; ".join(f"{k} {v}" for k, v in d["sdpa_backends"].items())
                   if d.get("sdpa_backends") else "")]
    t = results["train_step"]
    if t.get("cases"):
        out += ["", f"**train_step** ({fmt(t.get('parameters'))} parameters; reference: {t.get('reference')})", "",
                "| impl | mode | batch | ms/step | samples/s | MFU | MB/sample | first step s | note |",
                "|---|---|---|---|---|---|---|---|---|"]
        for c in t["cases"]:
            note = c.get("error") or c.get("skipped") or ("compile fell back to eager" if c.get("compile_fell_back")
                                                          else "")
            mfu = f"{100 * c['mfu']:.1f}%" if "mfu" in c else "-"
            out.append(f"| {c['impl']} | {c['mode']} | {c['batch']} | {fmt(c.get('ms_per_step'))} | "
                       f"{fmt(c.get('samples_per_s'))} | {mfu} | {fmt(c.get('memory_per_sample_mb'))} | "
                       f"{fmt(c.get('first_step_s'))} | {note} |")
        for key in ("compile_vs_eager", "vs_reference"):
            if t.get(key):
                out.append(f"\n{key.replace('_', ' ')}: " + ", ".join(f"batch {b}: {v:.2f}x" for b, v in t[key].items()))
    b = results["bucketing"]
    if "time_ratio" in b:
        out += ["", f"**bucketing** ({b['tasks']}, eager, batch {b['batch']}): {b['ms_per_sample_fixed']:.3g} ms per "
                f"sample on the fixed canvas, {b['ms_per_sample_bucketed']:.3g} ms bucketed: {b['time_ratio']:.2f}x "
                f"faster (FLOP ratio {b['flop_ratio']:.2f}x)"]
    n = results["numerics"]
    if "logits_max_rel" in n:
        out += ["", f"**numerics** bf16 vs fp32: logits max rel {n['logits_max_rel']:.2e}, mean rel "
                f"{n['logits_mean_rel']:.2e}, norm rel {n['logits_norm_rel']:.2e}; loss rel {n['loss_rel']:.2e}; "
                f"argmax agreement {n['argmax_agreement']:.4f}; SDPA backend: {n.get('sdpa_backend', '-')}"]
    lr = results["learning"]
    if "steps" in lr:
        curve = lr.get("loss_curve") or []
        out += ["", f"**learning** {lr['preset']} + {' '.join(lr['overrides'])}: {lr['steps']} steps in "
                f"{lr['train_s']:.0f} s ({fmt(lr.get('samples_per_s'))} samples/s), loss "
                + (f"{curve[0][1]:.3f} at step {curve[0][0]} -> {curve[-1][1]:.3f} at step {curve[-1][0]}" if curve
                   else "-")]
        exact = lr.get("exact_curve") or []
        if exact:
            out.append(f"training batches' exact accuracy {exact[0][1]:.3f} -> {exact[-1][1]:.3f}")
        for k in (1, 2):
            pk = lr.get(f"pass@{k}")
            if pk:
                ci = pk["wilson95"] or [0, 0]
                out.append(f"held-out pass@{k}: {pk['solved']}/{pk['outputs']} = {pk['rate']:.3f} "
                           f"[{ci[0]:.3f}, {ci[1]:.3f}] (Wilson 95%)")
    i = results["inference"]
    if i.get("modes"):
        out += ["", f"**inference** ({i['slots']} slots, cap {i['cap_steps']} steps)", "",
                "| mode | views | views/s | mean steps | pass@2 |", "|---|---|---|---|---|"]
        for mode, m in i["modes"].items():
            out.append(f"| {mode} | {m['views']} | {m['views_per_s']:.1f} | {m['mean_steps']:.2f} | {m['pass@2']:.3f} |")
        if "views_per_s_ratio" in i:
            out.append(f"\nhalting: {i['views_per_s_ratio']:.2f}x the views/s of the fixed cap")
        if "timed_model_step" in i:
            ts = i["timed_model_step"]
            out.append(f"\ntimed model ({ts['config']}): {ts['ms_per_step']:.2f} ms per step of {i['slots']} slots, "
                       f"{ts['views_per_s_at_cap']:.0f} views/s at the step cap")
    o = results["oom"]
    if "last_line" in o:
        out += ["", f"**oom** batch {o['batch']}: exit {o['returncode']}, traceback {o['traceback']}, "
                f"last line: `{o['last_line']}`"]
    return "\n".join(out) + "\n"


def write_outputs(out: Path, results: dict) -> None:
    write_json_atomic(out / "gpu_suite.json", results, indent=1)
    write_text_atomic(out / "gpu_suite.md", markdown(results))


def main() -> int:
    args = arguments().parse_args()
    return run_one_part(args) if args.part else run_suite(args)


if __name__ == "__main__":
    sys.exit(main())
