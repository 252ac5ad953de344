"""Shared helpers for tests: a tiny model config and real ARC tasks small enough for CPU.

Tiers: a test that takes more than a few seconds (a trained run, a budgeted ttt, several processes)
gets `@pytest.mark.slow`; `bash scripts/test.sh --quick` runs the rest, and tests/test_tiers.py
checks that the rest still imports every module."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# Three real ARC-AGI-1 training tasks with 3x3 grids, tested on their test inputs.
SMALL_TASKS = "arc-agi-1:training/3c9b0459+6150a2bd+74dd1130@test"

# ConceptARC is not committed: tests read it beside the checkout, as CI has it, and skip without it.
CONCEPTARC = Path(__file__).resolve().parents[2] / "shared" / "data" / "conceptarc_challenges.json"

# A model and data size that trains a step in well under a second on one CPU core.
TINY = ["model.hidden_size=32", "model.num_heads=2", "model.H_cycles=2", "model.L_cycles=1",
        "model.halt_max_steps=3", "model.puzzle_emb_len=2", "data.canvas=6", "data.augmentations=4",
        "train.global_batch_size=8", "train.lr_warmup_steps=2", "train.log_every=1"]


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def run_cli(*args: str, timeout: float = 300, env: dict | None = None, module: list[str] | None = None,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run `arc-trm ARGS` in a fresh process with one thread (the suite runs on 2 cores)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, *(module or ["-m", "arc_trm.cli"]), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)


def cli_in_process(*args: str) -> subprocess.CompletedProcess:
    """`arc-trm ARGS` through the console script's own entry point, in this process: for the many
    one-line-error cases, where a new interpreter (and torch import) per case costs seconds. An
    uncaught exception fails the calling test, as a traceback would."""
    import contextlib
    import io

    from arc_trm.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's own usage errors
            code = e.code if isinstance(e.code, int) else 2
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def write_wheel(path: Path) -> Path:
    """The least a wheel holds for pip: a zip with NAME-VERSION.dist-info/METADATA."""
    import zipfile

    name, version = path.name.split("-")[:2]
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return path


def network_reachable(host: str = "pypi.org", port: int = 443, timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def small_build(tmp_path_factory) -> Path:
    """The augmented set of SMALL_TASKS at the TINY data size, built once per session."""
    from augment.build import BuildOptions, ensure_built

    out = tmp_path_factory.mktemp("built") / "small"
    ensure_built(SMALL_TASKS, out, BuildOptions(augmentations=4, canvas=6, progress=False))
    return out


@pytest.fixture(scope="session")
def tiny_run_once(tmp_path_factory, small_build: Path) -> Path:
    """A TINY run trained 3 steps on SMALL_TASKS by `arc-trm train`, EMA on, once per session (each
    test that trained its own spent a process and a torch import on it). Use `tiny_run`, a copy."""
    run = tmp_path_factory.mktemp("tiny_run") / "run"
    proc = run_cli("train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--build", small_build, "--out", run,
                   "--no-progress", *sets(TINY + ["train.max_steps=3", "train.ema_rate=0.9"]))
    assert proc.returncode == 0, proc.stderr
    return run


@pytest.fixture
def tiny_run(tiny_run_once: Path, tmp_path: Path) -> Path:
    """This test's own copy of the shared tiny run: free to change or break."""
    return Path(shutil.copytree(tiny_run_once, tmp_path / "tiny_run"))


def tiny_config(*extra: str):
    """cpu-quick at TINY sizes on SMALL_TASKS, with `extra` overrides (key=value)."""
    from arc_trm.config import preset
    from arc_trm.overrides import apply_overrides

    cfg = apply_overrides(preset("cpu-quick"), TINY + list(extra))
    cfg.data.tasks = SMALL_TASKS
    return cfg


def write_tiny_checkpoint(run: Path, step: int = 10, state_patch: dict | None = None, ids: dict | None = None) -> Path:
    """A valid arc-trm run folder with one untrained TINY checkpoint, written the way training
    writes it (no training: fast). `state_patch` replaces entries of state.pt; `ids` its
    identifiers.json (two rows besides the blank; default: 3c9b0459's, no task content recorded)."""
    import json

    import torch

    from arc_trm import checkpoint as ckpt
    from arc_trm.model import TRM

    cfg = tiny_config()  # data.tasks: what its puzzle rows mean (a resume with --tasks SMALL_TASKS matches)
    cfg.model.num_puzzle_ids, cfg.model.seq_len = 3, cfg.data.canvas ** 2
    cfg.model.forward_dtype = "float32"
    torch.manual_seed(0)
    model = TRM(cfg.model)
    ids = ids or {"identifiers": ["<blank>", "3c9b0459#0", "3c9b0459#1"],
                  "augmentations": ["", "t0p0123456789", "t1p0123456789"]}
    state = {"model": model.state_dict(), "ema": None, "optim": {}, "sampler": None, "step": step,
             "config": json.dumps(cfg.to_dict()), "identifiers": ids["identifiers"], **(state_patch or {})}
    run.mkdir(parents=True, exist_ok=True)
    tmp = ckpt.begin_checkpoint(run, step)
    ckpt.torch_save_atomic(state, tmp / "state.pt")
    (tmp / "config.json").write_text(state["config"] if isinstance(state["config"], str) else "{}")
    (tmp / "identifiers.json").write_text(json.dumps(ids))
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    return ckpt.commit_checkpoint(run, step)



# ----------------------------------------------------------------------------------------------
# --cpu-durations: per-test CPU seconds (this process and the subprocesses it waited for), which
# stay comparable when the machine is shared and wall times (--durations) are not.

def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class CpuDurations:
    """Measures setup + call + teardown of each test; session fixtures count toward their first user."""

    START = pytest.StashKey[float]()

    def __init__(self, show: int) -> None:
        self.show = show
        self.table: list[tuple[float, str]] = []

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        item.stash[self.START] = cpu_seconds()
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        if call.when == "teardown" and self.START in item.stash:  # user_properties reach an xdist controller
            item.user_properties.append(("cpu_s", cpu_seconds() - item.stash[self.START]))
        yield

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        cpu = dict(report.user_properties).get("cpu_s") if report.when == "teardown" else None
        if cpu is not None:
            self.table.append((cpu, report.nodeid))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        rows = sorted(self.table, reverse=True)
        terminalreporter.write_sep("=", f"CPU seconds per test (total {sum(c for c, _ in rows):.1f})")
        for cpu, nodeid in rows[: self.show or None]:
            terminalreporter.write_line(f"{cpu:8.2f}s  {nodeid}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cpu-durations", type=int, default=None, metavar="N",
                     help="show the N tests that used the most CPU time, subprocesses included (0: all; "
                          "default: off)")


def pytest_configure(config: pytest.Config) -> None:
    # One torch thread per test process and the subprocesses it starts (they inherit the variable):
    # at these model sizes a second intra-op thread costs more than it gives (the learning test
    # used about 3x the CPU time with 2 threads on 2 cores), and `pytest -n 2` runs two tests at once.
    # Set before torch is imported (at collection); an explicit OMP_NUM_THREADS is kept.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    show = config.getoption("--cpu-durations")
    if show is not None:
        config.pluginmanager.register(CpuDurations(show), "cpu-durations")
