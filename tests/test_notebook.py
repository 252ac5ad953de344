"""Run notebooks/kaggle_submission.ipynb end to end on CPU, as Kaggle would but offline and small.

The Kaggle folders are simulated in tmp_path (ARC_TRM_INPUT / ARC_TRM_WORKING) in both layouts (2026:
competitions/<slug>/ and datasets/<owner>/<slug>/; older: <slug>/): a competition folder with three
small tasks whose test outputs are removed, and the dataset written by the real bundle code (with a
lean export of a pretrained-like checkpoint, or without a checkpoint). An unrelated conflict in the
image (sympy 1.12 under torch's sympy>=1.13.3 pin) is reproduced with a shadow distribution. The
device report is faked (ARC_TRM_FAKE_DEVICE) to show the T4 / P100 / no-GPU decisions, and a fake ttt
whose workers ignore SIGTERM shows that the watchdog ends the whole tree. The kernel and every process it starts run with tests/netblock on PYTHONPATH, so nothing can
reach the network. The solutions stay outside the input folder and score the result afterwards. The
harness (folders, kernel, execution) is tests/notebook_harness.py.
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
from submission.kaggle import load_submission, validate_submission

from notebook_harness import built_dataset  # noqa: F401  (the module's fixture, used by name)
from notebook_harness import (LAYOUTS, NETBLOCK, NOTEBOOK, P100, PRETRAINED_HIDDEN, SLUG_2026, T4, attach, blocked_env,
                              cell_seconds, cell_text, check_scored, execute_notebook, nbformat, notebook_text,
                              write_kaggle_input, write_sympy_conflict)
from test_watchdog import FAKE_TTT, alive


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


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["2026", "2025"])
def test_notebook_end_to_end(layout: str, built_dataset: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """2026 layout inside the scoring rerun (full budget, every task), from the lean export, in an
    image whose sympy conflicts with torch's pin; the older layout, named by ARC_TRM_COMPETITION,
    outside it (smoke budget on 2 of the 3 tasks, merged into the fallback), from scratch."""
    comp_folder, data_folder = LAYOUTS[layout]
    challenges, solutions = write_kaggle_input(tmp_path, comp_folder)
    rerun = layout == "2026"
    attach(built_dataset, tmp_path, data_folder, checkpoint=rerun)
    working = tmp_path / "working"
    record_before = metadata.distribution("arc-trm").read_text("RECORD")
    settings = {"ARC_TRM_ALLOW_CPU": "1"}
    if rerun:  # loading the checkpoint and the embeddings-only phase need a little more time than from scratch
        settings.update(KAGGLE_IS_COMPETITION_RERUN="Batch", ARC_TRM_BUDGET="90s")
    else:
        settings.update(ARC_TRM_COMPETITION="arc-prize-2025", ARC_TRM_BUDGET="11h", ARC_TRM_SMOKE_BUDGET="60s",
                        ARC_TRM_SMOKE_TASKS="2")
    conflict = write_sympy_conflict(tmp_path / "image") if rerun else None

    text = notebook_text(execute_notebook(tmp_path, monkeypatch, path_first=conflict, **settings))
    assert f"challenges: {challenges}" in text
    assert "fallback submission: 3 tasks" in text
    # The package is already installed here: pip must leave the test environment alone.
    assert "already satisfied: arc-trm" in text.lower()
    assert metadata.distribution("arc-trm").read_text("RECORD") == record_before
    assert "imports: ok" in text and "installed: True" in text
    assert "no GPU; ARC_TRM_ALLOW_CPU is set: preset cpu-quick" in text
    assert "ttt exit code: 0" in text, text[-4000:]
    assert "valid submission: 3 tasks" in text
    plan = json.loads((working / "ttt_run" / "ttt_plan.json").read_text())
    hidden = json.loads((working / "ttt_run" / "config.json").read_text())["model"]["hidden_size"]
    if rerun:
        assert "scoring rerun: full budget 90s on 3 tasks" in text
        lean = next(input_dataset(tmp_path).glob("checkpoint"))
        assert f"checkpoint {lean}" in text  # ttt ran from the lean export
        assert json.loads((lean / "identifiers.json").read_text())["identifiers"] == ["<blank>", "<mean>"]
        assert hidden == PRETRAINED_HIDDEN  # the network came from the checkpoint
        assert plan["steps"] < 3 or plan["freeze_steps"] > 0  # embeddings-only first, as from any checkpoint
    else:
        assert "not the scoring rerun: smoke budget 60s on 2 tasks" in text and "checkpoint None" in text
        smoke = json.loads((working / "smoke_challenges.json").read_text())
        part = json.loads((working / "smoke_submission.json").read_text())
        answered = sum(part[t] != [{"attempt_1": x["input"], "attempt_2": x["input"]} for x in task["test"]]
                       for t, task in smoke.items())  # the tasks whose answers are not the fallback
        assert f"smoke run: {answered} of 2 tasks answered by ttt (the rest keep the fallback)" in text
        assert len(smoke) == 2
        assert plan["freeze_steps"] == 0 and hidden == 64  # from scratch: cpu-quick's network
    check_scored(working, challenges, solutions)
    # ttt really trained (a checkpoint) in the working folder.
    assert (working / "ttt_run" / "checkpoints" / "latest").is_file(), text[-4000:]


def input_dataset(tmp: Path) -> Path:
    return next(p.parent for p in (tmp / "input").rglob("wheels"))


def test_the_conflict_sinks_an_install_that_resolves(built_dataset: Path, tmp_path: Path) -> None:
    """The reproduction is real: with the sympy 1.12 record first on the path, pip's resolver refuses the
    install the notebook used to run (so the run fell back); the notebook's --no-deps install passes."""
    env = {**blocked_env(), "PYTHONPATH": f"{write_sympy_conflict(tmp_path / 'image')}{os.pathsep}{NETBLOCK}"}
    wheels = built_dataset / "wheels"
    base = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--disable-pip-version-check",
            "--find-links", str(wheels)]
    old = subprocess.run([*base, "arc-trm"], capture_output=True, text=True, env=env, timeout=300)
    assert old.returncode != 0 and "sympy>=1.13.3" in old.stdout + old.stderr
    pins = [f"{w.name.split('-')[0].replace('_', '-')}=={w.name.split('-')[1]}" for w in sorted(wheels.glob("*.whl"))]
    new = subprocess.run([*base, "--no-deps", *pins], capture_output=True, text=True, env=env, timeout=300)
    assert new.returncode == 0, new.stdout + new.stderr


