"""Corrupt, foreign and incompatible checkpoints: every command that loads one stops with one
line naming the file (exit 2, no traceback), loading stays weights-only, and pruning keeps the
newest checkpoints by step."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from arc_trm import checkpoint as ckpt
from submission.runfolder import step_of
from augment.errors import InputError
from submission import checkpoint_manifest
from conftest import SMALL_TASKS, TINY, cli_in_process, run_cli, sets, write_tiny_checkpoint

STEP = 10


class RunsCode:
    """Unpickling this would run a shell command (what weights_only must refuse)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def state_of(run: Path) -> dict:
    return torch.load(ckpt.checkpoint_dir(run, STEP) / "state.pt", weights_only=True)


def corrupt(run: Path, case: str, marker: Path) -> None:
    """Replace the checkpoint's state.pt by `case` and re-write its manifest, so the content
    checks (not just the manifest's sizes) are what refuses it."""
    folder = ckpt.checkpoint_dir(run, STEP)
    path = folder / "state.pt"
    good = path.read_bytes()
    if case == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif case == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif case == "code pickle":
        path.write_bytes(pickle.dumps(RunsCode(marker)))
    elif case == "pickled module":
        torch.save(torch.nn.Linear(2, 2), path)
    elif case == "plain state dict":
        torch.save(state_of(run)["model"], path)
    elif case == "list":
        torch.save([1, 2, 3], path)
    elif case == "unknown config key":
        state = state_of(run)
        cfg = json.loads(state["config"])
        cfg["model"]["new_knob"] = 1
        torch.save({**state, "config": json.dumps(cfg)}, path)
    elif case == "other model config":
        state = state_of(run)
        cfg = json.loads(state["config"])
        cfg["model"]["hidden_size"] = 48
        torch.save({**state, "config": json.dumps(cfg)}, path)
    checkpoint_manifest.write_manifest(folder)


CASES = ["random bytes", "truncated", "code pickle", "pickled module", "plain state dict", "list",
         "unknown config key", "other model config"]
EXPECT = {"random bytes": "not a readable", "truncated": "not a readable", "code pickle": "not a readable",
          "pickled module": "not a readable", "plain state dict": "plain state dict", "list": "holds a list",
          "unknown config key": "new_knob", "other model config": "another model config"}


@pytest.fixture
def bad_run(tmp_path, request) -> tuple[Path, Path]:
    run = tmp_path / "run"
    write_tiny_checkpoint(run, STEP)
    marker = tmp_path / "pwned"
    corrupt(run, request.param, marker)
    return run, marker


def commands(run: Path, tmp: Path, build: Path) -> dict[str, list]:
    return {
        "predict": ["predict", "--checkpoint", run, "--tasks", SMALL_TASKS, "--out", tmp / "sub.json",
                    "--no-progress"],
        "ttt": ["ttt", "--checkpoint", run, "--tasks", SMALL_TASKS, "--out", tmp / "t", "--budget", "60s",
                "--no-progress"],
        "train --resume": ["train", "--out", run, "--resume", "--tasks", SMALL_TASKS, "--build", build,
                           "--no-progress", *sets(TINY)],
        "kaggle bundle": ["kaggle", "bundle", "--checkpoint", run, "--out", tmp / "dist", "--no-download"],
        "import-checkpoint": ["import-checkpoint", ckpt.checkpoint_dir(run, STEP) / "state.pt",
                              "--identifiers", ckpt.checkpoint_dir(run, STEP) / "identifiers.json",
                              "--out", tmp / "imp"],
    }


