"""Smoke run: a published-size checkpoint (synthetic weights) through import, predict and score on CPU.

Writes a folder laid out as ARC Prize publishes one (`step_518071` + all_config.yaml naming
arc1concept at 1000 augmentations; the paper network and an 876,406 x 512 puzzle table, 1.82 GB),
then runs, each as its own process, timed, with its peak RSS (os.wait4 rusage):

    arc-trm import-checkpoint FOLDER --conceptarc CONCEPTARC --out RUN        (identifiers rebuilt)
    arc-trm predict --checkpoint RUN --tasks arc-agi-1:evaluation/A+B --views 2 --max-steps 1 --halting off
    arc-trm score SUBMISSION --tasks arc-agi-1:evaluation/A+B

The weights are random, so the score is 0; what counts is that every stage runs at the real
shapes. `--rows 961 --augmentations 0` gives the same network with a small table (the slow test
tests/test_published_smoke.py runs that). The work folder is deleted afterwards.

    nice -n 10 python benchmarks/published_smoke.py [--rows 876406] [--augmentations 1000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONCEPTARC = ROOT.parent / "shared" / "data" / "conceptarc_challenges.json"
TASKS = "arc-agi-1:evaluation/66e6c45b+e9ac8c9e"  # two small ARC-AGI-1 evaluation tasks
# all_config.yaml's arch section as the reference writes it (paper ARC settings).
ARCH = {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1", "hidden_size": 512, "num_heads": 8,
        "L_layers": 2, "H_cycles": 3, "L_cycles": 4, "expansion": 4, "puzzle_emb_len": 16, "pos_encodings": "rope",
        "halt_max_steps": 16, "halt_exploration_prob": 0.1, "forward_dtype": "bfloat16", "mlp_t": False}

_WRITE = """
import sys, torch
from arc_trm.config import preset
from arc_trm.convert import to_reference_state_dict
from arc_trm.model import TRM
cfg = preset("paper").model
cfg.num_puzzle_ids, cfg.seq_len = 1, 900
torch.manual_seed(0)
sd = {"_orig_mod.model." + k: v for k, v in to_reference_state_dict(TRM(cfg).state_dict()).items()}
table = torch.empty(int(sys.argv[2]), 512)
table.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(0))
sd["_orig_mod.model.inner.puzzle_emb.weights"] = table
torch.save(sd, sys.argv[1])
"""


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def write_published_folder(folder: Path, rows: int, augmentations: int) -> Path:
    """FOLDER/step_518071 (random paper-size weights, `rows` table rows) and FOLDER/all_config.yaml."""
    folder.mkdir(parents=True)
    weights = folder / "step_518071"
    subprocess.run([sys.executable, "-c", _WRITE, str(weights), str(rows)], check=True, env=child_env())
    config = {"arch": ARCH, "data_paths": [f"data/arc1concept-aug-{augmentations}"]}
    (folder / "all_config.yaml").write_text(json.dumps(config))  # JSON is YAML
    return weights


def stage(args: list[str]) -> dict:
    """Run `arc-trm ARGS` as a child: wall s, CPU s (user + sys: steadier than wall on a shared
    machine), peak RSS (GB of 10^9 bytes), exit code, output tail."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "arc_trm.cli", *args], env=child_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    return {"wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 3),
            "exit_code": os.waitstatus_to_exitcode(status), "tail": output.strip().splitlines()[-3:]}


def smoke(work: Path, rows: int, augmentations: int, conceptarc: Path) -> dict:
    weights = write_published_folder(work / "arc_v1_public", rows, augmentations)
    result: dict = {"rows": rows, "file_gb": round(weights.stat().st_size / 1e9, 3)}
    run, submission = work / "run", work / "submission.json"
    steps = {
        "import": ["import-checkpoint", str(weights.parent), "--conceptarc", str(conceptarc), "--out", str(run)],
        "predict": ["predict", "--checkpoint", str(run), "--tasks", TASKS, "--views", "2", "--max-steps", "1",
                    "--halting", "off", "--device", "cpu", "--out", str(submission), "--no-progress"],
        "score": ["score", str(submission), "--tasks", TASKS],
    }
    for name, args in steps.items():
        result[name] = stage(args)
        print(name, json.dumps(result[name]), flush=True)
        if result[name]["exit_code"] != 0:
            break
    return result


def published_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The options both published-size benchmarks take."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=876_406, help="puzzle table rows (default 876406: arc_v1_public)")
    ap.add_argument("--augmentations", type=int, default=1000, help="the recipe's count named in the config")
    ap.add_argument("--conceptarc", type=Path, default=CONCEPTARC, help=f"default {CONCEPTARC}")
    ap.add_argument("--workdir", type=Path, default=None, help="where the synthetic files go (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    return ap


def main() -> None:
    ap = published_arguments(__doc__)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.workdir, prefix="published_smoke_"))
    try:
        result = smoke(work, args.rows, args.augmentations, args.conceptarc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_average"] = round(os.getloadavg()[0], 1)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    ok = all(result.get(s, {}).get("exit_code") == 0 for s in ("import", "predict", "score"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
