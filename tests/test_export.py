"""Inference export (arc-trm export): EMA weights and the puzzle table in safetensors plus config.json
and identifiers.json, loaded by `predict` and `ttt` like a run folder, and much smaller than state.pt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from arc_trm import checkpoint as ckpt
from arc_trm.export import export_inference
from arc_trm.infer import load_model
from augment.tasks import load_tasks
from submission.kaggle import load_submission, validate_submission

from conftest import SMALL_TASKS, run_cli


@pytest.fixture
def trained_run(tiny_run: Path) -> Path:
    """The session's tiny run (conftest): 3 steps with EMA on, so that the export must carry EMA
    values, not the raw ones."""
    return tiny_run


def test_export_holds_ema_weights_and_loads_like_the_run(trained_run: Path, tmp_path: Path) -> None:
    result = export_inference(trained_run, tmp_path / "export")
    assert sorted(p.name for p in result.folder.iterdir()) == ["config.json", "identifiers.json", "manifest.json",
                                                              ckpt.EXPORT_WEIGHTS]
    state = ckpt.load_state(ckpt.resolve_checkpoint(trained_run))
    exported = ckpt.load_state(result.folder)
    assert exported["ema"] is None and exported["identifiers"] == state["identifiers"]
    assert json.loads(exported["config"]) == json.loads(state["config"])
    assert set(exported["model"]) == set(state["model"])
    assert state["ema"], "the run kept no EMA: the test would not tell EMA from raw weights"
    differs = 0
    for name, tensor in exported["model"].items():
        expected = state["ema"].get(name, state["model"][name])
        assert torch.equal(tensor, expected), name
        differs += name in state["ema"] and not torch.equal(tensor, state["model"][name])
    assert differs > 0  # EMA values were taken, not the raw weights
    assert "puzzle_table" in exported["model"]

    from_run = load_model(trained_run, torch.device("cpu"))
    from_export = load_model(result.folder, torch.device("cpu"))
    for (name, a), (_, b) in zip(from_run.model.state_dict().items(), from_export.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert from_export.id_map.identifiers == from_run.id_map.identifiers and from_export.id_map.augmentations == from_run.id_map.augmentations
    # No optimiser moments, no raw copy: the export is well under the full state.
    assert result.bytes < 0.6 * ckpt.resolve_checkpoint(trained_run).joinpath("state.pt").stat().st_size


@pytest.mark.slow
def test_predict_and_ttt_accept_the_export(trained_run: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    proc = run_cli("export", "--checkpoint", trained_run, "--out", export)
    assert proc.returncode == 0 and "exported" in proc.stdout, proc.stderr
    subs = {}
    for name, source in (("run", trained_run), ("export", export)):
        subs[name] = tmp_path / f"{name}.json"
        proc = run_cli("predict", "--checkpoint", source, "--tasks", SMALL_TASKS, "--out", subs[name], "--no-progress")
        assert proc.returncode == 0, proc.stderr
    assert load_submission(subs["run"]) == load_submission(subs["export"])

    out = tmp_path / "ttt"
    new_tasks = "arc-agi-1:training/a85d4709+3c9b0459@test"
    proc = run_cli("ttt", "--tasks", new_tasks, "--checkpoint", export, "--budget", "40s", "--out", out, "--no-progress",
                   "--set", "train.max_steps=4", "--set", "data.augmentations=4", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    validate_submission(load_submission(out / "submission.json"), load_tasks(new_tasks))
    assert json.loads((out / "config.json").read_text())["model"]["hidden_size"] == 32  # the export's architecture


def test_a_broken_export_is_one_line(tmp_path: Path, trained_run: Path) -> None:
    export = tmp_path / "export"
    export_inference(trained_run, export)
    weights = export / ckpt.EXPORT_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    proc = run_cli("predict", "--checkpoint", export, "--tasks", SMALL_TASKS, "--out", tmp_path / "s.json")
    assert proc.returncode == 2 and ckpt.EXPORT_WEIGHTS in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
