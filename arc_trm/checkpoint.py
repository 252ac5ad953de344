"""Run folders and atomic checkpoints.

    RUN/config.json                  resolved config of the run
    RUN/metrics.jsonl                one JSON line per logged step
    RUN/checkpoints/step_000100/     one folder per checkpoint:
        state.pt                     model, EMA, optimisers, puzzle table, sampler, RNG, step
        carry_rank{r}.pt             each rank's ACT carry (exact resume)
        config.json, identifiers.json
    RUN/checkpoints/latest           name of the newest complete checkpoint

A checkpoint folder is written under a temporary name and renamed when complete, and `latest`
is replaced atomically after that, so a killed run never leaves a half-written checkpoint that
`--resume` would pick up. Everything loads with `torch.load(..., weights_only=True)`.

An inference export (`arc-trm export`, arc_trm/export.py: model.safetensors, config.json,
identifiers.json) is accepted wherever a checkpoint folder is read for inference; `load_state`
returns it in the same shape as a state.pt (EMA already folded into "model", no optimiser).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from augment.tasks import InputError
# Re-exported for the run-folder code: one atomic writer and one JSON reader for every file.
from submission.kaggle import read_json as read_json, write_text_atomic as write_text_atomic


EXPORT_WEIGHTS = "model.safetensors"
EXPORT_FORMAT = "arc-trm-inference-export-1"


def torch_save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def checkpoint_dir(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step_{step:07d}"


def begin_checkpoint(run: Path, step: int) -> Path:
    """A fresh temporary folder for the checkpoint of `step` (rank 0 calls this)."""
    tmp = run / "checkpoints" / f".tmp_step_{step:07d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_checkpoint(run: Path, step: int, keep: int = 2) -> Path:
    """Rename the temporary folder into place, point `latest` at it, prune old ones."""
    final = checkpoint_dir(run, step)
    tmp = run / "checkpoints" / f".tmp_step_{step:07d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text_atomic(run / "checkpoints" / "latest", final.name)
    done = sorted(p for p in (run / "checkpoints").glob("step_*") if p.is_dir())
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return final


def latest_checkpoint(run: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, or None."""
    marker = Path(run) / "checkpoints" / "latest"
    if not marker.exists():
        return None
    path = marker.parent / marker.read_text().strip()
    return path if (path / "state.pt").exists() else None


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a run folder or a checkpoint folder; return the checkpoint folder."""
    p = Path(path)
    if (p / "state.pt").exists() or (p / EXPORT_WEIGHTS).exists():
        return p
    found = latest_checkpoint(p)
    if found is None:
        raise InputError(f"{p}: no checkpoint found (expected RUN/checkpoints/latest, a folder with state.pt "
                         f"or an inference export with {EXPORT_WEIGHTS})")
    return found


def load_state(ckpt: Path, name: str = "state.pt", map_location: str | torch.device = "cpu") -> dict:
    path = Path(ckpt) / name
    if name == "state.pt" and not path.exists() and (Path(ckpt) / EXPORT_WEIGHTS).exists():
        return load_export(Path(ckpt))
    if not path.exists():
        raise InputError(f"{path}: checkpoint file missing")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError) as e:
        raise InputError(f"{path}: cannot load checkpoint ({type(e).__name__}: {e})") from None


def load_export(folder: Path) -> dict:
    """An inference export as a state dict: {"model", "ema": None, "config", "identifiers"}."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / EXPORT_WEIGHTS
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path}: cannot load inference export ({type(e).__name__}: {e})") from None
    config = read_json(folder / "config.json", "config")
    ids = read_json(folder / "identifiers.json", "identifier map")
    if not isinstance(ids, dict) or not isinstance(ids.get("identifiers"), list):
        raise InputError(f"{folder / 'identifiers.json'}: expected an object with an \"identifiers\" list")
    return {"model": weights, "ema": None, "config": json.dumps(config, indent=2), "identifiers": ids["identifiers"]}
