"""Compare accuracy arms (the --json files of benchmarks/accuracy.py) against the first one.

    python benchmarks/compare_arms.py baseline.json aug8.json lr3e-3.json [--k 2]

One markdown row per arm and ranking rule: pass@k per test output with its Wilson 95% interval,
then the change against the first file's votes ranking, paired over the same test outputs: outputs
gained (+) and lost (-), counted per task, and the exact two-sided McNemar p-value of that split.
A gain with p >= 0.05 is not evidence that the arm helps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy.stats import binomtest  # noqa: E402

from submission.score import binomial_ci  # noqa: E402


def solved_by_task(scores: dict, k: int) -> dict[str, int]:
    return {row["task"]: row[f"pass@{k}"] for row in scores["table"]}


def paired(base: dict[str, int], arm: dict[str, int]) -> tuple[int, int, float]:
    """(outputs gained, outputs lost, McNemar exact p) over the tasks both scored."""
    gained = sum(max(0, arm[t] - base[t]) for t in base)
    lost = sum(max(0, base[t] - arm[t]) for t in base)
    p = binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
    return gained, lost, p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("arms", nargs="+", type=Path, help="accuracy.py --json files; the first is the reference")
    ap.add_argument("--k", type=int, default=2, help="pass@k compared (default 2)")
    args = ap.parse_args()
    runs = [json.loads(p.read_text()) for p in args.arms]
    base = solved_by_task(runs[0]["scores"]["votes"], args.k)
    print(f"| arm | ranking | steps | pass@{args.k} (95% CI) | vs {runs[0]['label']} (votes): +gained -lost, p |")
    print("|---|---|---|---|---|")
    for run in runs:
        for rule, scores in run["scores"].items():
            solved, n = scores["per_output"][str(args.k)]
            lo, hi = binomial_ci(solved, n)
            gained, lost, p = paired(base, solved_by_task(scores, args.k))
            print(f"| {run['label']} | {rule} | {run['steps']} | {solved}/{n} = {solved / n:.3f} [{lo:.3f}, {hi:.3f}] "
                  f"| +{gained} -{lost}, p = {p:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
