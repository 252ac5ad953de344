"""Metrics flow through one sink: metrics.jsonl is the source of truth, and train.wandb_project
also logs the same records to Weights & Biases (here offline: no network)."""

from __future__ import annotations

import json
import sys

import pytest

from arc_trm.train import TrainOptions, train
from augment.store import BuiltSet

from conftest import SMALL_TASKS, TINY, cli_in_process, run_cli, sets, tiny_config


def wandb_records(path) -> list[bytes]:
    """The records of a .wandb file: a 7-byte header (:W&B, magic, version), then LevelDB-log
    blocks of 32 KiB whose chunks (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) carry
    one serialised Record each (wandb 0.2x/0.3x no longer ships a Python reader)."""
    data, block, pos, records, pending = path.read_bytes(), 32768, 7, [], b""
    assert data[:4] == b":W&B", "not a W&B datastore file"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the rest of a block is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            records.append(pending)
    return records


def offline_history(run_dir) -> list[dict]:
    """The history rows of an offline W&B run, read back from its .wandb file."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    rows = []
    for data in wandb_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def test_metrics_jsonl_without_wandb_never_imports_it(tmp_path, small_build):
    train(tiny_config("train.max_steps=2", "train.log_every=1"), tmp_path / "run",
          TrainOptions(built=BuiltSet.open(small_build), progress=False))
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]
    assert "wandb" not in sys.modules and not (tmp_path / "run" / "wandb").exists()


def test_wandb_project_logs_the_same_records_offline(tmp_path, small_build, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install wandb)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = tmp_path / "run"
    cfg = tiny_config("train.max_steps=3", "train.log_every=1", "train.wandb_project=arc-trm-test")
    train(cfg, run, TrainOptions(built=BuiltSet.open(small_build), progress=False))
    # finish() can return before W&B's service has flushed the .wandb file (seen once under CI
    # load: no history rows); teardown waits for the service, as the exit hook does for a user.
    import wandb
    wandb.teardown()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    history = offline_history(run)
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert [h["_step"] for h in history] == [1, 2, 3]
    for line, row in zip(lines, history):
        assert row["loss"] == pytest.approx(line["loss"]) and row["lr"] == pytest.approx(line["lr"])


def test_a_wandb_that_cannot_start_is_one_line_and_leaves_no_run_to_refuse_the_retry(tmp_path, small_build):
    """No W&B login: a 40-line traceback, and the config.json it left made the same command
    without W&B refuse the folder as a run."""
    pytest.importorskip("wandb", reason="wandb is not installed (pip install wandb)")
    out = tmp_path / "run"
    args = ["train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--build", small_build, "--out", out,
            "--no-progress", *sets(TINY + ["train.max_steps=1"])]
    env = {"HOME": str(tmp_path), "WANDB_API_KEY": "", "WANDB_MODE": "online", "WANDB_DIR": str(tmp_path),
           "NETRC": str(tmp_path / "no-netrc")}
    res = run_cli(*args, "--set", "train.wandb_project=arc-trm-test", env=env)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert lines[-1].startswith("arc-trm train: error: train.wandb_project=arc-trm-test: W&B did not start (")
    assert not (out / "config.json").exists() and not (out / "metrics.jsonl").exists()
    assert cli_in_process(*args).returncode == 0  # the retry without W&B is not refused


def test_the_train_bar_on_a_terminal_shows_the_median_eta_not_tqdm_s(tmp_path, small_build):
    """On a terminal the bar showed tqdm's own remaining time, a moving average that swings with a
    compile, a checkpoint or another job's load; it now shows the median ETA the plain line gives."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios
    import threading

    from conftest import SMALL_TASKS, TINY, sets

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))  # a 200-column terminal
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the terminal closed (EIO once the process is gone)
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    proc = subprocess.run([sys.executable, "-m", "arc_trm.cli", "train", "--tasks", SMALL_TASKS, "--preset",
                           "cpu-quick", "--build", str(small_build), "--out", str(tmp_path / "run"),
                           *sets(TINY + ["train.max_steps=3"])], stdout=subprocess.PIPE, stderr=slave, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    os.close(slave)
    reader.join(timeout=30)
    os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, screen[-2000:]
    bars = [part for part in screen.replace("\r", "\n").splitlines() if part.startswith("train:")]
    assert bars and bars[-1].startswith("train: 100%"), (screen[-2000:], proc.stdout[-2000:])
    assert ", ETA " in bars[-1] and "<" not in bars[-1] and "/s]" not in bars[-1], bars[-1]


def test_a_phase_of_a_longer_run_counts_its_lines_and_eta_to_the_run_s_end(tmp_path, small_build, capsys,
                                                                          monkeypatch):
    """TTT trains in phases (train stops at each, then predicts): its lines read "step 4/4 ... ETA 0s"
    at the end of a phase of a 12-step run, as if the run were ending."""
    import re
    import time

    from arc_trm.metrics import LogWindow

    summary = LogWindow.summary  # each lap of 2 steps takes at least 0.5 s: the ETA's 8 steps, 2 s
    monkeypatch.setattr(LogWindow, "summary", lambda self, d: (time.sleep(0.5), summary(self, d))[1])
    train(tiny_config("train.max_steps=12", "train.log_every=2"), tmp_path / "run",
          TrainOptions(built=BuiltSet.open(small_build), progress=False, stop_at=4, run_end=12))
    lines = re.findall(r"^step (\d+)/(\d+): .*, ETA (\S+)$", capsys.readouterr().out, re.MULTILINE)
    assert [(step, end) for step, end, _ in lines] == [("2", "12"), ("4", "12")], lines
    assert lines[-1][2] not in ("0s", "1s"), lines  # 8 steps left, at 0.25 s or more each
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]  # the phase itself still ends at its stop
