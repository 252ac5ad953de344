"""Run notebooks/kaggle_submission.ipynb end to end on CPU, as Kaggle would but offline and small.

The Kaggle folders are simulated in tmp_path (ARC_TRM_INPUT / ARC_TRM_WORKING): a competition folder
with three small tasks whose test outputs are removed, and the dataset written by the real bundle
code. The kernel and every process it starts run with tests/netblock on PYTHONPATH, so nothing can
reach the network. The solutions stay outside the input folder and score the result afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from augment.tasks import load_tasks
from submission import bundle as kb
from submission.kaggle import load_solutions, load_submission, validate_submission
from submission.score import score_submission

from conftest import network_reachable

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "kaggle_submission.ipynb"
NETBLOCK = Path(__file__).parent / "netblock"
TASK_IDS = ("3c9b0459", "6150a2bd", "67a3c6ac")  # arc-agi-1 training, every grid at most 10x10
KERNEL = "arc-trm-test"
# Shrinks the run so that the whole notebook takes about a minute on 2 CPU cores.
SMALL = "train.max_steps=30 data.augmentations=8 train.global_batch_size=16"
SMALL_TTT_ARGS = "--batch-size 24"  # 3 test inputs x 8 views: predict in one small batch
NETBLOCK_PROBE = """import socket
try:
    socket.create_connection(("8.8.8.8", 53), timeout=2)
    print("NETWORK OPEN")
except OSError as e:
    print("blocked:", e)"""


def blocked_env(**extra: str) -> dict[str, str]:
    old = os.environ.get("PYTHONPATH")
    path = str(NETBLOCK) + (os.pathsep + old if old else "")
    return {**os.environ, "PYTHONPATH": path, **extra}


def test_netblock_refuses_outside_addresses() -> None:
    code = """import socket
for call in (lambda: socket.create_connection(("8.8.8.8", 53), timeout=2),
             lambda: socket.socket().connect(("8.8.8.8", 53)),
             lambda: socket.socket(socket.AF_INET6).connect(("2001:4860:4860::8888", 53)),
             lambda: socket.create_connection(("pypi.org", 443), timeout=2)):
    try:
        call()
        print("OPEN")
    except OSError as e:
        print(e)
print("connect_ex", socket.socket().connect_ex(("8.8.8.8", 53)))
try:  # loopback is allowed through: only the OS answers (nothing listens on port 9)
    socket.create_connection(("127.0.0.1", 9), timeout=2)
except OSError as e:
    print("loopback:", e)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=blocked_env(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "OPEN" not in lines
    assert sum("arc-trm netblock" in ln for ln in lines) == 4, proc.stdout
    assert "connect_ex 111" in lines
    loopback = next(ln for ln in lines if ln.startswith("loopback:"))
    assert "netblock" not in loopback


def write_kaggle_input(tmp: Path) -> tuple[Path, Path]:
    """input/arc-prize-2025/arc-agi_test_challenges.json (no test outputs) and, outside input/,
    the matching solutions file."""
    tasks = load_tasks("arc-agi-1:training/" + "+".join(TASK_IDS))
    assert all(max(g.shape) <= 10 for t in tasks for p in (*t.train, *t.test) for g in (p.input, p.output))
    challenges = tmp / "input" / "arc-prize-2025" / "arc-agi_test_challenges.json"
    challenges.parent.mkdir(parents=True)
    challenges.write_text(json.dumps({t.id: {"train": [{"input": p.input.tolist(), "output": p.output.tolist()}
                                                       for p in t.train],
                                             "test": [{"input": p.input.tolist()} for p in t.test]}
                                      for t in tasks}))
    solutions = tmp / "answers" / "arc-agi_test_solutions.json"
    solutions.parent.mkdir()
    solutions.write_text(json.dumps({t.id: [p.output.tolist() for p in t.test] for t in tasks}))
    return challenges, solutions


def write_dataset(tmp: Path) -> Path:
    """The attached dataset as `arc-trm kaggle bundle` makes it (no checkpoint: train from scratch)."""
    result = kb.write_bundle(tmp / "dist", user="tester", log=lambda *_: None)
    if result.missing:
        if not network_reachable():
            pytest.skip(f"no wheel for {', '.join(result.missing)} in the local cache and the network is "
                        f"unreachable; put them in {kb.default_cache()} to run this test offline")
        pytest.fail(f"network is up but pip download failed for {result.missing}")
    dataset = tmp / "input" / "arc-trm-bundle"
    result.dataset.rename(dataset)
    return dataset


def install_kernelspec(tmp: Path) -> Path:
    """A kernelspec that runs this interpreter (the test venv), found first through JUPYTER_PATH."""
    spec = tmp / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "arc-trm test", "language": "python"}))
    return spec.parent.parent


