"""The augmented set a run trains on: where it is cached (data/built/...) and who builds it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch.distributed as dist

from arc_trm.common import Dist
from arc_trm.config import RunConfig
from augment.build import ensure_built, is_up_to_date
from augment.options import BuildOptions
from augment.store import BuiltSet
from augment.errors import InputError
from augment.tasks import Reading, absolute_spec, is_bundled, load_tasks, parse_spec, split_ids, split_specs
from augment.files import read_json


DEFAULT_BUILDS = Path("data/built")  # under the working directory of the run's first start


def default_build_dir(cfg: RunConfig, parent: Path = DEFAULT_BUILDS) -> Path:
    """cfg.data.build_dir, else PARENT/<readable prefix>-<hash of the full source spec and the build
    parameters>."""
    if cfg.data.build_dir:
        return Path(cfg.data.build_dir)
    return parent / default_build_name(cfg)


def default_build_name(cfg: RunConfig) -> str:
    """<sources' base names>-a<augmentations>-c<canvas>-<hash>: the hash tells apart what the short
    prefix does not (two folders named tasks, ids cut off after 40 characters)."""
    d = cfg.data
    key = json.dumps({"tasks": d.tasks, "augmentations": d.augmentations, "canvas": d.canvas,
                      "build_seed": d.build_seed}, sort_keys=True)
    digest = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    label = ",".join(source_label(spec) for spec in split_specs(d.tasks))
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:40].strip("_")
    return f"{slug}-a{d.augmentations}-c{d.canvas}-{digest}"


def source_label(spec: str) -> str:
    """A source as a folder name begins: a bundled set as written, a path by its base name (with
    the ids it selects), and its role."""
    body, role = parse_spec(spec.strip())
    head, ids = split_ids(body)
    if not is_bundled(body):
        body = Path(head).name + ("/" + ids if ids else "")
    return body + (f"@{role}" if role else "")


def is_default_build(cfg: RunConfig) -> bool:
    """Whether the build folder is the one made on first use for these sources and parameters
    (none yet, or as the run recorded it), not one the user named with --build."""
    return not cfg.data.build_dir or Path(cfg.data.build_dir).name == default_build_name(cfg)


def check_own_build(out: Path, cfg: RunConfig) -> None:
    """A --build folder that holds a build of other parameters or sources is refused, never
    rebuilt over (the user's own build). Sources under other paths with the same content are the
    same build (a ttt run moved to another folder holds its tasks' copy under a new path)."""
    meta_path = out / "metadata.json"
    if not meta_path.is_file():
        return
    meta = read_json(meta_path, "build metadata")
    params = meta.get("params", {}) if isinstance(meta, dict) else {}
    want = {"augmentations": cfg.data.augmentations, "seed": cfg.data.build_seed, "canvas": cfg.data.canvas}
    have = {k: params.get(k) for k in want} if isinstance(params, dict) else {}
    specs = split_specs(absolute_spec(cfg.data.tasks))
    sources = meta.get("sources") if isinstance(meta, dict) else None
    if isinstance(sources, list) and all(isinstance(s, str) for s in sources):
        sources = [absolute_spec(s) for s in sources]  # a build recorded before paths were absolute
    if sources != specs and have == want:  # the same content under other paths (loaded only then)
        reading = Reading(skip=True, warn=lambda _: None)
        tasks = load_tasks(specs, reading)
        sources = specs if is_up_to_date(out, tasks, build_options(cfg), reading.skipped) else sources
    if have != want or sources != specs:
        raise InputError(f"--build {out}: holds a build of {sources} with {have}, not {specs} with {want}; "
                         f"pass the same --tasks/--set data.* or another --build (it is never rebuilt over)")


def build_options(cfg: RunConfig, progress: bool = False) -> BuildOptions:
    """How the config's augmented set is built."""
    return BuildOptions(augmentations=cfg.data.augmentations, seed=cfg.data.build_seed, canvas=cfg.data.canvas,
                        progress=progress)


def load_or_build(cfg: RunConfig, d: Dist, progress: bool, warn: Callable[[str], None] | None = None) -> BuiltSet:
    """Rank 0 builds (or reuses) the cached augmented set; the others wait and open it. `warn`
    takes the build's warnings (default: printed)."""
    out = default_build_dir(cfg)
    if d.main:
        if not is_default_build(cfg):  # a default one's name holds the hash of what it is
            check_own_build(out, cfg)
        ensure_built(cfg.data.tasks, out, build_options(cfg, progress), **({"warn": warn} if warn else {}))
    if d.world > 1:
        dist.barrier()
    return BuiltSet.open(out)
