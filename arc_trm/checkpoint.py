"""Atomic, validated checkpoints (the run-folder layout itself is submission/runfolder.py).

    RUN/checkpoints/step_000100/     one folder per checkpoint:
        state.pt                     model, EMA, optimisers, puzzle table, sampler, RNG, step
        carry_rank{r}.pt             each rank's ACT carry (exact resume)
        config.json, identifiers.json  what each puzzle row means (augment/identifier_map.py)
        manifest.json                format version, size and hash of every file (written last)

A checkpoint folder is written under a temporary name and renamed when complete, and `latest`
is replaced atomically after that, so a killed run never leaves a half-written checkpoint that
`--resume` would pick up. Everything loads with `torch.load(..., weights_only=True)`, and every
loader (train --resume, predict, ttt, kaggle) goes through `load_state`, which turns corrupt,
foreign or incompatible files into one-line InputErrors.

An inference export (`arc-trm export`, arc_trm/export.py: model.safetensors, config.json,
identifiers.json, manifest.json) is accepted wherever a checkpoint folder is read for inference;
`load_state` returns it in the same shape as a state.pt (EMA folded into "model", no optimiser).
`transplant_weights` gives a checkpoint's weights a puzzle table for another identifier map (ttt).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from arc_trm.config import config_from_json
from arc_trm.model import TRM

from augment.console import eprint
from augment.files import atomic_writer, read_json, write_text_atomic
from augment.identifier_map import IdentifierMap
from augment.errors import InputError
from augment.json_kind import is_digits
from submission import checkpoint_manifest as manifest
from submission.runfolder import (EXPORT_WEIGHTS, STATE, checkpoint_dir, checkpoints_by_step, latest_checkpoint,
                                  latest_marker, resolve_checkpoint, temporary_checkpoint_dir)

__all__ = ["EXPORT_WEIGHTS", "STATE", "checkpoint_dir", "checkpoints_by_step", "latest_checkpoint",
           "resolve_checkpoint", "load_state", "load_checkpoint", "torch_save_atomic"]

FORMAT_VERSION = manifest.FORMAT_VERSION
EXPORT_FORMAT = "arc-trm-inference-export-1"
# What torch.load raises on files that are not a weights-only checkpoint (corrupt, truncated,
# a pickle that would import or run code).
LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError,
                AttributeError, IndexError, ImportError, zipfile.BadZipFile, UnicodeDecodeError)


def torch_save_atomic(obj: object, path: Path) -> None:
    """torch.save through the one atomic writer: a temporary name, fsync, then rename into place."""
    with atomic_writer(path, binary=True) as f:
        torch.save(obj, f)


def begin_checkpoint(run: Path, step: int) -> Path:
    """A fresh temporary folder for the checkpoint of `step` (rank 0 calls this)."""
    tmp = temporary_checkpoint_dir(run, step)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_checkpoint(run: Path, step: int, keep: int = 2) -> Path:
    """Write the manifest, rename the temporary folder into place, point `latest` at it, then
    prune to the newest `keep` checkpoints by step (0 = keep all). The checkpoint just committed
    is never pruned, and `latest` is written before anything is removed."""
    final = checkpoint_dir(run, step)
    tmp = temporary_checkpoint_dir(run, step)
    manifest.write_manifest(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text_atomic(latest_marker(run), final.name)
    if keep > 0:
        older = [p for p in checkpoints_by_step(run) if p != final]
        for old in older[:max(0, len(older) - (keep - 1))]:
            shutil.rmtree(old)
    return final


# ----------------------------------------------------------------------------------------------
# Loading and validation


def torch_load(path: Path, map_location: str | torch.device) -> object:
    try:
        with warnings.catch_warnings():  # torch warns about legacy pickles; the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except LOAD_ERRORS as e:
        text = str(e).strip()
        first = text.splitlines()[0].split(". ")[0][:160] if text else ""
        raise InputError(f"{path}: not a readable weights-only checkpoint ({type(e).__name__}: {first})") from None


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def parse_config(text: object, path: Path):
    """The RunConfig stored in a checkpoint; one line for JSON that is not one (version skew)."""
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError as e:
        raise InputError(f"{path}: checkpoint config is not JSON ({e})") from None
    return config_from_json(data, path, "checkpoint config")


def expected_shapes(model_cfg) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of a TRM of this config (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = TRM(model_cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_weights_fit(weights: dict[str, torch.Tensor], model_cfg, path: Path, what: str = "weights") -> None:
    """One line unless `weights` has exactly the names and shapes of a TRM of `model_cfg`."""
    want = expected_shapes(model_cfg)
    missing, extra = sorted(set(want) - set(weights)), sorted(set(weights) - set(want))
    wrong = [f"{k} {tuple(weights[k].shape)} vs {want[k]}" for k in sorted(set(want) & set(weights))
             if tuple(weights[k].shape) != want[k]]
    if missing or extra or wrong:
        detail = "; ".join(x for x in (f"missing {missing[:3]}" if missing else "",
                                       f"unexpected {extra[:3]}" if extra else "",
                                       f"shapes {', '.join(wrong[:3])}" if wrong else "") if x)
        raise InputError(f"{path}: {what} do not fit the checkpoint's model config "
                         f"(from another model config?): {detail}")


def validate_state(state: object, path: Path) -> dict:
    """A loaded state.pt: the keys and types every loader relies on, a config this version reads,
    and weights that fit that config."""
    if not isinstance(state, dict):
        raise InputError(f"{path}: holds a {type(state).__name__}, not an arc-trm checkpoint (a dict with "
                         "model, config, identifiers, step)")
    if _is_tensor_dict(state):
        raise InputError(f"{path}: holds a plain state dict, not an arc-trm checkpoint; a reference TRM "
                         "state dict is imported with `arc-trm import-checkpoint`")
    missing = [k for k in ("model", "config", "identifiers", "step") if k not in state]
    if missing:
        raise InputError(f"{path}: not an arc-trm checkpoint (missing {', '.join(missing)})")
    if not _is_tensor_dict(state["model"]) or not (state.get("ema") is None or _is_tensor_dict(state["ema"])):
        raise InputError(f"{path}: 'model' and 'ema' must map names to tensors")
    if not isinstance(state["step"], int) or state["step"] < 0:
        raise InputError(f"{path}: 'step' must be a non-negative integer, got {state['step']!r}")
    ids = state["identifiers"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputError(f"{path}: 'identifiers' must be a list of strings")
    cfg = parse_config(state["config"], path)
    if len(ids) != cfg.model.num_puzzle_ids:
        raise InputError(f"{path}: {len(ids)} identifiers for a puzzle table of {cfg.model.num_puzzle_ids} rows")
    check_weights_fit(state["model"], cfg.model, path)
    if state.get("ema"):
        check_weights_fit({**state["model"], **state["ema"]}, cfg.model, path, "EMA weights")
    return state


def load_state(ckpt: Path, name: str = STATE, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate one file of a checkpoint folder: its format version and size (manifest),
    then the content (state.pt: see validate_state; carry files: names -> tensors)."""
    path = Path(ckpt) / name
    if name == STATE and reads_as_export(Path(ckpt)):
        manifest.verify(Path(ckpt), (EXPORT_WEIGHTS,))
        return validate_state(load_export(Path(ckpt)), Path(ckpt) / EXPORT_WEIGHTS)
    if not path.exists():
        raise InputError(f"{path}: checkpoint file missing")
    manifest.verify(Path(ckpt), (name,))
    obj = torch_load(path, map_location)
    if name == STATE:
        return validate_state(obj, path)
    if not _is_tensor_dict(obj):
        raise InputError(f"{path}: expected a dict of tensors")
    return obj  # type: ignore[return-value]


