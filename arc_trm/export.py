"""Inference export: the part of a checkpoint that `predict` and `ttt` use, without the training state.

  arc-trm export --checkpoint runs/agi2 --out dist/export

A training checkpoint (state.pt) carries the raw weights, the EMA weights, the optimiser moments,
the sampler and RNG states. Inference needs only the EMA weights (the raw ones where a run kept no
EMA) and the puzzle table. The export folder holds:

  model.safetensors   every tensor of the model's state dict, EMA values over the raw ones
  config.json         the run's resolved config
  identifiers.json    puzzle row -> identifier and augmentation
  manifest.json       format version, size and hash of each file

`arc-trm predict --checkpoint OUT` and `arc-trm ttt --checkpoint OUT` load it like a run folder.
Files are written under temporary names and renamed into place, so an interrupted export never
leaves a folder that looks complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save_file

from arc_trm import checkpoint as ckpt
from augment.errors import InputError
from submission import checkpoint_manifest as manifest


@dataclass
class Export:
    """What `export_inference` wrote."""

    folder: Path
    source: Path  # the checkpoint folder it came from
    tensors: int
    bytes: int  # size of the export folder's files


def inference_weights(state: dict) -> dict:
    """The model's state dict with EMA values over the raw ones, as contiguous CPU tensors."""
    weights = {**state["model"], **(state.get("ema") or {})}
    return {name: t.detach().cpu().contiguous() for name, t in weights.items()}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def export_inference(source: str | Path, out: str | Path) -> Export:
    """Write the inference export of `source` (run folder or checkpoint folder) to `out`."""
    found = ckpt.resolve_checkpoint(source)
    state = ckpt.load_state(found)
    ids = ckpt.read_json(found / "identifiers.json", "identifier map")
    if not isinstance(ids, dict) or ids.get("identifiers") != state["identifiers"]:
        raise InputError(f"{found / 'identifiers.json'}: does not match the identifiers in state.pt")
    weights = inference_weights(state)
    out = Path(out)
    if out.resolve() == found.resolve():
        raise InputError(f"{out}: the export must go to another folder than the checkpoint")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(weights, str(tmp / ckpt.EXPORT_WEIGHTS),
              metadata={"format": ckpt.EXPORT_FORMAT, "step": str(int(state["step"]))})
    ckpt.write_text_atomic(tmp / "config.json", state["config"])
    ckpt.write_text_atomic(tmp / "identifiers.json", (found / "identifiers.json").read_text(encoding="utf-8"))
    manifest.write_manifest(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return Export(out, found, len(weights), folder_bytes(out))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="run folder (its latest checkpoint) or checkpoint folder")
    p.add_argument("--out", required=True, help="export folder (replaced)")
    p.add_argument("--lean", action="store_true",
                   help="keep only the network and the mean puzzle row (what ttt on new tasks reads); "
                        "predict then knows no task (default: the whole puzzle table)")


def run(args: argparse.Namespace) -> int:
    result = (export_lean if args.lean else export_inference)(args.checkpoint, args.out)
    full = folder_bytes(result.source)
    print(f"exported {result.source} -> {result.folder}: {result.tensors} tensors, "
          f"{result.bytes / 1e6:.2f} MB (checkpoint folder: {full / 1e6:.2f} MB)")
    return 0


# ----------------------------------------------------------------------------------------------
# Lean export: what test-time training on new tasks reads, without the pretraining puzzle table.

LEAN_IDENTIFIER = "<mean>"  # never a build row's identifier (those are "task#k")


def lean_table(table):
    """The blank row (zeros) and, when the table has trained rows, their mean: ttt seeds every new
    puzzle row with the mean of rows 1..N (ttt_phases.transplant_weights), and the mean of this
    one-row rest is that same row, so ttt starts from identical weights."""
    lean = table.new_zeros(min(2, table.shape[0]), table.shape[1])
    if table.shape[0] > 1:
        lean[1] = table[1:].mean(0)
    return lean


def export_lean(source: str | Path, out: str | Path) -> Export:
    """Write a lean inference export of `source` (run folder, checkpoint folder or export) to `out`:
    the network (EMA values) and a puzzle table of the blank row plus the mean trained row. Rows of
    the tasks the checkpoint trained on are dropped, so `predict` from it answers no task and ttt
    seeds every puzzle row with the mean (as it does for any task the checkpoint did not train)."""
    found = ckpt.resolve_checkpoint(source)
    state = ckpt.load_state(found)
    out = Path(out)
    if out.resolve() == found.resolve():
        raise InputError(f"{out}: the export must go to another folder than the checkpoint")
    weights = inference_weights(state)
    weights["puzzle_table"] = lean_table(state["model"]["puzzle_table"])  # the table ttt averages
    rows = int(weights["puzzle_table"].shape[0])
    identifiers = ["<blank>", LEAN_IDENTIFIER][:rows]
    config = json.loads(state["config"])
    config["model"]["num_puzzle_ids"] = rows
    ids = ckpt.read_json(found / "identifiers.json", "identifier map")
    had_hashes = isinstance(ids, dict) and ids.get("task_hashes") is not None
    id_map = {"identifiers": identifiers, "augmentations": [""] * rows,
              "task_hashes": [""] * rows if had_hashes else None}
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    source_rows = int(state["model"]["puzzle_table"].shape[0])
    save_file(weights, str(tmp / ckpt.EXPORT_WEIGHTS),
              metadata={"format": ckpt.EXPORT_FORMAT, "step": str(int(state["step"])), "table": "lean",
                        "source_rows": str(source_rows)})
    ckpt.write_text_atomic(tmp / "config.json", json.dumps(config, indent=2))
    ckpt.write_text_atomic(tmp / "identifiers.json", json.dumps(id_map))
    manifest.write_manifest(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return Export(out, found, len(weights), folder_bytes(out))
