"""benchmarks/gpu_suite.py on a CPU with --tiny: every part runs through the code the GPU run uses,
a failing or over-long part is recorded while the others still run, and a CUDA out-of-memory error
in training ends in one line naming train.grad_accum_steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import arc_trm.train as train_module

from conftest import SMALL_TASKS, TINY, cli_in_process, sets

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"
PARTS = ("device", "train_step", "bucketing", "numerics", "learning", "inference", "oom")


def run_suite(out: Path, *extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(SUITE), "--device", "cpu", "--tiny", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (out / "gpu_suite.md").read_text().startswith("# GPU suite: cpu")
    return json.loads((out / "gpu_suite.json").read_text())


@pytest.fixture(scope="module")
def cpu_suite(tmp_path_factory) -> dict:
    return run_suite(tmp_path_factory.mktemp("suite"))


@pytest.mark.slow
def test_every_part_runs_on_cpu_with_real_values(cpu_suite):
    r = cpu_suite
    assert set(PARTS) | {"suite"} == set(r)
    assert {p: r[p]["status"] for p in PARTS} == {**{p: "ok" for p in PARTS}, "oom": "not applicable"}
    assert r["device"]["matmul_peak_tflops"] > 0 and r["device"]["copy_bandwidth"]["gb_per_s"] > 0
    cases = [c for c in r["train_step"]["cases"] if "samples_per_s" in c]
    # eager and compiled (dynamo's eager backend on a CPU) at both batches; no reference given
    assert {(c["mode"], c["batch"]) for c in cases} == {("eager", 4), ("eager", 8), ("compile", 4), ("compile", 8)}
    assert all(c["samples_per_s"] > 0 and c["mfu"] > 0 and not c["compile_fell_back"] for c in cases)
    assert r["train_step"]["reference"].startswith("skipped: no reference checkout")
    assert r["bucketing"]["ms_per_sample_fixed"] > 0 and r["bucketing"]["time_ratio"] > 0
    assert r["bucketing"]["flop_ratio"] > 1
    n = r["numerics"]
    assert 0 < n["logits_mean_rel"] < 0.1 and n["loss_rel"] < 0.1 and n["sdpa_backend"] != "none seen"
    learn = r["learning"]
    assert learn["steps"] > 0 and len(learn["loss_curve"]) > 1 and all(loss > 0 for _, loss in learn["loss_curve"])
    assert {s for s, _ in learn["exact_curve"]} <= {s for s, _ in learn["loss_curve"]}  # where a row halted
    assert all(0 <= e <= 1 for _, e in learn["exact_curve"])
    assert learn["pass@2"]["outputs"] == 18 and len(learn["pass@2"]["wilson95"]) == 2
    assert {m: v["views_per_s"] > 0 for m, v in r["inference"]["modes"].items()} == {"fixed": True, "halting": True}
    modes = r["inference"]["modes"]
    assert r["inference"]["views_per_s_ratio"] == modes["halting"]["views_per_s"] / modes["fixed"]["views_per_s"]
    assert r["inference"]["timed_model_step"]["ms_per_step"] > 0
    assert "CUDA" in r["oom"]["not_applicable"]


@pytest.mark.slow
def test_a_failing_and_an_over_long_part_are_recorded_and_the_rest_still_run(tmp_path):
    r = run_suite(tmp_path, "--parts", "numerics,bucketing,oom", "--inject", "numerics=fail",
                  "--inject", "bucketing=stall", "--cap", "bucketing=5")
    assert r["numerics"]["status"] == "failed"
    assert r["numerics"]["error"] == "RuntimeError: injected failure in part numerics (--inject)"
    assert r["bucketing"]["status"] == "over-cap" and "5 s cap" in r["bucketing"]["error"]
    assert r["bucketing"]["injected"] == "stall"  # what the part recorded before its cap is kept
    assert r["oom"]["status"] == "not applicable"  # the part after both still ran
    assert r["device"]["status"] == "skipped"
    md = (tmp_path / "gpu_suite.md").read_text()
    assert "| numerics | failed |" in md and "| bucketing | over-cap |" in md


def test_out_of_memory_in_training_is_one_line_naming_grad_accum(tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(train_module, "train_step", out_of_memory)
    done = cli_in_process("train", "--preset", "cpu-quick", "--tasks", SMALL_TASKS, "--out", tmp_path / "run",
                          "--build", tmp_path / "build", "--no-progress",
                          *sets(TINY + ["train.grad_accum_steps=2", "train.device=cpu"]))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "micro-batch of 4 rows (train.grad_accum_steps 2)" in lines[0]
    assert "--set train.grad_accum_steps=4" in lines[0]
