"""benchmarks/compare_arms.py --pool: suites that share tasks are pooled with the task as the unit."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "benchmarks"))  # appended, so benchmarks/common.py shadows nothing

from compare_arms import pooled  # noqa: E402


def _run(label: str, solved: dict[str, int]) -> dict:
    table = [{"task": t, "outputs": 2, "pass@2": n} for t, n in solved.items()]
    scores = {"table": table, "per_output": {"2": [sum(solved.values()), 2 * len(solved)]}}
    return {"label": label, "seed": 0, "steps": 1, "scores": {"votes": scores}}


def test_a_shared_task_counts_once_with_its_changes_summed():
    # Task "a" is in both suites: +1 in the first, -1 in the second, so it neither got better nor worse.
    s0 = (_run("b0", {"a": 0, "b": 0, "c": 1}), _run("a0", {"a": 1, "b": 1, "c": 1}))
    s1 = (_run("b1", {"a": 1, "d": 0}), _run("a1", {"a": 0, "d": 0}))
    r = pooled([s0, s1], 2, "votes")
    assert (r["tasks"], r["outputs"], r["base"], r["arm"]) == (4, 10, 2, 3)
    assert (r["better"], r["worse"]) == (1, 0)  # only "b"; "a" nets to zero
    assert r["p"] == 1.0


def test_pairs_from_different_suites_are_refused_in_one_line(tmp_path):
    base, arm = tmp_path / "base.json", tmp_path / "arm.json"
    base.write_text(json.dumps(_run("base", {"a": 0})))
    arm.write_text(json.dumps(_run("arm", {"z": 1})))
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare_arms.py"), "--pool", str(base), str(arm)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "compare_arms.py: base and arm were not run on the same suite"