def cell_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def execute_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run the notebook offline against tmp_path/input; the text output of each code cell, the last
    one being a probe that shows the kernel cannot reach the network."""
    for key, value in {
        "JUPYTER_PATH": str(install_kernelspec(tmp_path)),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "PYTHONPATH": blocked_env()["PYTHONPATH"],
        "ARC_TRM_INPUT": str(tmp_path / "input"),
        "ARC_TRM_WORKING": str(tmp_path / "working"),
        "ARC_TRM_BUDGET": "60s",
        "ARC_TRM_SET": SMALL,
        "ARC_TRM_TTT_ARGS": SMALL_TTT_ARGS,
    }.items():
        monkeypatch.setenv(key, value)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(NETBLOCK_PROBE))  # proves the kernel itself is offline
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=170,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [cell_text(c) for c in nb.cells if c.cell_type == "code"]
    (tmp_path / "executed.txt").write_text("\n".join(outputs))  # for a look after a failure
    assert outputs[-1].startswith("blocked:") and "arc-trm netblock" in outputs[-1]
    return outputs


def test_notebook_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    challenges, solutions_path = write_kaggle_input(tmp_path)
    write_dataset(tmp_path)
    working = tmp_path / "working"
    record_before = metadata.distribution("arc-trm").read_text("RECORD")

    text = "\n".join(execute_notebook(tmp_path, monkeypatch))
    assert "fallback submission:" in text
    # The package is already installed here: pip must leave the test environment alone.
    assert "already satisfied: arc-trm" in text.lower()
    assert metadata.distribution("arc-trm").read_text("RECORD") == record_before
    assert "ttt exit code: 0" in text, text[-4000:]
    assert "valid submission: 3 tasks" in text

    sub = load_submission(working / "submission.json")
    tasks = load_tasks(str(challenges))
    validate_submission(sub, tasks)
    report = score_submission(sub, load_solutions(solutions_path))
    assert len(report.tasks) == len(TASK_IDS)
    assert all(0.0 <= t.fraction <= 1.0 for t in report.tasks)
    assert 0.0 <= report.per_task <= 1.0
    # ttt really trained (a checkpoint) in the working folder.
    assert (working / "ttt_run" / "checkpoints" / "latest").is_file(), text[-4000:]


def test_notebook_without_dataset_keeps_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No wheels attached: nothing is installed, ttt is skipped, and the fallback is the submission."""
    challenges, _ = write_kaggle_input(tmp_path)
    text = "\n".join(execute_notebook(tmp_path, monkeypatch))
    assert "installed: False" in text and "skipping ttt" in text
    sub = json.loads((tmp_path / "working" / "submission.json").read_text())
    data = json.loads(challenges.read_text())
    assert sub == {tid: [{"attempt_1": t["input"], "attempt_2": t["input"]} for t in task["test"]]
                   for tid, task in data.items()}


def test_notebook_structure() -> None:
    """Fallback before install and before ttt; validation last; no cell imports arc-trm before install."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    first = lambda needle: next(i for i, src in enumerate(code) if needle in src)  # noqa: E731
    assert first("write_fallback()") < first('"pip", "install"') < first("run_streaming(cmd")
    assert "validate_submission" in code[-1]
    assert all(c.cell_type == "markdown" for c in nb.cells[:1])
    assert all(len(src.splitlines()) <= 30 for src in code), "keep cells short"
