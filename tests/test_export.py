"""Inference export (arc-trm export): EMA weights and the puzzle table in safetensors plus config.json
and identifiers.json, loaded by `predict` and `ttt` like a run folder, and much smaller than state.pt."""

from __future__ import annotations

import json
import os
import shutil
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


def test_export_refuses_weights_damaged_in_place(tmp_path: Path, trained_run: Path) -> None:
    """Bytes changed inside state.pt (its size kept) were exported: loading checks sizes only, and
    the export's fresh manifest then vouched for the damaged weights, which ttt took."""
    source = tmp_path / "run"
    shutil.copytree(ckpt.resolve_checkpoint(trained_run), source)
    state = source / ckpt.STATE
    data = bytearray(state.read_bytes())
    data[-200:-100] = bytes(100)
    state.write_bytes(bytes(data))
    proc = run_cli("export", "--checkpoint", source, "--out", tmp_path / "export")
    assert proc.returncode == 2 and "content differs from the manifest's hash" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "export").exists()


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_export_refuses_a_run_a_folder_above_it_or_other_files_and_deletes_nothing(tmp_path: Path) -> None:
    from conftest import cli_in_process, write_tiny_checkpoint

    run = tmp_path / "runs" / "run"
    step = write_tiny_checkpoint(run)
    (run / "metrics.jsonl").write_text('{"step": 10, "loss": 1.0}\n')
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    earlier = tmp_path / "earlier"
    export_inference(run, earlier)
    (earlier / "notes.txt").write_text("an export and something else is no longer only an export")
    before = tree(tmp_path)
    for out in (run, run.parent, tmp_path, run / "checkpoints", step, other, earlier):
        proc = cli_in_process("export", "--checkpoint", run, "--out", out)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, (out, proc.stderr)
        assert tree(tmp_path) == before, f"export --out {out} changed files"
    assert "holds a run" in cli_in_process("export", "--checkpoint", run, "--out", run).stderr
    # an earlier export with a file of yours is no run: said as what it is
    line = cli_in_process("export", "--checkpoint", run, "--out", earlier).stderr.strip()
    assert line.endswith(f"{earlier} exists and is not an inference export; refusing to replace it (use a new or "
                         "empty folder)"), line

    # An earlier export (its manifest's files and nothing else) is replaced; an empty folder is used.
    again = tmp_path / "again"
    first = export_inference(run, again)
    (again / ckpt.EXPORT_WEIGHTS).write_bytes(b"stale")
    export_inference(run, again)
    assert (again / ckpt.EXPORT_WEIGHTS).read_bytes() != b"stale" and first.tensors > 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_in_process("export", "--checkpoint", step, "--out", empty).returncode == 0
    assert sorted(p.name for p in empty.iterdir()) == sorted(p.name for p in again.iterdir())
    assert tree(run) == {k[len("runs/run/"):]: v for k, v in before.items() if k.startswith("runs/run/")}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary folder was left"


def test_every_export_file_gets_the_same_mode(tmp_path: Path) -> None:
    from conftest import write_tiny_checkpoint

    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    export_inference(run, tmp_path / "export")
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "export").iterdir()}
    assert modes[ckpt.EXPORT_WEIGHTS] == "0o644" and set(modes.values()) == {"0o644"}, modes
    assert not [p for p in (tmp_path / "export").iterdir() if p.name.startswith(".")]  # no temporary left


def test_atomic_path_replaces_or_keeps_the_file(tmp_path: Path) -> None:
    from augment.files import atomic_path

    target = tmp_path / "w.bin"
    with atomic_path(target) as path:
        path.unlink()  # a writer that makes a new file: its 0600 mode is not kept
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"new")
        os.close(fd)
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError):
        with atomic_path(target) as path:
            path.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]


def test_predict_from_a_lean_export_is_one_line(tmp_path: Path) -> None:
    """A lean export's only trained row is the mean `<mean>`: predict refuses it in one line (it
    raised a ValueError traceback from the identifier parser)."""
    from conftest import cli_in_process, write_tiny_checkpoint

    write_tiny_checkpoint(tmp_path / "run")
    export_inference(tmp_path / "run", tmp_path / "lean", lean=True)
    proc = cli_in_process("predict", "--checkpoint", tmp_path / "lean", "--tasks", SMALL_TASKS,
                          "--out", tmp_path / "s.json", "--no-progress")
    assert proc.returncode == 2, proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert "lean export" in line and "ttt" in line and str(tmp_path / "lean") in line
    assert not (tmp_path / "s.json").exists()


