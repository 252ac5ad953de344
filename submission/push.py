"""Upload a Kaggle bundle with the kaggle CLI: the dataset (create or new version), a wait until
Kaggle has processed it, then the kernel. arc-trm never imports `kaggle` (it authenticates at
import time); it runs the CLI, found on PATH or beside this Python.

Credentials, in the order kaggle CLI 2.2 tries them (kaggle_api_extended.authenticate):
  1. an API token, read by kagglesdk: KAGGLE_API_TOKEN (the token, or a file holding it), else
     ~/.kaggle/access_token (or access_token.txt). kagglesdk reads that path under the home folder
     only, never under KAGGLE_CONFIG_DIR;
  2. a legacy key: KAGGLE_USERNAME and KAGGLE_KEY, each from the environment or from kaggle.json in
     the config folder (KAGGLE_CONFIG_DIR, else ~/.kaggle, else on Linux $XDG_CONFIG_HOME/kaggle);
  3. OAuth: ~/.kaggle/credentials.json with a refresh token, which `kaggle auth login` writes (read
     by default from kaggle 2.1.1 on).
`kernels push --accelerator` needs kaggle >= 1.8.4. The kaggle CLI is not a dependency of arc-trm:
from a checkout, `pip install -e '.[kaggle]'`; with a built wheel, `pip install kaggle six`.
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
MIN_KAGGLE_OAUTH = (2, 1, 1)  # the first release that reads credentials.json without KAGGLE_ENABLE_OAUTH=1
INSTALL_CLI = "pip install kaggle six  (from an arc-trm checkout: pip install -e '.[kaggle]')"
OAUTH_FILE = "credentials.json"  # written by `kaggle auth login`, under ~/.kaggle
PLACEHOLDER_USER = "YOUR_KAGGLE_USERNAME"
DEFAULT_POLL_S = 15.0
DEFAULT_MESSAGE = "arc-trm bundle"
DEFAULT_WAIT_S = 1800.0
# `kaggle kernels push --accelerator` ids (kaggle CLI docs, Feb 2026) -> what the notebook gets. Some are
# offered only to participants of specific competitions or to Kaggle admins.
ACCELERATORS: dict[str, str] = {
    "NvidiaL4": "4 x NVIDIA L4 (24 GB each, bf16): the ARC Prize machine",
    "NvidiaL4X1": "1 x NVIDIA L4 (24 GB, bf16)",
    "NvidiaTeslaT4": "2 x NVIDIA T4 (16 GB each): no native bf16, the notebook trains in float32",
    "NvidiaTeslaT4Highmem": "2 x NVIDIA T4 with more host memory: no native bf16",
    "NvidiaTeslaP100": "retired: a session asking for it gets Kaggle's default GPU, 2 x T4",
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
    message: str = DEFAULT_MESSAGE


@dataclass
class Polling:
    every_s: float = DEFAULT_POLL_S
    max_wait_s: float = DEFAULT_WAIT_S
    answer_s: float = 120.0  # the most one `kaggle datasets status` may take (a hung network)


def home_kaggle() -> Path:
    """~/.kaggle: where kagglesdk reads access_token and `kaggle auth login` writes credentials.json
    (both ignore KAGGLE_CONFIG_DIR)."""
    return Path.home() / ".kaggle"


def kaggle_config_dir() -> Path:
    """Where the CLI reads kaggle.json: KAGGLE_CONFIG_DIR, else ~/.kaggle, else on Linux (when
    ~/.kaggle does not exist) $XDG_CONFIG_HOME/kaggle."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    if home_kaggle().exists() or not sys.platform.startswith("linux"):
        return home_kaggle()
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def _json_object(path: Path) -> dict:
    """A JSON object from `path`, or {} when it is missing or not one (the CLI skips it too)."""
    if not path.is_file():
        return {}
    try:
        data = read_json(path, "Kaggle credentials")
    except InputError:
        return {}
    return data if isinstance(data, dict) else {}


