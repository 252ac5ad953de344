"""Compare accuracy arms (the --json files of benchmarks/accuracy.py) against the first one.

    python benchmarks/compare_arms.py baseline.json aug8.json lr3e-3.json [--k 2]

One markdown row per arm and ranking rule: pass@k per test output with its Wilson 95% interval,
then the change against the first file's votes ranking, paired over the same test outputs: outputs
gained (+) and lost (-), counted per task, and the exact two-sided McNemar p-value of that split.
A gain with p >= 0.05 is not evidence that the arm helps.

    python benchmarks/compare_arms.py --pool base-s0.json arm-s0.json --pool base-s1.json arm-s1.json

pools suites drawn with several --seed values: each (baseline, arm) pair is one suite (one
training run each). Suites drawn from the same small tasks share some, so the unit is the task:
its change in solved outputs is summed over the suites that drew it, and the pooled row is an
exact sign test over the tasks that got better or worse.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy.stats import binomtest  # noqa: E402

from submission.score import binomial_ci  # noqa: E402


def load(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"{path}: no such accuracy file (write one with accuracy.py --json)")
    return json.loads(path.read_text())


def solved_by_task(scores: dict, k: int) -> dict[str, int]:
    return {row["task"]: row[f"pass@{k}"] for row in scores["table"]}


def paired(base: dict[str, int], arm: dict[str, int]) -> tuple[int, int, float]:
    """(outputs gained, outputs lost, McNemar exact p) over the tasks both scored."""
    gained = sum(max(0, arm[t] - base[t]) for t in base)
    lost = sum(max(0, base[t] - arm[t]) for t in base)
    return gained, lost, split_p(gained, lost)


def split_p(up: int, down: int) -> float:
    """Exact two-sided p of an up/down split under no effect (McNemar, sign test); 1 when empty."""
    return binomtest(up, up + down).pvalue if up + down else 1.0


def pooled(pairs: list[tuple[dict, dict]], k: int, rule: str) -> dict:
    """The arm's `rule` against its baseline's votes over several suites, with the task as the unit:
    each task's change is summed over the suites that drew it, and the tasks that changed are split
    into better and worse (exact two-sided sign test). Suites drawn from the same small tasks share
    some, and a task's outcomes in two runs are not independent, so outputs are not pooled."""
    change: dict[str, int] = {}
    base_total = arm_total = outputs = 0
    for base, arm in pairs:
        b, a = solved_by_task(base["scores"]["votes"], k), solved_by_task(arm["scores"][rule], k)
        if set(b) != set(a):
            raise ValueError(f"{base['label']} and {arm['label']} were not run on the same suite")
        for t in b:
            change[t] = change.get(t, 0) + a[t] - b[t]
        base_total, arm_total = base_total + sum(b.values()), arm_total + sum(a.values())
        outputs += base["scores"]["votes"]["per_output"][str(k)][1]
    better, worse = sum(c > 0 for c in change.values()), sum(c < 0 for c in change.values())
    return {"tasks": len(change), "outputs": outputs, "base": base_total, "arm": arm_total,
            "better": better, "worse": worse, "p": split_p(better, worse)}


def print_pooled(files: list[tuple[Path, Path]], k: int) -> None:
    pairs = [(load(b), load(a)) for b, a in files]
    rows = {rule: pooled(pairs, k, rule) for rule in pairs[0][1]["scores"]}
    print(f"| arm ranking | suites | distinct tasks | outputs, all suites | baseline (votes) pass@{k} | arm pass@{k} "
          f"| tasks better / worse, sign-test p |")
    print("|---|---|---|---|---|---|---|")
    for rule, r in rows.items():
        print(f"| {rule} | {len(pairs)} | {r['tasks']} | {r['outputs']} | {r['base']} | {r['arm']} "
              f"| {r['better']} / {r['worse']}, p = {r['p']:.4f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("arms", nargs="*", type=Path, help="accuracy.py --json files; the first is the reference")
    ap.add_argument("--pool", nargs=2, action="append", type=Path, metavar=("BASE", "ARM"), default=[],
                    help="a baseline and an arm run on one suite; repeat for each suite to pool them")
    ap.add_argument("--k", type=int, default=2, help="pass@k compared (default 2)")
    args = ap.parse_args()
    if bool(args.arms) == bool(args.pool):
        ap.error("give either arm files or --pool pairs")
    if args.pool:
        try:
            print_pooled(args.pool, args.k)
        except ValueError as e:
            print(f"compare_arms.py: {e}", file=sys.stderr)
            return 2
        return 0
    runs = [load(p) for p in args.arms]
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
