"""The Kaggle bundle behind `arc-trm kaggle bundle` (write_bundle): the dataset (wheels, the
shipped checkpoint, the weights' licence notice, its metadata) and the kernel (the notebook and
its metadata), each written aside and swapped into place. What the two folders hold is the
command's help (submission/bundle_cli.py); pushing them is submission/push.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from augment.console import size_text
from augment.errors import InputError
from submission import checkpoint_manifest
from submission import push as kp
from submission.checkpoint_manifest import MANIFEST
from submission.notice import NOTICE_NAME, WeightsSource, carry_import_record, licence_label, weights_source
from augment.files import (check_replaceable, folder_bytes, replace_folder, signals_held, write_json_atomic,
                           write_text_atomic)
from submission.runfolder import EXPORT_WEIGHTS, STATE, check_holds_no_run, is_lean_export, resolve_checkpoint
from submission.wheels import (PROJECT, WheelTarget, build_project_wheel, collect_dependency_wheels, project_root,
                               run_quiet, tail)

CHECKPOINT_FILES: tuple[str, ...] = (STATE, "config.json", "identifiers.json", MANIFEST)
EXPORT_FILES: tuple[str, ...] = (EXPORT_WEIGHTS, "config.json", "identifiers.json", MANIFEST)
NOTEBOOK_NAME = "kaggle_submission.ipynb"
PLACEHOLDER_USER = kp.PLACEHOLDER_USER
DEFAULT_DATASET_SLUG = "arc-trm-bundle"
DEFAULT_KERNEL_SLUG = "arc-trm-submission"
DEFAULT_COMPETITION = "arc-prize-2026-arc-agi-2"
EXPORT_TIMEOUT_S = 1800


@dataclass
class BundleSpec:
    """What to bundle and for which Kaggle ids."""

    checkpoint: str | Path | None = None
    full_state: bool = False  # ship state.pt (optimiser moments and all) instead of the inference export
    full_table: bool = False  # keep every puzzle row in the export (default: only the mean row ttt reads)
    user: str = PLACEHOLDER_USER
    dataset_slug: str = DEFAULT_DATASET_SLUG
    kernel_slug: str = DEFAULT_KERNEL_SLUG
    competition: str = DEFAULT_COMPETITION
    accelerator: str = kp.DEFAULT_ACCELERATOR
    wheel_dirs: Sequence[Path] = ()
    cache: Path | None = None
    download: bool = True
    target: WheelTarget = WheelTarget()


@dataclass
class Bundle:
    """What `write_bundle` produced."""

    dataset: Path
    kernel: Path
    wheels: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # requirement strings with no wheel found
    checkpoint: Path | None = None  # the source checkpoint folder that was shipped
    user: str = PLACEHOLDER_USER
    dataset_slug: str = DEFAULT_DATASET_SLUG
    accelerator: str = kp.DEFAULT_ACCELERATOR


def slug_title(slug: str) -> str:
    """A title that Kaggle turns back into `slug` (Kaggle warns when title and id disagree)."""
    return slug.replace("-", " ").replace("_", " ")


def find_notebook(root: Path) -> Path:
    """The submission notebook in the checkout's notebooks/ (the wheel holds none)."""
    path = root / "notebooks" / NOTEBOOK_NAME
    if not path.is_file():
        raise InputError(f"notebook {path} not found")
    return path


# The notebook's setting that --competition must reach: kernel-metadata.json attaches the competition,
# but the notebook looks for its challenges by this slug (and, missing them, anywhere below the input).
COMPETITION_LINE = re.compile(r'^(COMPETITION = env\("ARC_TRM_COMPETITION", )"[^"\n]*"\)', re.MULTILINE)


