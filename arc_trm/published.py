"""Published reference checkpoints: where their weights are and which identifier list they need.

A published checkpoint (ARC Prize's `arcprize/trm_arc_prize_verification`, and the same format
elsewhere) is a folder of `step_N` weight files plus the reference's `all_config.yaml`, without
identifiers.json. `locate` finds the weights (a `step_N` file, a folder, whose latest step is
taken unless --step says otherwise, or `hf://OWNER/REPO/FOLDER` through huggingface_hub), and
`recipe_from_config` reads which data set they were trained on from the config's data path
(`data/arc1concept-aug-1000` is recipe arc1concept at 1000 augmentations), so that
augment.reference_ids can rebuild the identifier list (REFERENCE §2b).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augment.errors import InputError
from augment.reference_ids import RECIPES

HUB_PREFIX = "hf://"
CONFIG_NAME = "all_config.yaml"
_STEP = re.compile(r"^step_(\d+)$")
_DATA_PATH = re.compile(r"(arc[12]concept)-aug-(\d+)$")


@dataclass(frozen=True)
class Located:
    weights: Path  # the step_N file
    config: Path | None  # all_config.yaml beside it, if there is one
    step: int | None  # N of step_N, None for another file name


@dataclass(frozen=True)
class Recipe:
    name: str  # a key of augment.reference_ids.RECIPES
    augmentations: int
    where: str  # what said so, for messages


def _pick_step(steps: dict[int, str], wanted: int | None, where: str) -> int:
    if not steps:
        raise InputError(f"{where}: no step_N weight files")
    if wanted is None:
        return max(steps)
    if wanted not in steps:
        raise InputError(f"{where}: no step_{wanted} (steps here: {', '.join(map(str, sorted(steps)))})")
    return wanted


def _step_files(names: list[str]) -> dict[int, str]:
    return {int(m.group(1)): n for n in names if (m := _STEP.match(n))}


def locate(source: str, step: int | None = None) -> Located:
    """The weights and config of a step_N file, a folder of them, or an hf:// folder."""
    if source.startswith(HUB_PREFIX):
        return locate_on_hub(source, step)
    path = Path(source)
    if path.is_dir():
        files = _step_files([p.name for p in path.iterdir() if p.is_file()])
        chosen = _pick_step(files, step, str(path))
        config = path / CONFIG_NAME
        return Located(path / files[chosen], config if config.is_file() else None, chosen)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint file missing")
    m = _STEP.match(path.name)
    if step is not None and (m is None or int(m.group(1)) != step):
        raise InputError(f"--step {step} names a step of a folder; {path} is one file")
    config = path.with_name(CONFIG_NAME)
    return Located(path, config if config.is_file() else None, int(m.group(1)) if m else None)


def _hub():
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError:
        raise InputError("hf:// sources need huggingface_hub: pip install 'arc-trm[hub]'") from None
    return huggingface_hub, constants.HF_HUB_OFFLINE


def locate_on_hub(source: str, step: int | None) -> Located:
    """hf://OWNER/REPO/FOLDER through huggingface_hub's cache (HF_HOME, HF_HUB_OFFLINE honoured)."""
    parts = source[len(HUB_PREFIX):].strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise InputError(f"{source}: expected hf://OWNER/REPO[/FOLDER]")
    repo_id, folder = "/".join(parts[:2]), "/".join(parts[2:])
    hub, offline = _hub()
    prefix = f"{folder}/" if folder else ""
    try:
        if offline:  # only what the cache holds
            snapshot = Path(hub.snapshot_download(repo_id, allow_patterns=[f"{prefix}{CONFIG_NAME}"]))
            here = snapshot / folder
            names = [p.name for p in here.iterdir()] if here.is_dir() else []
        else:
            names = [f[len(prefix):] for f in hub.list_repo_files(repo_id) if f.startswith(prefix)]
        files = _step_files(names)
        chosen = _pick_step(files, step, source)
        weights = Path(hub.hf_hub_download(repo_id, f"{prefix}{files[chosen]}"))
        config = Path(hub.hf_hub_download(repo_id, f"{prefix}{CONFIG_NAME}")) if CONFIG_NAME in names else None
    except (OSError, ValueError) as e:  # the hub's errors derive from these (HTTP, not cached, offline)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{source}: {first}") from None
    return Located(weights, config, chosen)


def recipe_from_config(config: dict[str, Any], where: str) -> Recipe | None:
    """The recipe a reference all_config.yaml trained on, from its data path(s); None if unknown."""
    paths = config.get("data_paths") or config.get("data_path") or []
    paths = [paths] if isinstance(paths, str) else [p for p in paths if isinstance(p, str)]
    found = {(m.group(1), int(m.group(2))) for p in paths if (m := _DATA_PATH.search(p.rstrip("/")))}
    if len(found) != 1 or len(paths) != 1:
        return None
    name, augmentations = found.pop()
    return Recipe(name, augmentations, f"{where}: data path {paths[0]}") if name in RECIPES else None
