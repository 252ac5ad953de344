"""Benchmark: `arc-trm reference-ids` for both published recipes at 1000 augmentations.

Each recipe runs as its own `arc-trm reference-ids` subprocess; reported: wall time, the child's
user + system CPU time (what a busy shared machine does not inflate), its peak RSS (getrusage
ru_maxrss of the child), and whether the list matches the reference's count and sha256
(tests/fixtures/reference_identifiers/seed42_aug1000_summary.json).

    python benchmarks/reference_ids.py [--conceptarc PATH] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = ROOT / "tests" / "fixtures" / "reference_identifiers" / "seed42_aug1000_summary.json"
CONCEPTARC = ROOT.parent / "shared" / "data" / "conceptarc_challenges.json"
REFERENCE = {"wall_s": 17 * 60, "peak_rss_gb": 21.7}  # the reference builder, ARC-AGI-2 recipe, this machine


def run_one(recipe: str, conceptarc: Path, folder: Path) -> dict:
    out = folder / f"{recipe}.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "arc_trm.cli", "reference-ids", "--recipe", recipe, "--conceptarc",
                    str(conceptarc), "--out", str(out)], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    names = json.loads(out.read_text())
    expected = json.loads(SUMMARY.read_text())[recipe]
    return {"recipe": recipe, "wall_s": round(wall, 1),
            "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
            "peak_rss_gb": round(after.ru_maxrss / 2**20, 3),  # the largest child so far (kB)
            "count": len(names), "count_matches": len(names) == expected["count"],
            "sha256_matches": hashlib.sha256(json.dumps(names).encode()).hexdigest() == expected["sha256_of_json_dumps"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conceptarc", type=Path, default=CONCEPTARC, help=f"default {CONCEPTARC}")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in ("arc1concept", "arc2concept"):  # arc2concept second: ru_maxrss is a running maximum
            results.append(run_one(recipe, args.conceptarc, Path(tmp)))
            print(json.dumps(results[-1]))
    print(f"load average {os.getloadavg()[0]:.1f}; reference builder: {REFERENCE}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "reference": REFERENCE}, indent=2))


if __name__ == "__main__":
    main()