def test_the_help_says_an_export_is_a_checkpoint_too(tmp_path: Path) -> None:
    # An export was always taken (e.g. to lean it), but --checkpoint's help named only runs and checkpoints.
    from conftest import cli_in_process, write_tiny_checkpoint

    proc = cli_in_process("export", "--help")
    help_text = " ".join(proc.stdout.split())
    assert "run folder (its latest checkpoint), checkpoint folder or an inference export" in help_text, help_text
    export_inference(write_tiny_checkpoint(tmp_path / "run"), tmp_path / "whole")
    proc = cli_in_process("export", "--checkpoint", tmp_path / "whole", "--out", tmp_path / "lean", "--lean")
    assert proc.returncode == 0 and (tmp_path / "lean" / ckpt.EXPORT_WEIGHTS).is_file(), proc.stderr


def test_exporting_from_an_export_names_the_source_an_export_folder(tmp_path: Path) -> None:
    # The size of the source read "(checkpoint folder: X MB)" when the source was an export.
    from conftest import cli_in_process, write_tiny_checkpoint

    run = write_tiny_checkpoint(tmp_path / "run")
    proc = cli_in_process("export", "--checkpoint", run, "--out", tmp_path / "whole")
    assert proc.returncode == 0 and "MB (checkpoint folder: " in proc.stdout, proc.stderr
    proc = cli_in_process("export", "--checkpoint", tmp_path / "whole", "--out", tmp_path / "lean", "--lean")
    assert proc.returncode == 0, proc.stderr
    assert "MB (export folder: " in proc.stdout and "checkpoint folder" not in proc.stdout, proc.stdout
    # Onto itself: refused in words that fit an export as the source (they said "the checkpoint").
    proc = cli_in_process("export", "--checkpoint", tmp_path / "lean", "--out", tmp_path / "lean")
    assert proc.returncode == 2 and "another folder than the one it is read from" in proc.stderr, proc.stderr


def test_a_fault_in_an_exports_config_names_its_config_json(tmp_path: Path) -> None:
    """Before: a key misspelt in an export's config.json (an edit of the same size, which the
    manifest's size check lets through) was reported against model.safetensors, a file that holds
    no config to fix."""
    from conftest import cli_in_process, write_tiny_checkpoint

    write_tiny_checkpoint(tmp_path / "run")
    export_inference(tmp_path / "run", tmp_path / "export")
    config = tmp_path / "export" / "config.json"
    config.write_text(config.read_text().replace('"num_heads"', '"num_headz"'))
    proc = cli_in_process("predict", "--checkpoint", tmp_path / "export", "--tasks", SMALL_TASKS,
                          "--out", tmp_path / "s.json", "--no-progress")
    line, = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and line.startswith(f"arc-trm predict: error: {config}: checkpoint config"), line
    assert "num_headz" in line and not (tmp_path / "s.json").exists()


def test_raw_weights_of_an_export_are_refused_in_one_line(tmp_path: Path) -> None:
    """`predict --weights model` on an export ran the EMA weights, the only ones an export holds,
    without a word."""
    from conftest import cli_in_process, write_tiny_checkpoint

    write_tiny_checkpoint(tmp_path / "run")
    export_inference(tmp_path / "run", tmp_path / "export")
    args = ["--tasks", "arc-agi-1:training/3c9b0459@test", "--out", tmp_path / "s.json", "--no-progress",
            "--weights", "model", "--views", "1", "--max-steps", "1"]
    proc = cli_in_process("predict", "--checkpoint", tmp_path / "export", *args)
    line, = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and str(tmp_path / "export") in line and "EMA weights only" in line, line
    assert not (tmp_path / "s.json").exists()
    assert cli_in_process("predict", "--checkpoint", tmp_path / "run", *args).returncode == 0  # a run holds both


def test_export_out_the_folder_one_is_in_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """`arc-trm export --out .` from an empty folder ended in a ValueError traceback (". has an
    empty name"). An export replaces its folder whole, so the folder one is in (empty, or an earlier
    export) is refused: the shell would be left in a removed folder. A relative name elsewhere works."""
    from conftest import cli_in_process, write_tiny_checkpoint
    from submission.runfolder import is_export

    run = write_tiny_checkpoint(tmp_path / "run")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for out in (".", "./", str(here)):
        proc = cli_in_process("export", "--checkpoint", run, "--out", out)
        line, = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "holds the folder you are in" in line and "folder inside it" in line, line
        assert list(here.iterdir()) == []
    assert cli_in_process("export", "--checkpoint", run, "--out", "export").returncode == 0
    monkeypatch.chdir(here / "export")  # in an earlier export: the same
    proc = cli_in_process("export", "--checkpoint", run, "--out", ".")
    assert proc.returncode == 2 and "holds the folder you are in" in proc.stderr, proc.stderr
    assert cli_in_process("export", "--checkpoint", run, "--out", "../again").returncode == 0
    assert is_export(here / "export") and is_export(here / "again")
    assert sorted(p.name for p in here.iterdir()) == ["again", "export"], "a temporary folder was left"
