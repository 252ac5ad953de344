"""Training: exact resume across processes, 2 gloo processes == 1 process, config, curves, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from arc_trm.checkpoint import latest_checkpoint
from arc_trm.config import RunConfig, preset
from arc_trm.overrides import apply_overrides
from arc_trm.train import ema_rate_at, lr_at
from augment.store import BuiltSet
from augment.task_hash import content_hash

from conftest import SMALL_TASKS, TINY, run_cli, sets


def train_args(build: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--build", str(build), "--out", str(out),
            "--no-progress", *sets(TINY + [f"train.max_steps={steps}", "train.checkpoint_every=1000"]), *extra]


def final_state(run: Path) -> dict:
    found = latest_checkpoint(run)
    assert found is not None, f"no checkpoint in {run}"
    return torch.load(found / "state.pt", map_location="cpu", weights_only=True)


def assert_ok(proc) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


@pytest.mark.slow
def test_resume_after_stop_is_exact(tmp_path, small_build):
    assert_ok(run_cli(*train_args(small_build, tmp_path / "straight", 8)))
    assert_ok(run_cli(*train_args(small_build, tmp_path / "resumed", 8, "--stop-at", "4")))
    assert final_state(tmp_path / "resumed")["step"] == 4
    assert_ok(run_cli(*train_args(small_build, tmp_path / "resumed", 8, "--resume")))

    a, b = final_state(tmp_path / "straight"), final_state(tmp_path / "resumed")
    assert a["step"] == b["step"] == 8
    for part in ("model", "ema"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after resume"
    for pid, st in a["optim"]["state"].items():
        for key, value in st.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optim"]["state"][pid][key])), \
                f"optimiser state {pid}.{key} differs after resume"
    assert a["sampler"] == b["sampler"]
    # The run did train: the puzzle table moved away from its zero init.
    assert a["model"]["puzzle_table"].abs().sum() > 0


def assert_same_weights(a: dict, b: dict, what: str) -> None:
    for name, tensor in a["model"].items():
        other = b["model"][name]
        rel = (tensor - other).norm() / tensor.norm().clamp_min(1e-12)
        assert rel < 1e-5, f"{name}: relative error {rel:.2e} between {what}"


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path, small_build):
    assert_ok(run_cli(*train_args(small_build, tmp_path / "one", 5)))
    two = run_cli("--standalone", "--nproc_per_node", "2", "-m", "arc_trm.cli",
                  *train_args(small_build, tmp_path / "two", 5), module=["-m", "torch.distributed.run"])
    assert_ok(two)
    a, b = final_state(tmp_path / "one"), final_state(tmp_path / "two")
    assert_same_weights(a, b, "1 and 2 processes")
    assert (tmp_path / "two" / "checkpoints" / latest_checkpoint(tmp_path / "two").name / "carry_rank1.pt").exists()

    # Gradient accumulation: 1 process with 2 micro-batches (each with its own carry) is the 2 ranks.
    assert_ok(run_cli(*train_args(small_build, tmp_path / "accum", 5, "--set", "train.grad_accum_steps=2")))
    accum = final_state(tmp_path / "accum")
    assert_same_weights(accum, b, "1 process with grad_accum_steps=2 and 2 processes")
    assert_same_weights(accum, a, "grad_accum_steps=2 and 1")
    carry = torch.load(latest_checkpoint(tmp_path / "accum") / "carry_rank0.pt", weights_only=True)
    assert carry["6.steps"].shape == (8,)  # the micro-batches' carries are saved joined: k can change on resume
    bad = run_cli(*train_args(small_build, tmp_path / "bad", 5, "--set", "train.grad_accum_steps=3"))
    assert bad.returncode == 2 and "does not divide" in bad.stderr and "Traceback" not in bad.stderr


def test_resume_with_another_model_config_is_refused(tmp_path, small_build):
    assert_ok(run_cli(*train_args(small_build, tmp_path / "run", 2)))
    proc = run_cli(*train_args(small_build, tmp_path / "run", 4, "--resume", "--set", "model.hidden_size=48"))
    assert proc.returncode == 2, proc.stderr
    assert "another model config" in proc.stderr and "hidden_size" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert final_state(tmp_path / "run")["step"] == 2  # the checkpoint was left alone


def here_and_elsewhere(tmp_path: Path) -> tuple[Path, Path]:
    """Two working directories; the first holds the small tasks as a folder named tasks/."""
    from augment.tasks import load_tasks
    here, elsewhere = tmp_path.resolve() / "here", tmp_path.resolve() / "elsewhere"
    (here / "tasks").mkdir(parents=True)
    elsewhere.mkdir()
    for task in load_tasks(SMALL_TASKS):
        (here / "tasks" / f"{task.id}.json").write_text(json.dumps(task.to_json()))
    return here, elsewhere


@pytest.mark.slow
def test_a_run_with_relative_paths_resumes_and_shares_its_build_from_another_cwd(tmp_path):
    # The config recorded --tasks and --build as typed: a resume from elsewhere found no tasks.
    here, elsewhere = here_and_elsewhere(tmp_path)
    tiny = sets(TINY + ["train.max_steps=3", "train.checkpoint_every=1000"])
    assert_ok(run_cli("train", "--tasks", "tasks", "--preset", "cpu-quick", "--build", "build", "--out", "run",
                      "--no-progress", "--stop-at", "2", *tiny, cwd=here))
    cfg = json.loads((here / "run" / "config.json").read_text())["data"]
    assert (cfg["tasks"], cfg["build_dir"]) == (str(here / "tasks"), str(here / "build"))
    build_meta = here / "build" / "metadata.json"
    assert json.loads(build_meta.read_text())["sources"] == [str(here / "tasks")]
    built = build_meta.stat().st_mtime_ns
    assert_ok(run_cli("train", "--out", here / "run", "--resume", "--no-progress", cwd=elsewhere))
    assert final_state(here / "run")["step"] == 3
    # Another run that names the same tasks and build relative to this cwd reuses the build.
    assert_ok(run_cli("train", "--tasks", "../here/tasks", "--preset", "cpu-quick", "--build", "../here/build",
                      "--out", "run", "--no-progress", "--stop-at", "1", *tiny, cwd=elsewhere))
    assert build_meta.stat().st_mtime_ns == built and sorted(p.name for p in elsewhere.iterdir()) == ["run"]


@pytest.mark.slow
def test_a_run_without_build_records_its_default_build_and_resumes_it_from_another_cwd(tmp_path):
    # The default build folder (data/built/... under the cwd) was worked out anew at every start:
    # a resume from elsewhere quietly built the same set again under that directory.
    here, elsewhere = here_and_elsewhere(tmp_path)
    tiny = sets(TINY + ["train.max_steps=3", "train.checkpoint_every=1000"])
    first = run_cli("train", "--tasks", "tasks", "--preset", "cpu-quick", "--out", "run", "--no-progress",
                    "--stop-at", "2", *tiny, cwd=here)
    assert_ok(first)
    build = Path(json.loads((here / "run" / "config.json").read_text())["data"]["build_dir"])
    assert build.parent == here / "data" / "built" and build.name.startswith("tasks-a4-c6-")  # short, readable
    assert f"build: {build} (made on first use" in first.stdout
    built = (build / "metadata.json").stat().st_mtime_ns
    assert_ok(run_cli("train", "--out", here / "run", "--resume", "--no-progress", cwd=elsewhere))
    assert final_state(here / "run")["step"] == 3
    assert (build / "metadata.json").stat().st_mtime_ns == built and list(elsewhere.iterdir()) == []


def test_run_writes_config_metrics_and_curves(tmp_path, small_build):
    run = tmp_path / "run"
    assert_ok(run_cli(*train_args(small_build, run, 3, "--set", "train.eval_every=2")))
    saved = RunConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert saved.model.hidden_size == 32 and saved.train.max_steps == 3
    ckpt = latest_checkpoint(run)
    assert json.loads((ckpt / "config.json").read_text()) == json.loads((run / "config.json").read_text())
    ids = json.loads((ckpt / "identifiers.json").read_text())
    assert len(ids["identifiers"]) == len(ids["augmentations"]) == saved.model.num_puzzle_ids
    # One content hash per task, not per row (a published-size map has 1.2 M rows over ~1,000 tasks).
    assert ids["task_hashes"] == {t.id: content_hash(t) for t in BuiltSet.open(small_build).tasks}
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "loss" in x]
    eval_lines = [x for x in lines if "eval_pass@2" in x]
    assert [x["step"] for x in train_lines] == [1, 2, 3]
    assert all({"loss", "samples_per_s"} <= set(x) for x in train_lines)
    # the halting figures where a row halted (every row by halt_max_steps, 3), absent where none did
    # (and, as the reference logs them, token accuracy and the halt signal's accuracy, all four together)
    halting = {"exact_accuracy", "halt_steps", "accuracy", "q_halt_accuracy"}
    assert halting <= set(train_lines[-1])
    assert all(not halting & set(x) or halting <= set(x) for x in train_lines)
    assert all(0 <= x[k] <= 1 for x in train_lines for k in ("accuracy", "q_halt_accuracy") if k in x)
    # Voted inference on the test split at step 2 and at the end, scored against the solutions.
    assert [x["step"] for x in eval_lines] == [2, 3]
    assert 0.0 <= eval_lines[-1]["eval_pass@2"] <= 1.0 and eval_lines[-1]["eval_mean_steps"] >= 1
    proc = run_cli("plot", str(run))
    assert_ok(proc)
    from PIL import Image
    with Image.open(run / "curves.png") as im:
        assert im.size[0] > 400


def test_presets_and_overrides():
    cfg = preset("paper")
    assert (cfg.model.hidden_size, cfg.model.H_cycles, cfg.model.L_cycles) == (512, 3, 4)
    assert (cfg.train.global_batch_size, cfg.train.lr, cfg.train.lr_warmup_steps) == (768, 1e-4, 2000)
    assert (cfg.train.puzzle_emb_lr, cfg.train.ema_rate) == (1e-2, 0.999)
    apply_overrides(cfg, ["lr=3e-4", "model.H_cycles=2", "train.compile=true", "tasks=arc-agi-1"])
    assert (cfg.train.lr, cfg.model.H_cycles, cfg.train.compile, cfg.data.tasks) == (3e-4, 2, "on", "arc-agi-1")
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="no config field"):
        apply_overrides(cfg, ["nonsense=1"])
    with pytest.raises(ValueError, match="compile must be one of"):
        apply_overrides(cfg, ["compile=maybe"])
    with pytest.raises(ValueError, match="not key=value"):
        apply_overrides(cfg, ["lr"])
    with pytest.raises(ValueError, match="num_heads"):
        apply_overrides(cfg, ["model.num_heads=7"])
    assert preset("cpu-quick").model.forward_dtype == "float32"


def test_schedules():
    assert lr_at(1, 1e-4, 2000) == pytest.approx(5e-8)
    assert lr_at(2000, 1e-4, 2000) == lr_at(10**6, 1e-4, 2000) == 1e-4
    assert ema_rate_at(0, 0.999) == pytest.approx(0.1)
    assert ema_rate_at(10**6, 0.999) == 0.999
    assert ema_rate_at(0, 0.999, warmup=False) == 0.999


def test_frozen_phase_trains_only_the_puzzle_table(tmp_path, small_build):
    from arc_trm.config import RunConfig
    from arc_trm.train import build_model

    run = tmp_path / "run"
    assert_ok(run_cli(*train_args(small_build, run, 3, "--set", "train.freeze_model_steps=3")))
    state = final_state(run)
    cfg = RunConfig.from_dict(json.loads(state["config"]))
    fresh = build_model(cfg, cfg.model.num_puzzle_ids, torch.device("cpu")).state_dict()  # same seed, same init
    for name, tensor in state["model"].items():
        if name != "puzzle_table":
            assert torch.equal(tensor, fresh[name]), f"{name} changed while the model was frozen"
    assert state["model"]["puzzle_table"].abs().sum() > 0
