"""Benchmark: identifiers.json at the published size, task hashes per row (before) vs per task (now).

A synthetic IdentifierMap of ROWS puzzle rows over TASKS tasks, shaped like an imported published
checkpoint's: 8-hex task ids, rows `task#k`, augmentation records `t<dihedral>p0<9 digits>`, and a
32-hex task_hash.content_hash per task. It is written both ways in the same run:

  per row   the older file: "task_hashes" a list, one hash per row ("" for row 0)
  per task  the current file: "task_hashes" an object, task id -> hash

and each is read back through IdentifierMap.from_json (an older file is checked and turned per
task). Prints one JSON object: bytes of each file and of its "task_hashes" part, the ratio, and the
seconds to write (json.dumps) and read (json.loads + from_json) each.

    python benchmarks/identifier_map_size.py                      # 1,200,000 rows over 1,000 tasks
    python benchmarks/identifier_map_size.py --rows 100000 --tasks 400
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import numpy as np

from augment.identifier_map import IdentifierMap


def synthetic_map(rows: int, tasks: int, seed: int = 0) -> IdentifierMap:
    """`rows` rows (the blank included) spread evenly over `tasks` task ids, hashes recorded."""
    rng = np.random.default_rng(seed)
    ids = sorted({f"{int(x):08x}" for x in rng.integers(0, 2**32, tasks * 2)})[:tasks]
    identifiers = ["<blank>"] + [f"{ids[r % tasks]}#{r // tasks}" for r in range(rows - 1)]
    dihedral = rng.integers(0, 8, rows - 1)
    perms = rng.permuted(np.tile(np.arange(1, 10), (rows - 1, 1)), axis=1)  # colour 0 stays 0
    augmentations = [""] + [f"t{d}p0{''.join(map(str, p))}" for d, p in zip(dihedral, perms.tolist())]
    hashes = {t: hashlib.blake2b(t.encode(), digest_size=16).hexdigest() for t in ids}
    return IdentifierMap(identifiers, augmentations, hashes)


def measured(data: dict) -> dict:
    """Bytes and seconds of one file format."""
    start = time.perf_counter()
    text = json.dumps(data)
    wrote = time.perf_counter() - start
    start = time.perf_counter()
    IdentifierMap.from_json(json.loads(text), "synthetic/identifiers.json")
    read = time.perf_counter() - start
    return {"bytes": len(text.encode()), "task_hashes_bytes": len(json.dumps(data["task_hashes"]).encode()),
            "write_s": round(wrote, 2), "read_s": round(read, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_200_000, help="puzzle rows, the blank included")
    p.add_argument("--tasks", type=int, default=1_000)
    args = p.parse_args()
    id_map = synthetic_map(args.rows, args.tasks)
    now = id_map.to_json()
    before = {**now, "task_hashes": [id_map.task_hash(r) for r in range(len(id_map.identifiers))]}
    result = {"rows": args.rows, "tasks": args.tasks, "per_row": measured(before), "per_task": measured(now)}
    result["ratio"] = round(result["per_row"]["bytes"] / result["per_task"]["bytes"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
