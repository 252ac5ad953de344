"""benchmarks/accuracy.py end to end at a tiny budget: deterministic given its seed, both rankings
recorded, and a last line that names both."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import CONCEPTARC

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, name: str) -> tuple[str, dict, str]:
    js, cands = tmp_path / f"{name}.json", tmp_path / f"{name}.cands.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "accuracy.py"), "--device", "cpu", "--budget-pflop", "0.0003",
           "--per-source", "1", "--label", name, "--json", str(js), "--candidates", str(cands)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, json.loads(js.read_text()), cands.read_text()


@pytest.mark.slow
@pytest.mark.skipif(not CONCEPTARC.exists(), reason="the suite draws from ConceptARC in ../shared/data")
def test_two_runs_with_one_seed_agree_to_every_candidate_and_log_probability(tmp_path):
    out_a, res_a, cands_a = _run(tmp_path, "a")
    _, res_b, cands_b = _run(tmp_path, "b")
    assert res_a["steps"] == res_b["steps"] > 0
    assert res_a["scores"] == res_b["scores"] and set(res_a["scores"]) == {"votes", "consistency"}
    outputs_a = json.loads(cands_a)["outputs"]
    assert outputs_a and outputs_a == json.loads(cands_b)["outputs"]  # votes and log-probabilities alike
    # Bit-for-bit repeats hold per instruction set, so the record names it.
    assert torch.backends.cpu.get_cpu_capability() in res_a["machine"]["device"]
    last = out_a.strip().splitlines()[-1]
    m = re.fullmatch(r"summary a \(seed 0\), of (\d+) outputs: votes pass@1/2/8 (\d+)/(\d+)/(\d+); "
                     r"consistency pass@1/2/8 (\d+)/(\d+)/(\d+)", last)
    assert m, last
    votes = res_a["scores"]["votes"]["per_output"]
    assert int(m[1]) == votes["1"][1] and [int(m[i]) for i in (2, 3, 4)] == [votes[k][0] for k in ("1", "2", "8")]
