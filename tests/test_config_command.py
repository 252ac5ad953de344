"""`--set` typos get a suggestion, `arc-trm config` prints every key with its value and meaning,
and `train` takes --seed and --device as flags."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from arc_trm import train_cli as train
from arc_trm.config import RunConfig, config_from_json, preset
from arc_trm.overrides import apply_overrides
from arc_trm.show_config import MEANINGS
from augment.errors import InputError

from conftest import cli_in_process, write_tiny_checkpoint


@pytest.mark.parametrize("typo, suggestion", [
    ("train.max_step", "train.max_steps"), ("learning_rate", "lr"), ("train.learning_rate", "train.lr"),
    ("hiden_size", "hidden_size"), ("trian.lr", "train.lr"), ("data.canva", "data.canvas")])
def test_a_mistyped_key_gets_a_suggestion(typo, suggestion):
    with pytest.raises(ValueError, match=f"did you mean {suggestion}\\?$"):
        apply_overrides(preset("cpu-quick"), [f"{typo}=3"])


def test_a_mistyped_key_is_one_line_from_train(tmp_path):
    proc = cli_in_process("train", "--out", tmp_path / "run", "--set", "train.max_step=3")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "arc-trm train: error: config key 'train.max_step' matches no config field; did you mean train.max_steps?"]


def field_keys() -> list[str]:
    cfg = RunConfig()
    return [f"{s}.{f.name}" for s in ("model", "train", "data") for f in dataclasses.fields(getattr(cfg, s))]


def test_config_prints_every_key_with_its_value_and_meaning(tmp_path):
    assert sorted(MEANINGS) == sorted(field_keys())  # a new field needs its line
    proc = cli_in_process("config", "--preset", "cpu-quick", "--set", "lr=3e-4", "--set", "data.tasks=arc-agi-1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(field_keys())
    for key, line in zip(field_keys(), lines):
        assert line.startswith(f"{key} = ") and line.rstrip().endswith(MEANINGS[key]) and MEANINGS[key], line
    assert any(line.startswith("train.lr = 0.0003 ") for line in lines)
    assert any(line.startswith("data.tasks = 'arc-agi-1' ") for line in lines)
    assert any(line.startswith("model.hidden_size = 64 ") for line in lines)  # the preset's, not the default

    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    proc = cli_in_process("config", "--run", run)
    assert proc.returncode == 0 and "model.hidden_size = 32 " in proc.stdout
    proc = cli_in_process("config", "--run", run / "config.json")  # the file itself: RUN/config.json/config.json
    assert proc.returncode == 0 and "model.hidden_size = 32 " in proc.stdout, proc.stderr
    proc = cli_in_process("config", "--set", "learning_rate=1")
    assert proc.returncode == 2 and "did you mean lr?" in proc.stderr


def test_train_takes_seed_and_device_flags(tmp_path):
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    cfg = train.resolve_config(parser.parse_args(["--out", str(tmp_path), "--seed", "7", "--device", "cpu",
                                                  "--preset", "cpu-quick"]))
    assert cfg.train.seed == 7 and cfg.train.device == "cpu"
    cfg = train.resolve_config(parser.parse_args(["--out", str(tmp_path), "--preset", "cpu-quick"]))
    assert cfg.train.seed == 0 and cfg.train.device == "auto"
    proc = cli_in_process("train", "--out", tmp_path / "run", "--seed", "-1")
    assert proc.returncode == 2 and "train.seed must be an integer >= 0, got -1" in proc.stderr


@pytest.mark.parametrize("data, reason", [
    ([1, 2], "expected a JSON object"),
    ({"model": {}, "train": {}}, "expected a JSON object"),
    ({"model": {"hidden_size": "wide"}, "train": {}, "data": {}}, "hidden_size"),
    # Before: a key beside the sections ("lr" edited in at the top) was ignored without a word.
    ({"model": {}, "train": {}, "data": {}, "lr": 1e-5}, r"unknown top-level keys: \['lr'\]"),
])
def test_a_config_file_this_version_cannot_read_is_one_line_naming_it(data, reason):
    with pytest.raises(InputError, match=rf"^run/config.json: run config is not one this arc-trm reads \(.*{reason}"):
        config_from_json(data, "run/config.json")
    assert config_from_json(preset("cpu-quick").to_dict(), "x") == preset("cpu-quick")


def test_config_shows_the_grid_length_the_preset_trains_with():
    """seq_len follows data.canvas when train builds the model; `config` printed the dataclass
    default (900) beside cpu-quick's canvas 10, a length no cpu-quick run has."""
    proc = cli_in_process("config", "--preset", "cpu-quick")
    assert proc.returncode == 0, proc.stderr
    assert "data.canvas = 10 " in proc.stdout and "model.seq_len = 100 " in proc.stdout, proc.stdout
    proc = cli_in_process("config", "--preset", "cpu-quick", "--set", "data.canvas=8")
    assert "model.seq_len = 64 " in proc.stdout, proc.stdout


def test_config_of_a_run_with_another_canvas_shows_its_grid_length(tmp_path):
    """`config --run RUN --set data.canvas=8` kept the run's saved seq_len (36 for canvas 6)."""
    write_tiny_checkpoint(tmp_path / "run")
    proc = cli_in_process("config", "--run", tmp_path / "run", "--set", "data.canvas=8")
    assert proc.returncode == 0, proc.stderr
    assert "data.canvas = 8 " in proc.stdout and "model.seq_len = 64 " in proc.stdout, proc.stdout
