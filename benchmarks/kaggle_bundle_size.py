"""Benchmark: the size of the checkpoint a Kaggle bundle ships, lean export vs whole table vs state.

A synthetic training checkpoint of the paper-size network (preset `paper`: hidden 512, 8 heads,
2 layers, canvas 30, puzzle prefix 16) with a puzzle table of ROWS x 512 float32 (random values,
876,406 rows by default: the size of a table pretrained on the published ARC-AGI-2 augmented set)
is written to a scratch folder, then exported three ways with the code the bundle runs:

  lean        arc_trm.export.export_lean       the network and the mean puzzle row (the default bundle)
  full table  arc_trm.export.export_inference  the network and every puzzle row (--full-table)
  state       the checkpoint folder itself     raw + EMA weights, optimiser moments (--full-state)

It prints one JSON object of sizes (bytes) and seconds, and deletes the scratch folder. Needs about
3 x the table (5.4 GB at the default size) of free disk and 2-3 x of memory.

    python benchmarks/kaggle_bundle_size.py                       # 876,406 rows, in a temporary folder
    python benchmarks/kaggle_bundle_size.py --rows 10000 --scratch /big/disk
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from arc_trm import checkpoint as ckpt
from arc_trm.config import preset
from arc_trm.export import export_inference, export_lean
from augment.files import folder_bytes
from arc_trm.model import TRM

ROWS = 876_406


def write_synthetic_checkpoint(run: Path, rows: int) -> Path:
    """A valid run folder: paper network, `rows`-row random table, EMA and two Adam moments of the
    weights (what a training checkpoint holds), identifiers for every row."""
    cfg = preset("paper")
    cfg.model.num_puzzle_ids = rows
    torch.manual_seed(0)
    model = TRM(cfg.model)
    model.puzzle_table.normal_(0, 0.02)
    params = {n: p.detach() for n, p in model.named_parameters()}
    moments = {n: {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)} for n, p in params.items()}
    identifiers = ["<blank>"] + [f"t{r // 1000:06d}#{r % 1000}" for r in range(1, rows)]
    state = {"model": model.state_dict(), "ema": {n: p.clone() for n, p in params.items()},
             "optim": {"moments": moments}, "sampler": None, "step": 1, "config": json.dumps(cfg.to_dict()),
             "identifiers": identifiers}
    tmp = ckpt.begin_checkpoint(run, 1)
    ckpt.torch_save_atomic(state, tmp / ckpt.STATE)
    (tmp / "config.json").write_text(state["config"])
    (tmp / "identifiers.json").write_text(json.dumps(
        {"identifiers": identifiers, "augmentations": [""] + ["t0p0123456789"] * (rows - 1), "task_hashes": None}))
    return ckpt.commit_checkpoint(run, 1)


def measure(rows: int, scratch: Path) -> dict:
    folder = write_synthetic_checkpoint(scratch / "run", rows)
    result: dict = {"rows": rows, "hidden": 512, "state_bytes": folder_bytes(folder)}
    for name, export in (("lean", export_lean), ("full_table", export_inference)):
        start = time.perf_counter()
        out = export(folder, scratch / name)
        result[f"{name}_bytes"] = out.bytes
        result[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
        shutil.rmtree(scratch / name)
    network = TRM(preset("paper").model)
    result["network_params"] = sum(p.numel() for n, p in network.named_parameters())
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=ROWS, help=f"puzzle-table rows (default {ROWS})")
    p.add_argument("--scratch", type=Path, default=None, help="folder for the scratch files (default: a temporary one)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="arc-trm-size-", dir=args.scratch) as tmp:
        print(json.dumps(measure(args.rows, Path(tmp)), indent=2))


if __name__ == "__main__":
    main()