def test_notebook_without_dataset_keeps_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Challenges under an unknown slug and layout are found by the recursive search; no wheels
    attached: nothing is installed, ttt is not run, and the fallback is the submission."""
    challenges, _ = write_kaggle_input(tmp_path, "somewhere/arc-prize-2027")
    text = notebook_text(execute_notebook(tmp_path, monkeypatch))
    assert f"challenges: {challenges}" in text
    assert "installed: False" in text and "keeping the fallback submission" in text and "ttt exit" not in text
    sub = json.loads((tmp_path / "working" / "submission.json").read_text())
    data = json.loads(challenges.read_text())
    assert sub == {tid: [{"attempt_1": t["input"], "attempt_2": t["input"]} for t in task["test"]]
                   for tid, task in data.items()}


def test_a_package_that_does_not_import_in_the_kernel_keeps_the_fallback(built_dataset: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The install cell imported submission.runtime outside any guard: a package it needs that does
    not import in this image (here scipy) raised in the cell, and a notebook that raises gives Kaggle
    no submission, though the fallback file was on disk."""
    challenges, _ = write_kaggle_input(tmp_path, f"competitions/{SLUG_2026}")
    attach(built_dataset, tmp_path, LAYOUTS["2026"][1])
    image = tmp_path / "image"
    (image / "scipy").mkdir(parents=True)
    (image / "scipy" / "__init__.py").write_text("raise ImportError('scipy is broken in this image')\n")
    text = notebook_text(execute_notebook(tmp_path, monkeypatch, path_first=image, KAGGLE_IS_COMPETITION_RERUN="1"))
    assert ("arc-trm does not import here (ImportError: scipy is broken in this image): keeping the fallback "
            "submission") in text, text[-3000:]
    assert "installed: False" in text and "ttt exit" not in text and "valid submission: 3 tasks" in text
    validate_submission(load_submission(tmp_path / "working" / "submission.json"), load_tasks(str(challenges)))