def _has_text(path: Path) -> bool:
    try:
        return path.is_file() and bool(path.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        return False


def credential_source() -> str | None:
    """Which credentials the kaggle CLI will use (the first it tries that is there), or None."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):
        if _has_text(home_kaggle() / name):
            return str(home_kaggle() / name)
    legacy = _json_object(kaggle_config_dir() / "kaggle.json")  # the environment overrides it, key by key
    username = os.environ.get("KAGGLE_USERNAME") or legacy.get("username")
    key = os.environ.get("KAGGLE_KEY") or legacy.get("key")
    if username and key:
        return "KAGGLE_USERNAME + KAGGLE_KEY" if os.environ.get("KAGGLE_KEY") else str(kaggle_config_dir() / "kaggle.json")
    if _json_object(home_kaggle() / OAUTH_FILE).get("refresh_token"):
        return str(home_kaggle() / OAUTH_FILE)
    return None


def missing_credentials() -> str:
    """One line: where to put credentials, naming only the places the CLI reads."""
    home = home_kaggle()
    line = (f"no Kaggle credentials: run `kaggle auth login` (writes {home / OAUTH_FILE}), or save an API token "
            f"from https://www.kaggle.com/settings/api as {home / 'access_token'} (chmod 600) or export it as "
            f"KAGGLE_API_TOKEN, or set KAGGLE_USERNAME and KAGGLE_KEY (legacy key; or kaggle.json in "
            f"{kaggle_config_dir()})")
    stray = Path(os.environ.get("KAGGLE_CONFIG_DIR") or home) / "access_token"
    if stray.parent != home and stray.is_file():
        line += (f"; {stray} is not read (kagglesdk reads {home / 'access_token'} only): move it there or "
                 f"export KAGGLE_API_TOKEN={stray}")
    return line


def kaggle_username() -> str | None:
    """The username from KAGGLE_USERNAME, kaggle.json or the `kaggle auth login` credentials (the --user default)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    for path in (kaggle_config_dir() / "kaggle.json", home_kaggle() / OAUTH_FILE):
        name = _json_object(path).get("username")
        if isinstance(name, str) and name:
            return name
    return None


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


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def push_problems(user: str) -> list[str]:
    """What stops a push, one line each with its fix; empty when the CLI, its version and credentials are fine."""
    problems = []
    cli = find_cli()
    version = cli_version(cli) if cli is not None else None
    source = credential_source()
    if cli is None:
        problems.append(f"the `kaggle` command is not installed: run  {INSTALL_CLI}  "
                        "(kaggle imports `six` without declaring it)")
    elif version is None or version < MIN_KAGGLE:
        have = version_text(version) if version else "an unknown version"
        problems.append(f"{cli} is {have}; --accelerator needs kaggle >= {version_text(MIN_KAGGLE)}: "
                        f"run  pip install -U 'kaggle>={version_text(MIN_KAGGLE)}'")
    elif source == str(home_kaggle() / OAUTH_FILE) and version < MIN_KAGGLE_OAUTH \
            and os.environ.get("KAGGLE_ENABLE_OAUTH") not in ("1", "true", "yes"):
        problems.append(f"{cli} is {version_text(version)}, which reads {source} (from `kaggle auth login`) only "
                        f"with KAGGLE_ENABLE_OAUTH=1: run  pip install -U 'kaggle>={version_text(MIN_KAGGLE_OAUTH)}'")
    if source is None:
        problems.append(missing_credentials())
    if user == PLACEHOLDER_USER:
        problems.append("no Kaggle username: pass --user USER (or set KAGGLE_USERNAME)")
    return problems


def run_cli(cli: Path, args: Sequence[str], log: Callable[[str], object]) -> subprocess.CompletedProcess:
    log("$ kaggle " + " ".join(args))
    return subprocess.run([str(cli), *args], text=True, check=False)


def dataset_status(cli: Path, dataset_id: str, polling: Polling) -> subprocess.CompletedProcess | None:
    """`kaggle datasets status`; None when it gives no answer within `polling.answer_s`."""
    try:
        return subprocess.run([str(cli), "datasets", "status", dataset_id], capture_output=True, text=True,
                              timeout=polling.answer_s, check=False)
    except subprocess.TimeoutExpired:
        return None


def dataset_exists(cli: Path, dataset_id: str, polling: Polling) -> bool:
    """`kaggle datasets status` exits 0 for a dataset this account can see, non-zero otherwise."""
    proc = dataset_status(cli, dataset_id, polling)
    if proc is None:
        raise InputError(f"`kaggle datasets status {dataset_id}` gave no answer in {polling.answer_s:.0f}s; "
                         "nothing was pushed (check the network, then run the command again)")
    return proc.returncode == 0


def wait_until_ready(cli: Path, dataset_id: str, polling: Polling, log: Callable[[str], object]) -> None:
    """Poll `kaggle datasets status` until it answers ready; InputError on failure or timeout."""
    end = time.monotonic() + polling.max_wait_s
    while True:
        time.sleep(polling.every_s)  # the first answer right after an upload may still be the old version's
        proc = dataset_status(cli, dataset_id, polling)
        words = proc.stdout.strip().splitlines() if proc is not None and proc.stdout else []
        answered = proc is not None and proc.returncode == 0
        status = words[-1].strip().lower() if words else ""
        if answered and status in READY:
            log(f"dataset {dataset_id}: ready")
            return
        if answered and status in FAILED:
            raise InputError(f"Kaggle could not process dataset {dataset_id} (status {status!r})")
        said = "no answer" if proc is None else status or f"exit {proc.returncode}"
        if time.monotonic() > end:
            raise InputError(f"dataset {dataset_id} not ready after {polling.max_wait_s:.0f}s "
                             f"(last status {said!r}); the kernel was not pushed")
        log(f"dataset {dataset_id}: {said}; waiting")


def push(target: Target, polling: Polling = Polling(), log: Callable[[str], object] = print) -> int:
    """Upload the dataset (create or new version), wait until it is ready, push the kernel; an exit code."""
    cli = find_cli()
    if cli is None:
        raise InputError(f"the `kaggle` command is not installed: run  {INSTALL_CLI}")
    # Folders (wheels/, checkpoint/) are skipped by the CLI unless uploaded as archives; Kaggle unpacks zips.
    if dataset_exists(cli, target.dataset_id, polling):
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