def ship_notebook(src: Path, dest: Path, competition: str) -> None:
    """The notebook at `dest` with COMPETITION's default set to `competition` (ARC_TRM_COMPETITION still
    overrides it); the rest as it is."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    hits = 0
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        text = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        text, n = COMPETITION_LINE.subn(lambda m: f"{m.group(1)}{json.dumps(competition)})", text)
        if n:
            hits += n
            cell["source"] = text if isinstance(cell["source"], str) else text.splitlines(keepends=True)
    if hits != 1:
        raise InputError(f"{src}: expected one line COMPETITION = env(\"ARC_TRM_COMPETITION\", ...) to set "
                         f"--competition in, found {hits}")
    write_text_atomic(dest, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- checkpoint

def copy_files(src: Path, dest: Path, names: Sequence[str]) -> list[Path]:
    missing = [n for n in names if not (src / n).is_file()]
    if missing:
        raise InputError(f"{src}: checkpoint is missing {', '.join(missing)}")
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(src / n, dest / n)) for n in names]


def check_checkpoint(folder: Path) -> None:
    """One line unless the checkpoint is complete (manifest: format, sizes, hashes) and loads with
    the arc-trm being bundled (checked in a subprocess: this module never imports torch)."""
    names = CHECKPOINT_FILES if (folder / STATE).is_file() else EXPORT_FILES
    checkpoint_manifest.verify(folder, names[:-1], full=True)
    proc = run_quiet([sys.executable, "-m", "arc_trm.checkpoint", str(folder.resolve())])
    if proc.returncode != 0:
        raise InputError(tail(proc.stderr or proc.stdout, 1) or f"exit status {proc.returncode}")


def check_checkpoint_flags(checkpoint: str | Path | None, full_state: bool, full_table: bool) -> None:
    """InputError for either flag without a checkpoint (nothing to ship, the flag would do nothing),
    and for both: the training state carries its own whole table, and an export is not a training
    state, so one of the two would be silently dropped."""
    for flag, given in (("--full-state", full_state), ("--full-table", full_table)):
        if given and checkpoint is None:
            raise InputError(f"{flag} needs --checkpoint: without one no checkpoint is shipped (the notebook "
                             "trains from scratch)")
    if full_state and full_table:
        raise InputError("--full-state and --full-table contradict: --full-state ships the training checkpoint "
                         "(state.pt, whole puzzle table included), --full-table an inference export with every "
                         "puzzle row; pass one or the other")


def checkpoint_kind(full_state: bool, full_table: bool) -> str:
    if full_state:
        return "full training state"
    if full_table:
        return "inference export, whole puzzle table"
    return "lean inference export: network and mean puzzle row"


def check_shippable(src: Path, full_state: bool = False, full_table: bool = False) -> None:
    """One line unless `src` is of a kind the flags can ship and complete and loadable
    (check_checkpoint). write_bundle calls it before the wheels are built or fetched."""
    if full_state and not (src / STATE).is_file():
        raise InputError(f"{src} is an inference export: it has no full training state to ship")
    if full_table and is_lean_export(src):
        raise InputError(f"{src} is a lean export: it has no whole puzzle table to ship (bundle the run it came from)")
    check_checkpoint(src)


def ship_checkpoint(src: Path, dest: Path, full_state: bool = False, full_table: bool = False,
                    checked: bool = False) -> None:
    """What ttt needs from `src` into `dest`: by default its lean inference export (the network and
    the mean puzzle row, through `arc-trm export --lean`, so this module needs no torch); with
    full_table the export with every puzzle row; with full_state the training checkpoint's files
    (not the carry files). `checked`: check_shippable already passed (its load check is not repeated)."""
    if not checked:
        check_shippable(src, full_state, full_table)
    is_export = not (src / STATE).is_file()
    if full_state or (full_table and is_export):
        copy_files(src, dest, EXPORT_FILES if is_export else CHECKPOINT_FILES)
        carry_import_record(src, dest)  # imported weights: the export's own record, or the run's beside state.pt
        return
    cmd = [sys.executable, "-m", "arc_trm.cli", "export", "--checkpoint", str(src), "--out", str(dest)]
    proc = run_quiet(cmd if full_table else [*cmd, "--lean"], timeout=EXPORT_TIMEOUT_S)
    if proc.returncode != 0:
        raise InputError(f"exporting {src} for inference failed (exit {proc.returncode}): "
                         f"{tail(proc.stderr or proc.stdout, 3)}")


# ---------------------------------------------------------------- metadata

def dataset_metadata(user: str, slug: str, shipped: WeightsSource | None = None) -> dict:
    """`shipped`: the source of imported weights in the dataset, whose licence the label and the
    description name (see submission.notice)."""
    meta = {"title": slug_title(slug), "id": f"{user}/{slug}", "licenses": licence_label(shipped)}
    return meta if shipped is None else {**meta, "description": shipped.description()}


def kernel_metadata(spec: BundleSpec, code_file: str = NOTEBOOK_NAME) -> dict:
    return {
        "id": f"{spec.user}/{spec.kernel_slug}",
        "title": slug_title(spec.kernel_slug),
        "code_file": code_file,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": True,
        "machine_shape": spec.accelerator,  # without it Kaggle gives its default GPU, 2 x T4 (no bf16)
        "enable_internet": False,
        "dataset_sources": [f"{spec.user}/{spec.dataset_slug}"],
        "competition_sources": [spec.competition],
        "model_sources": [],
    }


# ---------------------------------------------------------------- bundle

DATASET_ENTRIES = frozenset({"wheels", "checkpoint", "dataset-metadata.json", NOTICE_NAME})
KERNEL_ENTRIES = frozenset({NOTEBOOK_NAME, "kernel-metadata.json"})


def _holds_only(folder: Path, names: frozenset[str]) -> bool:
    try:
        return folder.is_dir() and {p.name for p in folder.iterdir()} <= names
    except OSError:
        return False


def is_bundle_dataset(folder: Path) -> bool:
    """An earlier bundle's dataset/ (or part of one): the only dataset folder a bundle replaces."""
    return _holds_only(folder, DATASET_ENTRIES)


