"""The augmented set a run trains on: where it is cached (data/built/...) and who builds it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch.distributed as dist

from arc_trm import checkpoint as ckpt
from arc_trm.common import Dist
from arc_trm.config import RunConfig
from augment.build import ensure_built
from augment.options import BuildOptions
from augment.store import BuiltSet
from augment.errors import InputError
from augment.tasks import absolute_spec


def default_build_dir(cfg: RunConfig) -> Path:
    """data/built/<readable prefix>-<hash of the full source spec and the build parameters>."""
    if cfg.data.build_dir:
        return Path(cfg.data.build_dir)
    d = cfg.data
    key = json.dumps({"tasks": d.tasks, "augmentations": d.augmentations, "canvas": d.canvas,
                      "build_seed": d.build_seed}, sort_keys=True)
    digest = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in d.tasks)[:40].strip("_")
    return Path("data/built") / f"{slug}-a{d.augmentations}-c{d.canvas}-{digest}"


def check_own_build(out: Path, cfg: RunConfig) -> None:
    """A --build folder that holds a build of other parameters or sources is refused, never
    rebuilt over (the user's own build)."""
    meta_path = out / "metadata.json"
    if not meta_path.is_file():
        return
    meta = ckpt.read_json(meta_path, "build metadata")
    params = meta.get("params", {}) if isinstance(meta, dict) else {}
    want = {"augmentations": cfg.data.augmentations, "seed": cfg.data.build_seed, "canvas": cfg.data.canvas}
    have = {k: params.get(k) for k in want} if isinstance(params, dict) else {}
    specs = [s.strip() for s in absolute_spec(cfg.data.tasks).split(",") if s.strip()]
    sources = meta.get("sources") if isinstance(meta, dict) else None
    if isinstance(sources, list) and all(isinstance(s, str) for s in sources):
        sources = [absolute_spec(s) for s in sources]  # a build recorded before paths were absolute
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
        if cfg.data.build_dir:
            check_own_build(out, cfg)
        ensure_built(cfg.data.tasks, out, build_options(cfg, progress), **({"warn": warn} if warn else {}))
    if d.world > 1:
        dist.barrier()
    return BuiltSet.open(out)
