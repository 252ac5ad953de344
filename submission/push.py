"""Upload a Kaggle bundle with the kaggle CLI: the dataset (create or new version), a wait until
Kaggle has processed it, then the kernel. arc-trm never imports `kaggle` (it authenticates at
import time); it runs the CLI, found on PATH or beside this Python.

Credentials, any of (what kaggle CLI 2.x accepts): KAGGLE_API_TOKEN, KAGGLE_CONFIG_DIR (default
~/.kaggle)/access_token (written by `kaggle auth login`), kaggle.json there, or KAGGLE_USERNAME
with KAGGLE_KEY. `kernels push --accelerator` needs kaggle >= 1.8.4.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from augment.errors import InputError
from augment.files import read_json

MIN_KAGGLE = (1, 8, 4)
PLACEHOLDER_USER = "YOUR_KAGGLE_USERNAME"
DEFAULT_POLL_S = 15.0
DEFAULT_WAIT_S = 1800.0
# `kaggle kernels push --accelerator` ids (kaggle CLI docs, Feb 2026) -> what the notebook gets. Some are
# offered only to participants of specific competitions or to Kaggle admins.
ACCELERATORS: dict[str, str] = {
    "NvidiaL4": "4 x NVIDIA L4 (24 GB each, bf16): the ARC Prize machine",
    "NvidiaL4X1": "1 x NVIDIA L4 (24 GB, bf16)",
    "NvidiaTeslaT4": "2 x NVIDIA T4 (16 GB each): no native bf16, the notebook trains in float32",
    "NvidiaTeslaT4Highmem": "2 x NVIDIA T4 with more host memory: no native bf16",
    "NvidiaTeslaP100": "1 x P100 (Kaggle's default GPU): sm_60, which the image's torch cannot run",
    "NvidiaTeslaA100": "NVIDIA A100 (restricted availability)",
    "NvidiaH100": "NVIDIA H100 (restricted availability)",
    "NvidiaRtxPro6000": "NVIDIA RTX PRO 6000 (restricted availability)",
    "TpuV38": "TPU v3-8 (arc-trm does not run on TPUs)",
    "Tpu1VmV38": "TPU v3-8 VM (arc-trm does not run on TPUs)",
    "TpuV5E8": "TPU v5e-8 (arc-trm does not run on TPUs)",
    "TpuV6E8": "TPU v6e-8 (arc-trm does not run on TPUs)",
}
DEFAULT_ACCELERATOR = "NvidiaL4"
READY, FAILED = {"ready", "complete", "completed"}, {"error", "failed", "failure"}


@dataclass
class Target:
    """What to push and how (the bundle's folders and ids)."""

    dataset: Path
    kernel: Path
    dataset_id: str
    accelerator: str = DEFAULT_ACCELERATOR
    message: str = "arc-trm bundle"


@dataclass
class Polling:
    every_s: float = DEFAULT_POLL_S
    max_wait_s: float = DEFAULT_WAIT_S


def kaggle_config_dir() -> Path:
    return Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")


def credential_source() -> str | None:
    """Which credentials the kaggle CLI will find, or None."""
    config = kaggle_config_dir()
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if (config / "access_token").is_file():
        return str(config / "access_token")
    if (config / "kaggle.json").is_file():
        return str(config / "kaggle.json")
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME + KAGGLE_KEY"
    return None


def kaggle_username() -> str | None:
    """The username from KAGGLE_USERNAME or kaggle.json, if either is there (used as --user default)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    try:
        data = read_json(kaggle_config_dir() / "kaggle.json", "Kaggle credentials")
    except InputError:
        return None
    name = data.get("username") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def find_cli() -> Path | None:
    """`kaggle` on PATH, else beside this Python (a venv whose bin/ is not on PATH)."""
    found = shutil.which("kaggle")
    if found:
        return Path(found)
    beside = Path(sys.executable).parent / "kaggle"
    return beside if beside.is_file() and os.access(beside, os.X_OK) else None


def cli_version(cli: Path) -> tuple[int, ...] | None:
    """The version `kaggle --version` reports, e.g. (1, 8, 4), or None when it does not say."""
    try:
        proc = subprocess.run([str(cli), "--version"], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", proc.stdout + proc.stderr)
    return tuple(int(g or 0) for g in m.groups()) if proc.returncode == 0 and m else None


def push_problems(user: str) -> list[str]:
    """What stops a push, each with its fix; empty when the CLI, its version and credentials are fine."""
    problems = []
    need = ".".join(map(str, MIN_KAGGLE))
    cli = find_cli()
    if cli is None:
        problems.append("the `kaggle` command is not installed: run  pip install 'arc-trm[kaggle]'  "
                        "(it brings the kaggle CLI and `six`, which kaggle imports without declaring)")
    else:
        version = cli_version(cli)
        if version is None or version < MIN_KAGGLE:
            have = ".".join(map(str, version)) if version else "an unknown version"
            problems.append(f"{cli} is {have}; --accelerator needs kaggle >= {need}: "
                            f"run  pip install -U 'kaggle>={need}'")
    if credential_source() is None:
        config = kaggle_config_dir()
        problems.append(f"no Kaggle credentials: run `kaggle auth login` (writes {config / 'access_token'}), "
                        f"or set KAGGLE_API_TOKEN, or save an API token as {config / 'kaggle.json'} (chmod 600), "
                        "or set KAGGLE_USERNAME and KAGGLE_KEY")
    if user == PLACEHOLDER_USER:
        problems.append("no Kaggle username: pass --user USER (or set KAGGLE_USERNAME)")
    return problems


def run_cli(cli: Path, args: Sequence[str], log: Callable[[str], object], quiet: bool = False
            ) -> subprocess.CompletedProcess:
    if not quiet:
        log("$ kaggle " + " ".join(args))
    return subprocess.run([str(cli), *args], capture_output=quiet, text=True, check=False)


def dataset_exists(cli: Path, dataset_id: str) -> bool:
    """`kaggle datasets status` exits 0 for a dataset this account can see, non-zero otherwise."""
    return subprocess.run([str(cli), "datasets", "status", dataset_id], capture_output=True, text=True,
                          timeout=120, check=False).returncode == 0


def wait_until_ready(cli: Path, dataset_id: str, polling: Polling, log: Callable[[str], object]) -> None:
    """Poll `kaggle datasets status` until it answers ready; InputError on failure or timeout."""
    end = time.monotonic() + polling.max_wait_s
    while True:
        time.sleep(polling.every_s)  # the first answer right after an upload may still be the old version's
        proc = run_cli(cli, ["datasets", "status", dataset_id], log, quiet=True)
        words = (proc.stdout or "").strip().splitlines()
        status = words[-1].strip().lower() if words else ""
        if proc.returncode == 0 and status in READY:
            log(f"dataset {dataset_id}: ready")
            return
        if proc.returncode == 0 and status in FAILED:
            raise InputError(f"Kaggle could not process dataset {dataset_id} (status {status!r})")
        if time.monotonic() > end:
            raise InputError(f"dataset {dataset_id} not ready after {polling.max_wait_s:.0f}s "
                             f"(last status {status or proc.returncode!r}); the kernel was not pushed")
        log(f"dataset {dataset_id}: {status or 'exit ' + str(proc.returncode)}; waiting")


def push(target: Target, polling: Polling = Polling(), log: Callable[[str], object] = print) -> int:
    """Upload the dataset (create or new version), wait until it is ready, push the kernel; an exit code."""
    cli = find_cli()
    if cli is None:
        raise InputError("the `kaggle` command is not installed: run  pip install 'arc-trm[kaggle]'")
    # Folders (wheels/, checkpoint/) are skipped by the CLI unless uploaded as archives; Kaggle unpacks zips.
    if dataset_exists(cli, target.dataset_id):
        args = ["datasets", "version", "-p", str(target.dataset), "-m", target.message, "--dir-mode", "zip"]
    else:
        args = ["datasets", "create", "-p", str(target.dataset), "--dir-mode", "zip"]
    rc = run_cli(cli, args, log).returncode
    if rc != 0:
        log(f"arc-trm kaggle: dataset upload failed (exit {rc}); the kernel was not pushed")
        return rc
    wait_until_ready(cli, target.dataset_id, polling, log)
    rc = run_cli(cli, ["kernels", "push", "-p", str(target.kernel), "--accelerator", target.accelerator],
                 log).returncode
    if rc != 0:
        log(f"arc-trm kaggle: kernel push failed (exit {rc})")
    return rc
