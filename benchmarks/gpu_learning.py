"""The learning run, inference on its model and the provoked out-of-memory error: the parts of
benchmarks/gpu_suite.py that train or run `arc-trm` itself (the timing parts are in gpu_parts.py).
The learning run and the inference part share the suite's scratch folder: inference times the
model that learning leaves there."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from gpu_parts import Context, Recorder, fresh_device, time_steps  # benchmarks/ is on sys.path
from train_step import ours_infer

ROOT = Path(__file__).resolve().parents[1]


def main_job_tasks() -> str:
    """The 16 tasks of scripts/main_job.sh (read from the script, so the two never differ)."""
    found = re.search(r'^TASKS="([^"]+)"', (ROOT / "scripts" / "main_job.sh").read_text(), re.M)
    if found is None:
        raise RuntimeError("scripts/main_job.sh: no TASKS=\"...\" line")
    return found.group(1)


# ----------------------------------------------------------------------------------------------
# learning and inference: the main job's 16 tasks, trained on their demonstrations


def learn_config(ctx: Context):
    from arc_trm.config import preset
    from arc_trm.overrides import apply_overrides

    cfg = apply_overrides(preset(ctx.sizes.learn_preset), [
        *ctx.sizes.learn_overrides, f"train.device={ctx.device.type}", "train.compile=off",
        f"train.max_steps={ctx.sizes.learn_steps}", "train.eval_every=0", "train.checkpoint_every=100000000",
        *ctx.learn_set])
    cfg.data.tasks = main_job_tasks()
    cfg.data.build_dir = str(ctx.work / "learn-build")
    return cfg


def part_learning(ctx: Context, rec: Recorder) -> None:
    """Train until a deadline, then voted inference with halting on the held-out test inputs."""
    from arc_trm.builds import build_options
    from arc_trm.infer import load_model
    from arc_trm.train import TrainOptions, train
    from augment.build import build_set
    from augment.files import read_jsonl
    from augment.tasks import load_tasks
    from halting import evaluate
    from submission.score import binomial_ci

    cfg = learn_config(ctx)
    rec.put(tasks=cfg.data.tasks, preset=ctx.sizes.learn_preset,
            overrides=[*ctx.sizes.learn_overrides, "train.compile=off", *ctx.learn_set])
    built = build_set(load_tasks(cfg.data.tasks), ctx.work / "learn-build", build_options(cfg))
    train_s = max(1.0, min(ctx.sizes.learn_train_s, ctx.left() - (15 if not ctx.tiny else 5)))
    t0 = time.perf_counter()
    result = train(cfg, ctx.work / "learn-run", TrainOptions(built=built, progress=False,
                                                            deadline=time.time() + train_s))
    lines = [r for r in read_jsonl(ctx.work / "learn-run" / "metrics.jsonl", "metrics") if "loss" in r]
    kept = sorted(set(range(0, len(lines), max(1, len(lines) // 100))) | {len(lines) - 1}) if lines else []
    rec.put(train_s=time.perf_counter() - t0, steps=result.steps, step_ms=1e3 * result.step_s,
            samples_per_s=cfg.train.global_batch_size / result.step_s if result.step_s else None,
            loss_curve=[[lines[i]["step"], lines[i]["loss"]] for i in kept],
            # the training batches' exact accuracy: learning shows here even when held-out pass@2 is 0
            # (the steps where a row halted: others record none)
            exact_curve=[[lines[i]["step"], lines[i]["exact_accuracy"]] for i in kept if "exact_accuracy" in lines[i]])
    loaded = load_model(ctx.work / "learn-run", ctx.device)
    tasks = [t for t in built.tasks if t.role == "test"]
    r, _ = evaluate(loaded.model, tasks, loaded.id_map.identifiers, loaded.id_map.augmentations,
                    canvas=cfg.data.canvas, views_per_input=0, batch_size=ctx.sizes.slots, halting=True,
                    device=ctx.device)
    rec.put(views=r.views, mean_steps=r.mean_steps, eval_s=r.wall_s, **{
        f"pass@{k}": {"solved": n, "outputs": r.scored, "rate": n / max(r.scored, 1),
                      "wilson95": list(binomial_ci(n, r.scored)) if r.scored else None}
        for k, n in ((1, r.solved1), (2, r.solved2))})


def part_inference(ctx: Context, rec: Recorder) -> None:
    """Views/s with halting and with every view run to the step cap, on the learning run's model;
    then one eval-mode step of the timed (paper) model at the same slot count."""
    from arc_trm.infer import load_model
    from augment.store import BuiltSet
    from halting import evaluate

    d, s = ctx.device, ctx.sizes
    run = ctx.work / "learn-run"
    if not run.is_dir():
        raise RuntimeError("no learned model: the learning part did not leave a checkpoint")
    loaded = load_model(run, d)
    built = BuiltSet.open(ctx.work / "learn-build")
    tasks = [t for t in built.tasks if t.role == "test"]
    kw = dict(canvas=built.canvas, views_per_input=0, batch_size=s.slots, device=d)
    args = (loaded.model, tasks, loaded.id_map.identifiers, loaded.id_map.augmentations)
    evaluate(*args, halting=True, **kw)  # warm-up
    rec.put(slots=s.slots, cap_steps=loaded.model.cfg.halt_max_steps, modes={})
    best: dict[str, dict] = {}
    for _ in range(s.infer_repeats):
        for halting in (False, True):
            r, _ = evaluate(*args, halting=halting, **kw)
            if r.mode not in best or r.wall_s < best[r.mode]["wall_s"]:
                best[r.mode] = {"views": r.views, "wall_s": r.wall_s, "views_per_s": r.views / r.wall_s,
                                "mean_steps": r.mean_steps, "pass@2": r.pass2}
        # after each repeat, so that a part stopped at its cap keeps the ratio too
        rec.put(modes=best, views_per_s_ratio=best["halting"]["views_per_s"] / best["fixed"]["views_per_s"])
    fresh_device(d)
    step = ours_infer(s.model, s.slots, d, False, 0)
    t = time_steps(step, d, s.warmup, s.repeats, s.inner)
    rec.put(timed_model_step={"ms_per_step": 1e3 * t.median_s, "config": f"hidden {s.model.hidden_size}, "
                              f"{s.model.total_len} positions, {s.model.forward_dtype}, eager",
                              "views_per_s_at_cap": s.slots / (t.median_s * s.model.halt_max_steps)})


# ----------------------------------------------------------------------------------------------
# oom


def part_oom(ctx: Context, rec: Recorder) -> None:
    """`arc-trm train` with a batch far beyond the device's memory must end in one line naming
    train.grad_accum_steps (exit 2), not a traceback."""
    if ctx.device.type != "cuda":
        rec.put(not_applicable=f"needs a CUDA device to run out of memory (this run: {ctx.device.type})")
        return
    cmd = [sys.executable, "-m", "arc_trm.cli", "train", "--preset", "paper", "--tasks", main_job_tasks(),
           "--build", str(ctx.work / "oom-build"), "--out", str(ctx.work / "oom-run"), "--augmentations", "8",
           "--no-progress", "--set", f"train.global_batch_size={ctx.sizes.oom_batch}", "--set", "train.compile=off",
           "--set", "train.max_steps=2", "--set", "train.device=cuda"]
    rec.put(command=" ".join(cmd[1:]), batch=ctx.sizes.oom_batch)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(5.0, ctx.left() - 3), cwd=ROOT)
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    last = lines[-1] if lines else ""
    ok = done.returncode == 2 and "Traceback" not in done.stderr and "train.grad_accum_steps" in last
    rec.put(returncode=done.returncode, last_line=last, traceback="Traceback" in done.stderr,
            stderr_lines=len(lines), stderr_tail=lines[-5:], one_line_error=ok)
    if not ok:
        raise RuntimeError(f"out-of-memory run did not end in one line naming train.grad_accum_steps "
                           f"(exit {done.returncode}): {last[:200]}")


PARTS = {"learning": part_learning, "inference": part_inference, "oom": part_oom}
