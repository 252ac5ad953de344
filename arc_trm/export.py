"""Inference export: the part of a checkpoint that `predict` and `ttt` use, without the training state.

  arc-trm export --checkpoint runs/agi2 --out dist/export

A training checkpoint (state.pt) carries the raw weights, the EMA weights, the optimiser moments,
the sampler and RNG states. Inference needs only the EMA weights (the raw ones where a run kept no
EMA) and the puzzle table. The export folder holds:

  model.safetensors   every tensor of the model's state dict, EMA values over the raw ones
  config.json         the run's resolved config
  identifiers.json    puzzle row -> identifier and augmentation
  import.json         for weights imported with `arc-trm import-checkpoint`: the run's import
                      record (their source and licence), which `kaggle bundle` turns into a notice
  manifest.json       format version, size and hash of each file

`arc-trm predict --checkpoint OUT` and `arc-trm ttt --checkpoint OUT` load it like a run folder.
Files are written under temporary names and renamed into place, so an interrupted export never
leaves a folder that looks complete. OUT must be new, empty or an earlier export: a run, a
checkpoint, a folder above one or any other files are refused (the build's guard), never deleted;
so is the folder the command runs in (the export replaces its folder whole).
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
from arc_trm.stopping import current
from augment.console import size_text
from augment.errors import InputError
from augment.files import (atomic_path, check_replaceable, finished_line, folder_bytes, read_json, replace_folder,
                           write_text_atomic)
from augment.identifier_map import IdentifierMap
from submission import checkpoint_manifest as manifest
from submission.notice import carry_import_record
from submission.runfolder import LEAN_IDENTIFIER, check_holds_no_run, is_export, verify_model_files


@dataclass
class Export:
    """What `export_inference` wrote."""

    folder: Path
    source: Path  # the checkpoint (or export) folder it came from
    tensors: int
    bytes: int  # size of the export folder's files


def inference_weights(state: dict) -> dict:
    """The model's state dict with EMA values over the raw ones, as contiguous CPU tensors."""
    weights = {**state["model"], **(state.get("ema") or {})}
    return {name: t.detach().cpu().contiguous() for name, t in weights.items()}


def check_export_folder(out: Path, found: Path) -> None:
    """One line unless `out` is new, empty or an earlier export (nothing is deleted otherwise)."""
    if out.resolve() == found.resolve():
        raise InputError(f"{out}: the export must go to another folder than the one it is read from")
    if not is_export(out) and not (out / manifest.MANIFEST).is_file():  # an export with files of yours: check_replaceable says so
        check_holds_no_run(out, "an export never replaces one")
    check_replaceable(out, is_export, "an inference export")


def export_inference(source: str | Path, out: str | Path, lean: bool = False) -> Export:
    """Write the inference export of `source` (run folder, checkpoint folder or export) to `out`.
    With `lean`, the puzzle table keeps only the blank row and the mean trained row (see
    lean_table): ttt on new tasks starts from the same weights, and predict knows no task."""
    found = ckpt.resolve_checkpoint(source)
    out = Path(out)
    check_export_folder(out, found)  # before the weights load: a refusal is quick and writes nothing
    where = out.resolve()  # `dir/..` or a link: the temporary folder goes beside the real one
    verify_model_files(found)  # the export's fresh manifest would vouch for damaged weights
    state = ckpt.load_state(found)
    ids_path = found / "identifiers.json"
    ids = IdentifierMap.from_json(read_json(ids_path, "identifier map"), ids_path)
    if ids.identifiers != state["identifiers"]:
        raise InputError(f"{ids_path}: does not match the identifiers in state.pt")
    weights = inference_weights(state)
    metadata = {"format": ckpt.EXPORT_FORMAT, "step": str(int(state["step"]))}
    config_text = state["config"]
    if lean:
        metadata.update(table="lean", source_rows=str(int(weights["puzzle_table"].shape[0])))
        weights["puzzle_table"] = lean_table(weights["puzzle_table"])
        rows = int(weights["puzzle_table"].shape[0])
        config = json.loads(config_text)
        config["model"]["num_puzzle_ids"] = rows
        config_text = json.dumps(config, indent=2)
        ids = IdentifierMap(["<blank>", LEAN_IDENTIFIER][:rows], [""] * rows,  # the mean row is no task's
                            {} if ids.task_hashes is not None else None)
    tmp = where.with_name(f".{where.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        with atomic_path(tmp / ckpt.EXPORT_WEIGHTS) as path:  # 0644 like the other files (save_file makes 0600)
            save_file(weights, str(path), metadata=metadata)
        write_text_atomic(tmp / "config.json", config_text)
        write_text_atomic(tmp / "identifiers.json", json.dumps(ids.to_json()))  # an older per-row file: per task
        carry_import_record(found, tmp)  # imported weights keep their source and licence in every export of them
        manifest.write_manifest(tmp)
        stop = current()
        with stop.polled(f"finishing the export in {out}"):  # a signal held across the swap comes after the work
            stop.describe = lambda signame: finished_line(signame, "export", f"{out} is complete")
            replace_folder(tmp, where, is_export, "an inference export")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Export(out, found, len(weights), folder_bytes(out))


def export_lean(source: str | Path, out: str | Path) -> Export:
    return export_inference(source, out, lean=True)


def lean_table(table):
    """The blank row (zeros) and, when the table has trained rows, their mean: ttt seeds every new
    puzzle row with the mean of rows 1..N (checkpoint.transplant_weights), and the mean of this
    one-row rest is that same row, so ttt starts from identical weights."""
    lean = table.new_zeros(min(2, table.shape[0]), table.shape[1])
    if table.shape[0] > 1:
        lean[1] = table[1:].mean(0)
    return lean


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="run folder (its latest checkpoint), checkpoint folder or an inference export (e.g. to "
                        "make a --lean one of it)")
    p.add_argument("--out", required=True,
                   help="export folder: new, empty or an earlier export (replaced), not the folder you are in; "
                        "anything else is refused")
    p.add_argument("--lean", action="store_true",
                   help="keep only the network and the mean puzzle row (what ttt on new tasks reads); "
                        "predict then refuses it: it knows no task (default: the whole puzzle table)")


def run(args: argparse.Namespace) -> int:
    result = export_inference(args.checkpoint, args.out, lean=args.lean)
    full = folder_bytes(result.source)
    source = "export folder" if ckpt.reads_as_export(result.source) else "checkpoint folder"
    print(f"exported {result.source} -> {result.folder}: {result.tensors} tensors, "
          f"{size_text(result.bytes)} ({source}: {size_text(full)})")
    return 0