def test_notebook_without_challenges_says_so_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "input" / "competitions" / SLUG_2026).mkdir(parents=True)
    cells = execute_notebook(tmp_path, monkeypatch)
    assert cell_text(cells[0]).strip().splitlines() == [
        f"no arc-agi_test_challenges.json anywhere under {tmp_path / 'input'}: nothing to answer, "
        "the notebook stops here"]
    assert all(cell_text(c) == "" for c in cells[1:-1]) and not any(c.get("outputs") for c in cells[1:-1])
    assert not (tmp_path / "working" / "submission.json").exists()


@pytest.mark.parametrize("device", ["p100", "no-gpu"])
def test_a_gpu_torch_cannot_run_or_no_gpu_keeps_the_fallback(device: str, built_dataset: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    challenges, _ = write_kaggle_input(tmp_path, f"competitions/{SLUG_2026}")
    attach(built_dataset, tmp_path, LAYOUTS["2026"][1])
    fake = P100 if device == "p100" else '{"gpus": 0}'
    cells = execute_notebook(tmp_path, monkeypatch, ARC_TRM_FAKE_DEVICE=fake, KAGGLE_IS_COMPETITION_RERUN="1")
    device_cell = [line for line in cell_text(cells[3]).splitlines() if line.startswith("device:")]
    assert len(device_cell) == 1
    if device == "p100":
        assert "Tesla P100-PCIE-16GB (sm_60) cannot run this torch build" in device_cell[0]
        assert "NvidiaL4" in device_cell[0]
    else:
        assert device_cell[0].startswith("device: no GPU; keeping the fallback submission")
    text = notebook_text(cells)
    assert "ttt exit" not in text and "valid submission: 3 tasks" in text
    validate_submission(load_submission(tmp_path / "working" / "submission.json"), load_tasks(str(challenges)))


def test_a_t4_trains_in_float32(built_dataset: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The T4 report picks preset kaggle with forward_dtype float32; a stand-in ttt records its arguments.
    The budget is 10.5h (the notebook's parser read whole numbers only)."""
    write_kaggle_input(tmp_path, f"competitions/{SLUG_2026}")
    attach(built_dataset, tmp_path, LAYOUTS["2026"][1])
    record = tmp_path / "ttt_args.json"
    stand_in = f"{sys.executable} -c 'import json, sys; json.dump(sys.argv[1:], open({json.dumps(str(record))}, \"w\"))'"
    text = notebook_text(execute_notebook(tmp_path, monkeypatch, ARC_TRM_FAKE_DEVICE=T4, ARC_TRM_SET="",
                                          ARC_TRM_TTT_COMMAND=stand_in, KAGGLE_IS_COMPETITION_RERUN="1",
                                          ARC_TRM_BUDGET="10.5h"))
    assert "scoring rerun: full budget 37800s" in text  # a decimal budget, as `arc-trm ttt --budget` takes
    assert "device: 2 x Tesla T4 (sm_75) has no native bf16: preset kaggle in float32" in text
    args = json.loads(record.read_text())
    assert args[args.index("--preset") + 1] == "kaggle"
    assert args[args.index("--set") + 1] == "model.forward_dtype=float32"
    assert 37700 < int(args[args.index("--budget") + 1].rstrip("s")) <= 37800
    assert "ttt exit code: 0" in text and "valid submission: 3 tasks" in text


def test_run_all_twice_starts_afresh_and_keeps_the_first_run(built_dataset: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """"Run All" a second time in the same session: the real ttt (on a canvas no task fits, so it ends in
    seconds) found the first run's folder and refused; the first smoke submission stayed and was merged
    as if ttt had answered. Now the first run moves aside to ttt_run.old-<time> and the old smoke
    submission is deleted before the new smoke run."""
    write_kaggle_input(tmp_path, "arc-prize-2025")
    attach(built_dataset, tmp_path, "arc-trm-bundle", checkpoint=False)
    cells = execute_notebook(tmp_path, monkeypatch, times=2, ARC_TRM_ALLOW_CPU="1", ARC_TRM_COMPETITION="arc-prize-2025",
                             ARC_TRM_SET="data.canvas=2", ARC_TRM_SMOKE_BUDGET="60s",
                             ARC_TRM_TTT_COMMAND=f"{sys.executable} -m arc_trm.cli")
    first, second = (notebook_text(cells[i * 7:(i + 1) * 7]) for i in range(2))
    for text in (first, second):
        assert "ttt exit code: 0" in text and "no task fits the 2x2 canvas" in text, text[-3000:]
        assert "valid submission: 3 tasks" in text
    assert "--force" in next(line for line in second.splitlines() if line.startswith("$ "))
    working = tmp_path / "working"
    [aside] = [p for p in working.iterdir() if p.name.startswith("ttt_run.old-")]
    assert (aside / "ttt_challenges.json").is_file() and (working / "ttt_run" / "ttt_challenges.json").is_file()


@pytest.mark.slow
def test_the_watchdog_ends_a_hung_ttt_and_its_workers(built_dataset: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake ttt whose workers start in new sessions and ignore SIGTERM, and which itself ignores
    SIGTERM: the cell returns within budget + slack + grace + a few seconds, nothing survives, and
    submission.json is still valid."""
    challenges, _ = write_kaggle_input(tmp_path, f"competitions/{SLUG_2026}")
    attach(built_dataset, tmp_path, LAYOUTS["2026"][1])
    script, pids = tmp_path / "fake_ttt.py", tmp_path / "pids.txt"
    script.write_text(FAKE_TTT)
    budget, slack, grace = 40, 1, 3  # the install and its import check (torch) come out of the budget
    try:
        cells = execute_notebook(tmp_path, monkeypatch, ARC_TRM_ALLOW_CPU="1", KAGGLE_IS_COMPETITION_RERUN="1",
                                 ARC_TRM_BUDGET=f"{budget}s", ARC_TRM_WATCHDOG_SLACK=f"{slack}s",
                                 ARC_TRM_WATCHDOG_GRACE=f"{grace}s",
                                 ARC_TRM_TTT_COMMAND=f"{sys.executable} {script} {pids} stubborn")
        started = [int(p) for p in pids.read_text().split()]
        assert len(started) == 5
        assert not [p for p in started if alive(p)], "processes survived the watchdog"
    finally:
        if pids.is_file():
            for p in (int(x) for x in pids.read_text().split()):
                if alive(p):
                    os.kill(p, 9)
    run_cell = cells[5]
    text = cell_text(run_cell)
    assert "watchdog fired" in text and "SIGKILLed 5 processes" in text
    assert cell_seconds(run_cell) < budget + slack + grace + 5, cell_seconds(run_cell)
    assert "valid submission: 3 tasks" in notebook_text(cells)
    validate_submission(load_submission(tmp_path / "working" / "submission.json"), load_tasks(str(challenges)))


def test_a_mistyped_setting_never_stops_the_notebook_before_its_fallback(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """ARC_TRM_WATCHDOG_SLACK=5m (or ARC_TRM_SMOKE_TASKS=all) raised in the first cell, before the
    fallback submission existed. The settings cells run here as the kernel runs them (stdlib only)."""
    challenges, _ = write_kaggle_input(tmp_path, f"competitions/{SLUG_2026}")
    for key, value in {"ARC_TRM_INPUT": tmp_path / "input", "ARC_TRM_WORKING": tmp_path / "working",
                       "ARC_TRM_WATCHDOG_SLACK": "5 minutes", "ARC_TRM_WATCHDOG_GRACE": "nan",
                       "ARC_TRM_SMOKE_TASKS": "all"}.items():
        monkeypatch.setenv(key, str(value))
    code = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    namespace: dict = {}
    for source in code[:2]:  # settings and inputs, then the fallback
        exec(compile(source, "cell", "exec"), namespace)
    sub = json.loads((tmp_path / "working" / "submission.json").read_text())
    assert set(sub) == set(json.loads(challenges.read_text()))
    with pytest.raises(ValueError, match="ARC_TRM_WATCHDOG_SLACK '5 minutes'"):  # named where it is parsed
        from submission.runtime import notebook_settings
        notebook_settings(namespace["FULL_BUDGET"], namespace["SMOKE_BUDGET"], False, namespace["SLACK"],
                          namespace["GRACE"], namespace["SMOKE_TASKS"])


def test_notebook_structure() -> None:
    """Inputs, fallback, install, device probe, watched ttt, validation, in that order; cells stay short."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    first = lambda needle: next(i for i, src in enumerate(code) if needle in src)  # noqa: E731
    assert (first("find_challenges()") < first("write_fallback()") < first('"pip", "install"')
            < first("probe_device()") < first("run_watched(cmd"))
    assert "validate_submission" in code[-1]
    assert all(c.cell_type == "markdown" for c in nb.cells[:1])
    assert all(len(src.splitlines()) <= 30 for src in code), "keep cells short"
    assert "import torch" not in "\n".join(code)  # the kernel never initialises CUDA itself