@pytest.mark.parametrize("bad_run", CASES, indirect=True)
@pytest.mark.parametrize("command", ["predict", "ttt", "train --resume", "kaggle bundle", "import-checkpoint"])
def test_every_loader_refuses_a_bad_checkpoint_in_one_line(bad_run, command, tmp_path, small_build, request):
    run, marker = bad_run
    case = request.node.callspec.params["bad_run"]
    args = commands(run, tmp_path, small_build)[command]
    # One case per command in a real process; the others through the same entry point in-process.
    proc = run_cli(*args, timeout=180) if case == "random bytes" else cli_in_process(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "error:" in errors[0], proc.stderr
    assert "state.pt" in errors[0] or "manifest" in errors[0] or str(run) in errors[0], errors[0]
    if command != "import-checkpoint":  # import reads a reference file: plain state dicts are its input
        assert EXPECT[case] in errors[0], errors[0]
    assert not marker.exists(), "unpickling ran code"
    assert not (tmp_path / "p" / "sub.json").exists()


def test_truncation_and_replacement_are_caught_by_the_manifest(tmp_path):
    folder = write_tiny_checkpoint(tmp_path / "run", STEP)
    good = (folder / "state.pt").read_bytes()
    (folder / "state.pt").write_bytes(good[:-10])
    with pytest.raises(InputError, match="truncated or replaced"):
        ckpt.load_state(folder)
    (folder / "state.pt").write_bytes(good[:-10] + b"0123456789")
    checkpoint_manifest.verify(folder, ("state.pt",))  # same size: only the hash tells
    with pytest.raises(InputError, match="hash"):
        checkpoint_manifest.verify(folder, ("state.pt",), full=True)


def test_checkpoints_carry_a_format_version(tmp_path):
    folder = write_tiny_checkpoint(tmp_path / "run", STEP)
    data = json.loads((folder / "manifest.json").read_text())
    assert data["format"] == ckpt.FORMAT_VERSION
    data["format"] = ckpt.FORMAT_VERSION + 1
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="format"):
        ckpt.load_checkpoint(tmp_path / "run")
    (folder / "manifest.json").unlink()
    with pytest.raises(InputError, match="no manifest.json"):
        ckpt.load_checkpoint(tmp_path / "run")


def test_pruning_keeps_the_newest_by_step_and_the_one_just_committed(tmp_path):
    run = tmp_path / "run"
    for step in (9, 10, 100, 1000, 10_000_000):  # 10_000_000 sorts before step_0000009 by name
        write_tiny_checkpoint(run, step)
        assert ckpt.latest_checkpoint(run) == ckpt.checkpoint_dir(run, step)
    kept = [step_of(p) for p in ckpt.checkpoints_by_step(run)]
    assert kept == [1000, 10_000_000]
    # A commit of an older step (a retrain into the folder) is never pruned away at once.
    write_tiny_checkpoint(run, 5)
    assert ckpt.latest_checkpoint(run) == ckpt.checkpoint_dir(run, 5)
    assert [step_of(p) for p in ckpt.checkpoints_by_step(run)] == [5, 10_000_000]


def test_latest_naming_a_missing_folder_falls_back_to_the_newest(tmp_path):
    run = tmp_path / "run"
    write_tiny_checkpoint(run, 3)
    write_tiny_checkpoint(run, 4)
    shutil.rmtree(ckpt.checkpoint_dir(run, 4))
    assert ckpt.latest_checkpoint(run) == ckpt.checkpoint_dir(run, 3)


@pytest.mark.parametrize("config, expect", [({"arch": {"hidden_size": 32, "new_knob": 1}}, "new_knob"),
                                            ({"arch": {"hidden_size": 48}}, "shape mismatches")])
def test_import_refuses_a_config_with_unknown_keys_or_another_model(tmp_path, config, expect):
    run = tmp_path / "run"
    write_tiny_checkpoint(run, STEP)
    ref = tmp_path / "ref.pt"  # a plain state dict (import's input) with reference names
    from arc_trm.convert import to_reference_state_dict
    torch.save(to_reference_state_dict(state_of(run)["model"]), ref)
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps(["<blank>", "a", "a|||t1|||0123456789"]))
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    proc = run_cli("import-checkpoint", ref, "--identifiers", ids, "--out", tmp_path / "imp", "--canvas", "6",
                   "--config", tmp_path / "cfg.json")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and expect in lines[0], proc.stderr
    assert not (tmp_path / "imp" / "checkpoints").exists()
    ok = run_cli("import-checkpoint", ref, "--identifiers", ids, "--out", tmp_path / "imp", "--canvas", "6")
    assert ok.returncode == 0, ok.stderr  # the same weights import without the bad config
