"""Benchmark: import a published-size reference checkpoint (synthetic weights) and measure memory.

Writes a folder laid out as ARC Prize publishes it: `step_518071` with the paper network and an
876,406 x 512 float32 puzzle table (1.82 GB, the arc_v1_public shapes) plus an all_config.yaml
whose data path names arc1concept at 1000 augmentations. Then runs
`arc-trm import-checkpoint FOLDER --conceptarc ... --out RUN` (identifiers rebuilt, as a user
without identifiers.json does) as a child process and reports its wall time, CPU time (user +
sys) and peak RSS (os.wait4 rusage of that child alone), against the file size. The folder is
deleted afterwards.

    nice -n 10 python benchmarks/import_memory.py [--rows 876406] [--workdir DIR] [--json OUT]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from published_smoke import published_arguments, stage, write_published_folder  # noqa: E402

BEFORE = {"wall_s": 29.9, "peak_rss_gb": 5.95, "ratio": 3.3}  # the import before this change, same shapes


def main() -> None:
    ap = published_arguments(__doc__)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.workdir, prefix="import_memory_"))
    try:
        weights = write_published_folder(work / "arc_v1_public", args.rows, args.augmentations)
        size_gb = weights.stat().st_size / 1e9
        run = stage(["import-checkpoint", str(weights.parent), "--conceptarc", str(args.conceptarc),
                     "--out", str(work / "run")])
        wall, rss, code = run["wall_s"], run["peak_rss_gb"], run["exit_code"]
        result = {"rows": args.rows, "file_gb": round(size_gb, 3), "exit_code": code, "wall_s": round(wall, 1),
                  "cpu_s": run["cpu_s"],
                  "peak_rss_gb": round(rss, 3), "ratio": round(rss / size_gb, 2),
                  "load_average": round(os.getloadavg()[0], 1), "before": BEFORE}
        print(json.dumps(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