def is_bundle_kernel(folder: Path) -> bool:
    return _holds_only(folder, KERNEL_ENTRIES)


def check_bundle_out(out: Path) -> None:
    """One line unless OUT is no run folder and OUT/dataset and OUT/kernel can be replaced: absent,
    empty or an earlier bundle's. Checked before any work, so a refusal is quick and nothing is deleted."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    check_holds_no_run(out, "a bundle never goes into one")
    check_replaceable(out / "dataset", is_bundle_dataset, "a bundle's dataset folder (wheels/, checkpoint/, "
                                                         "dataset-metadata.json)")
    check_replaceable(out / "kernel", is_bundle_kernel, f"a bundle's kernel folder ({NOTEBOOK_NAME}, "
                                                       "kernel-metadata.json)")


def write_bundle(out: Path, spec: BundleSpec = BundleSpec(), log: Callable[[str], object] = print,
                 placed: Callable[[Bundle], None] | None = None) -> Bundle:
    """Write out/dataset and out/kernel, replacing an earlier bundle's. Both are written under
    temporary names and renamed into place at the end: a failure (a bad checkpoint, an export
    that fails) leaves the earlier bundle as it was. `placed` gets the Bundle once both are in
    place, before a signal held across the swaps goes on (see augment.files.finished_first)."""
    if spec.accelerator not in kp.ACCELERATORS:
        raise InputError(f"unknown accelerator {spec.accelerator!r}; use one of {', '.join(kp.ACCELERATORS)}")
    check_checkpoint_flags(spec.checkpoint, spec.full_state, spec.full_table)
    out = Path(out)
    absent = [str(d) for d in spec.wheel_dirs if not Path(d).is_dir()]
    if absent:  # else silently skipped, and the missing wheels' advice says to pass --wheel-dir
        raise InputError(f"--wheel-dir {', '.join(absent)}: no such folder")
    ckpt = resolve_checkpoint(spec.checkpoint) if spec.checkpoint is not None else None
    check_bundle_out(out)
    if ckpt is not None:  # before the wheels: a wrong kind or a bad checkpoint is one line, not one after minutes
        check_shippable(ckpt, spec.full_state, spec.full_table)
    source = weights_source(ckpt) if ckpt is not None else None  # imported weights: their licence goes with them
    root = project_root()
    notebook = find_notebook(root)
    dataset, kernel = out / "dataset", out / "kernel"
    staged = {dataset: out / f".dataset.tmp{os.getpid()}", kernel: out / f".kernel.tmp{os.getpid()}"}
    try:
        for folder in staged.values():
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
        shipped, wheels_dir = staged[dataset], staged[dataset] / "wheels"
        log(f"building the {PROJECT} wheel from {root}")
        wheels = [build_project_wheel(wheels_dir, root)]
        deps = collect_dependency_wheels(wheels_dir, wheel_dirs=spec.wheel_dirs, cache=spec.cache,
                                         download=spec.download, target=spec.target, log=log,
                                         earlier=dataset / "wheels")
        wheels += deps.copied
        if ckpt is not None:
            ship_checkpoint(ckpt, shipped / "checkpoint", spec.full_state, spec.full_table, checked=True)
            kind = checkpoint_kind(spec.full_state, spec.full_table)
            size = size_text(folder_bytes(shipped / "checkpoint"))
            log(f"checkpoint {ckpt} -> {dataset / 'checkpoint'} ({kind}, {size})")
        if source is not None:
            write_text_atomic(shipped / NOTICE_NAME, source.notice())
            log(f"weights from {source.source} (licence: {source.licence or 'not recorded'}) -> "
                f"{dataset / NOTICE_NAME}")
        write_json_atomic(shipped / "dataset-metadata.json", dataset_metadata(spec.user, spec.dataset_slug, source),
                          indent=2)
        ship_notebook(notebook, staged[kernel] / NOTEBOOK_NAME, spec.competition)
        write_json_atomic(staged[kernel] / "kernel-metadata.json", kernel_metadata(spec, NOTEBOOK_NAME), indent=2)
        bundle = Bundle(dataset, kernel, [dataset / "wheels" / w.name for w in wheels],
                        deps.missing, ckpt, spec.user, spec.dataset_slug, spec.accelerator)
        with signals_held():  # one bundle: a signal after the dataset's swap waits for the kernel's
            replace_folder(staged[dataset], dataset, is_bundle_dataset, "a bundle's dataset folder")
            replace_folder(staged[kernel], kernel, is_bundle_kernel, "a bundle's kernel folder",
                           (lambda: placed(bundle)) if placed is not None else None)
    except BaseException:
        for folder in staged.values():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return bundle