def reads_as_export(folder: Path) -> bool:
    """Whether load_state reads `folder` as an inference export: model.safetensors, no state.pt."""
    return not (folder / STATE).exists() and (folder / EXPORT_WEIGHTS).exists()


def load_export(folder: Path) -> dict:
    """An inference export as a state dict: {"model", "ema": None, "config", "identifiers", "step"}."""
    path = folder / EXPORT_WEIGHTS
    try:
        weights = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path}: cannot load inference export ({type(e).__name__}: {e})") from None
    if meta.get("format") != EXPORT_FORMAT or not is_digits(meta.get("step", "")):
        raise InputError(f"{path}: not an arc-trm inference export (format {meta.get('format')!r})")
    config = read_json(folder / "config.json", "config")
    config_from_json(config, folder / "config.json", "checkpoint config")  # a fault names this file, not the weights
    ids = read_json(folder / "identifiers.json", "identifier map")
    if not isinstance(ids, dict) or not isinstance(ids.get("identifiers"), list):
        raise InputError(f"{folder / 'identifiers.json'}: expected an object with an \"identifiers\" list")
    return {"model": weights, "ema": None, "config": json.dumps(config, indent=2), "identifiers": ids["identifiers"],
            "step": int(meta["step"])}


@dataclass
class Checkpoint:
    folder: Path
    state: dict
    config: object  # RunConfig
    id_map: IdentifierMap  # what each puzzle row means


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """A run folder or checkpoint folder, fully validated (state.pt and identifiers.json)."""
    folder = resolve_checkpoint(path)
    state = load_state(folder, map_location=map_location)
    cfg = parse_config(state["config"], folder / STATE)
    manifest.verify(folder, ("identifiers.json",))
    path = folder / "identifiers.json"
    id_map = IdentifierMap.from_json(read_json(path, "identifier map"), path)
    if id_map.identifiers != state["identifiers"]:
        raise InputError(f"{path}: identifier map does not match the puzzle table")
    return Checkpoint(folder, state, cfg, id_map)


def main(argv: list[str]) -> int:
    """`python -m arc_trm.checkpoint PATH`: check that PATH loads (used by `arc-trm kaggle`)."""
    try:
        found = load_checkpoint(argv[0])
    except InputError as e:
        eprint(e)
        return 2
    print(f"{found.folder}: checkpoint format {FORMAT_VERSION}, step {found.state['step']}, valid")
    return 0


def transplant_weights(state: dict, old: IdentifierMap, new: IdentifierMap) -> dict:
    """Pretrained weights (EMA when present) with a puzzle table for the new rows: a row is copied
    when the checkpoint trained the same identifier and augmentation, on the same task content (or
    either side records none); the rest start at the mean of the pretrained rows."""
    weights = {**state["model"], **(state.get("ema") or {})}
    old_table = state["model"]["puzzle_table"]
    mean = old_table[1:].mean(0) if old_table.shape[0] > 1 else torch.zeros(old_table.shape[1])
    old_rows = {old.row_key(r)[:2]: r for r in range(1, len(old.identifiers))}  # (identifier, augmentation)
    table = mean.repeat(len(new.identifiers), 1)
    table[0] = 0  # the blank id
    for r in range(1, len(new.identifiers)):
        ident, aug, content = new.row_key(r)
        match = old_rows.get((ident, aug))
        if match is None:
            continue
        old_content = old.row_key(match)[2]
        if content is None or old_content is None or content == old_content:  # None: not recorded
            table[r] = old_table[match]
    weights["puzzle_table"] = table
    return weights


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
