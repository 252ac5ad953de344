"""Score a Kaggle submission.json against known solutions.

Reports the official score (each task scores the fraction of its test outputs that either attempt
matches exactly, averaged over tasks), the per-output average with a 95% Wilson score interval
(binomial, over test outputs), pass@k from the candidates file beside the submission
(<stem>.candidates.json) when it exists (pass@1, pass@2 and the largest k, as `report` shows them;
--json holds every k), and a per-task table. Writes nothing.

Solutions come from --tasks (a source with solutions: arc-agi-1:evaluation, arc-agi-2:evaluation, a
Kaggle challenges file with its solutions beside it) or --solutions (a Kaggle solutions file; add
--tasks to take the task list from a challenges file). Without either, the `tasks` recorded in
NAME.predict.json beside the submission NAME.json is used.

examples:
  arc-trm score submission.json --tasks arc-agi-2:evaluation
  arc-trm score submission.json --solutions arc-agi_evaluation_solutions.json --json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy.stats import binomtest

from augment.console import warn_once
from augment.errors import InputError, few_ids
from augment.grids import Grid, same_grid
from augment.tasks import Reading, Task, load_tasks, training_split_warning
from submission.kaggle import (ATTEMPTS, candidates_path, check_is_submission, load_solutions, load_submission,
                               read_candidates, submission_grids, validate_submission)
from submission.outputs import named_source, other_owner, recorded_source
from submission.vote import Candidate, Key

CI_METHOD = "wilson"
CONFIDENCE = 0.95
MAX_K = 10

SolutionGrids = Mapping[str, Sequence[np.ndarray]]  # task id -> one solution per test input


@dataclass
class TaskScore:
    task_id: str
    solved: int  # test outputs matched by either attempt
    total: int  # test outputs
    matched: list[int | None]  # per test output: 1 or 2 (first attempt that matched) or None

    @property
    def fraction(self) -> float:
        return self.solved / self.total


@dataclass
class ScoreReport:
    tasks: list[TaskScore]
    per_task: float  # official: mean over tasks of the fraction of outputs solved
    per_output: float  # outputs solved / outputs
    outputs_solved: int
    outputs_total: int
    ci_low: float  # 95% Wilson interval on per_output
    ci_high: float
    ci_method: str = CI_METHOD
    confidence: float = CONFIDENCE
    pass_at_k: dict[int, float] = field(default_factory=dict)  # per-output pass@k from candidates
    tasks_left_out: int = 0  # --partial: tasks of the solutions the submission does not hold
    solutions: SolutionGrids = field(default_factory=dict, repr=False)  # of the tasks scored (report draws them)

    @property
    def score_label(self) -> str:
        return "score (official, per-task average)" if not self.tasks_left_out else \
            "score (per-task average of the tasks scored, --partial)"

    def partial_text(self) -> str:
        """With --partial, what was left out and the official score that counts it as 0 (else "")."""
        if not self.tasks_left_out:
            return ""
        known = len(self.tasks) + self.tasks_left_out
        are = "is" if self.tasks_left_out == 1 else "are"
        return (f"{self.tasks_left_out} of {known} tasks with solutions {are} not in the submission; counted as "
                f"unsolved, the official score is {self.per_task * len(self.tasks) / known:.4f}")

    @property
    def tasks_solved(self) -> int:
        return sum(t.solved == t.total for t in self.tasks)

    def shown_ks(self) -> list[int]:
        """The ks `score` and `report` show: pass@1, pass@2 and the largest k (the curve between adds
        little; the JSON keeps every k)."""
        return sorted({1, 2, max(self.pass_at_k)} & set(self.pass_at_k)) if self.pass_at_k else []

    def pass_at_k_text(self, k: int) -> str:
        """pass@k with its count of outputs, e.g. "0.3333 (1/3)"."""
        v = self.pass_at_k[k]
        return f"{v:.4f} ({round(v * self.outputs_total)}/{self.outputs_total})"

    def to_json(self) -> dict:
        return {
            "per_task": self.per_task,
            "per_output": self.per_output,
            "tasks_total": len(self.tasks),
            "tasks_fully_solved": self.tasks_solved,
            "outputs_solved": self.outputs_solved,
            "outputs_total": self.outputs_total,
            "ci": {"low": self.ci_low, "high": self.ci_high, "method": self.ci_method,
                   "confidence": self.confidence},
            "pass_at_k": {str(k): v for k, v in sorted(self.pass_at_k.items())},
            "tasks_left_out": self.tasks_left_out,
            "tasks": [dict(asdict(t), fraction=t.fraction) for t in self.tasks],
        }


def binomial_ci(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for successes/n (scipy.stats.binomtest)."""
    if n <= 0:
        return 0.0, 1.0
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method=CI_METHOD)
    return float(max(0.0, ci.low)), float(min(1.0, ci.high))


def score_submission(sub: dict, solutions: SolutionGrids, *, partial: bool = False,
                     path: str | Path | None = None) -> ScoreReport:
    """Score a submission dict (as loaded from JSON) against {task_id: [solution grid, ...]}.

    The submission must hold every task of `solutions` (with partial=True only its own tasks are
    scored) and no others; InputError otherwise.
    """
    known = len(solutions)
    check_is_submission(sub, path)
    sub, counts = answered_tasks(sub, {t: len(s) for t, s in solutions.items()}, partial=partial, path=path,
                                 none_shared=f"{path or 'submission'}: no task of the submission has a known solution")
    grids = submission_grids(sub, path=path)
    scores = []
    for task_id in sorted(counts):
        matched: list[int | None] = []
        for (a1, a2), sol in zip(grids[task_id], solutions[task_id]):
            matched.append(1 if same_grid(a1, sol) else 2 if same_grid(a2, sol) else None)
        scores.append(TaskScore(task_id, sum(m is not None for m in matched), len(matched), matched))
    solved = sum(t.solved for t in scores)
    total = sum(t.total for t in scores)
    low, high = binomial_ci(solved, total)
    return ScoreReport(scores, float(np.mean([t.fraction for t in scores])), solved / total, solved, total,
                       low, high, tasks_left_out=known - len(counts),
                       solutions={t: solutions[t] for t in counts})


def answered_tasks(sub: dict, counts: dict[str, int], *, partial: bool, path: str | Path | None,
                   none_shared: str) -> tuple[dict, dict[str, int]]:
    """The submission's entries for the tasks it is judged on, and their test output counts: every
    task of `counts` and no other (with partial, only the tasks both hold; `none_shared` is the
    line when there are none), each entry well formed. InputError otherwise."""
    if partial:
        counts = {t: n for t, n in counts.items() if t in sub}
        if not counts:
            raise InputError(none_shared)
        sub = {t: sub[t] for t in counts}  # the submission's other tasks are not judged
    elif set(sub) != set(counts):
        raise InputError(tasks_differ_line(set(sub), set(counts), path))
    validate_submission(sub, counts, path=path)
    return sub, counts


def tasks_differ_line(answered: set[str], known: set[str], path: str | Path | None) -> str:
    """What a submission for other tasks than the solutions' gets: which differ, and --partial."""
    where = f"{path}: " if path else ""
    parts = []
    if known - answered:
        parts.append(f"the submission is missing {len(known - answered)} task(s) of the solutions "
                     f"({few_ids(sorted(known - answered))})")
    if answered - known:
        parts.append(f"it holds {len(answered - known)} task(s) they lack ({few_ids(sorted(answered - known))})")
    shared = len(answered & known)
    hint = (f"--partial scores the {shared} task(s) both hold" if shared else
            "no task is in both (--partial scores only shared tasks): pass the --tasks the submission answers")
    return f"{where}the tasks differ: {'; '.join(parts)}; {hint}"


def solution_rank(candidates: Sequence[Candidate], solution: Grid) -> int | None:
    """0-based rank of the first candidate equal to `solution`; None when none is."""
    return next((r for r, c in enumerate(candidates) if same_grid(c.grid, solution)), None)


def task_solutions(tasks: Sequence[Task]) -> dict[str, list[Grid | None]]:
    """{task_id: [test output per test input]} of tasks; None where an output is unknown (pass_count
    leaves those out)."""
    return {t.id: [p.output for p in t.test] for t in tasks}


@dataclass(frozen=True)
class PassCount:
    """pass@k counts: test outputs solved within the top k of `total` with a known solution, and
    the per-task fractions (tasks with at least one known solution)."""

    k: int
    solved: int
    total: int
    task_fractions: list[float]


def pass_count(ranked: Mapping[Key, Sequence[Candidate]], solutions: Mapping[str, Sequence[Grid | None]],
               k: int) -> PassCount:
    """Which known solutions are among the top k candidates. Outputs without candidates count as
    unsolved; unknown (None) solutions are left out."""
    if k < 1:
        raise ValueError("k must be at least 1")
    fractions, solved, total = [], 0, 0
    for task_id, sols in solutions.items():
        known = [(i, s) for i, s in enumerate(sols) if s is not None]
        hits = 0
        for i, sol in known:
            rank = solution_rank(ranked.get((task_id, i), ()), sol)
            hits += rank is not None and rank < k
        if known:
            solved, total = solved + hits, total + len(known)
            fractions.append(hits / len(known))
    return PassCount(k, solved, total, fractions)


def pass_at_k(ranked: Mapping[Key, Sequence[Candidate]], solutions: Mapping[str, Sequence[Grid | None]], k: int,
              *, per: str = "output") -> float:
    """Fraction of test outputs (per="output") or mean per-task fraction (per="task") whose solution
    is among the top k candidates. Outputs without candidates count as unsolved; with
    `task_solutions(tasks)` a task list scores against its known test outputs."""
    count = pass_count(ranked, solutions, k)
    if not count.task_fractions:
        return 0.0
    if per == "task":
        return float(np.mean(count.task_fractions))
    if per == "output":
        return count.solved / count.total
    raise ValueError(f"per must be 'output' or 'task', not {per!r}")


def pass_at_ks(ranked: Mapping[Key, Sequence[Candidate]], solutions: SolutionGrids,
               max_k: int = MAX_K) -> dict[int, float]:
    """pass@k for k = 1 .. min(longest candidate list, max_k) (at least k = 1, 2)."""
    longest = max([len(v) for (t, _), v in ranked.items() if t in solutions] or [0])
    return {k: pass_at_k(ranked, solutions, k) for k in range(1, max(2, min(longest, max_k)) + 1)}


# ---------------------------------------------------------------- resolving solutions

def solutions_from_tasks(tasks: Sequence[Task], source: str) -> SolutionGrids:
    missing = [t.id for t in tasks if not t.has_solutions]
    if missing:
        raise InputError(f"source {source!r} has no solutions for {len(missing)} task(s) (e.g. {missing[0]!r}); "
                         "pass --solutions FILE")
    return task_solutions(tasks)  # type: ignore[return-value]  # every output is known (checked above)


@dataclass(frozen=True)
class Solutions:
    """What a submission is scored against."""
    grids: SolutionGrids
    tasks: list[Task] | None  # None: a solutions file alone
    source: str  # where they came from, as the summary names it


def source_tasks(tasks_spec: str | None, solutions_file: str | None,
                 submission: str | Path) -> tuple[str | None, list[Task] | None]:
    """(the task source, its tasks): --tasks, else the source recorded beside the submission when
    there is no --solutions either; (None, None) for a solutions file alone."""
    if tasks_spec is None and solutions_file is None:
        tasks_spec = recorded_source(submission)
    # With --solutions, the solutions file beside the challenges is not theirs to check (nor to fail on).
    reading = Reading(solutions_beside=solutions_file is None)
    return tasks_spec, load_tasks(tasks_spec, reading) if tasks_spec is not None else None  # "": load_tasks says so


def resolve_solutions(tasks_spec: str | None, tasks: list[Task] | None, solutions_file: str | None) -> Solutions:
    """The solutions of the tasks of `tasks_spec` (source_tasks' pair), or of --solutions (checked
    against those tasks when both are given)."""
    inflated = training_split_warning(tasks_spec) if tasks_spec else None
    if inflated:
        warn_once(inflated)
    if solutions_file is None:
        assert tasks is not None and tasks_spec is not None
        return Solutions(solutions_from_tasks(tasks, tasks_spec), tasks, tasks_spec)
    sols = load_solutions(solutions_file)
    if tasks is None:
        return Solutions(sols, None, str(solutions_file))
    missing = [t.id for t in tasks if t.id not in sols]
    if missing:
        raise InputError(f"{solutions_file}: no solutions for {len(missing)} task(s) of {tasks_spec!r} "
                         f"(e.g. {missing[0]!r})")
    for t in tasks:
        if len(sols[t.id]) != len(t.test):
            raise InputError(f"{solutions_file}: task {t.id!r} has {len(sols[t.id])} solutions for "
                             f"{len(t.test)} test input(s)")
    return Solutions({t.id: sols[t.id] for t in tasks}, tasks, f"{tasks_spec} with {solutions_file}")


def load_ranked(sub_path: str | Path, explicit: str | None = None) -> tuple[dict | None, Path | None]:
    """Candidates beside the submission (or the explicit file); (None, None) when there are none.
    The file beside is optional (pass@k alone reads it): one that is not this submission's, or
    that cannot be read, is left out with a warning, and the official score still comes."""
    if explicit:
        if not Path(explicit).exists():
            raise InputError(f"candidates file not found: {explicit}")
        return read_candidates(explicit), Path(explicit)
    path = candidates_path(sub_path)
    owner = other_owner(sub_path)
    if owner is not None:
        warn_once(f"{path} holds the candidates of {owner}, not of {Path(sub_path).name}: pass@k is left out")
        return None, None
    if not path.exists():
        return None, None
    try:
        return read_candidates(path), path
    except InputError as e:
        warn_once(f"{e}: pass@k is left out")
        return None, None


@dataclass(frozen=True)
class Evaluation:
    report: ScoreReport
    submission: dict
    solutions: Solutions
    candidates: Path | None  # the ranked candidates file read for pass@k; None: there is none


@dataclass(frozen=True)
class Answers:
    """A submission as read for scoring or a report: its entries and the source of its tasks."""
    path: Path
    submission: dict
    source: str | None  # --tasks, or the source its record names; None: a solutions file alone
    tasks: list[Task] | None


def read_answers(sub_path: str | Path, tasks_spec: str | None, solutions_file: str | None) -> Answers:
    """The submission, checked to be one before its task source (which may come from its record) is read."""
    sub_path = Path(sub_path)
    sub = load_submission(sub_path)
    check_is_submission(sub, sub_path)
    return Answers(sub_path, sub, *source_tasks(tasks_spec, solutions_file, sub_path))


def evaluate(answers: Answers, solutions_file: str | None = None, *, candidates: str | None = None,
             partial: bool = False) -> Evaluation:
    """Score the answers against their solutions, with pass@k from their candidates when there are some."""
    sub_path, sub = answers.path, answers.submission
    solutions = resolve_solutions(answers.source, answers.tasks, solutions_file)
    report = score_submission(sub, solutions.grids, partial=partial, path=sub_path)
    ranked, cand_path = load_ranked(sub_path, candidates)
    if ranked is not None:
        scored = {t.task_id: solutions.grids[t.task_id] for t in report.tasks}
        report.pass_at_k = pass_at_ks(ranked, scored)
    return Evaluation(report, sub, solutions, cand_path)


# ---------------------------------------------------------------- CLI

def format_matched(matched: Sequence[int | None]) -> str:
    return " ".join("-" if m is None else ATTEMPTS[m - 1] for m in matched)


def format_report(report: ScoreReport, *, source: str = "", submission: str = "", table: bool = True) -> str:
    r = report
    lines = []
    if submission:
        lines.append(f"submission: {submission}")
    if source:
        named = named_source(source, submission) if submission else None
        lines.append(f"solutions:  {named}  (read from the run's copy {source})" if named else f"solutions:  {source}")
    lines += [
        f"{r.score_label}: {r.per_task:.4f}  "
        f"({sum(t.fraction for t in r.tasks):.2f} of {len(r.tasks)} tasks; {r.tasks_solved} fully solved)",
        f"per-output: {r.outputs_solved}/{r.outputs_total} = {r.per_output:.4f}  "
        f"{r.confidence:.0%} CI [{r.ci_low:.4f}, {r.ci_high:.4f}] ({r.ci_method.capitalize()} score interval)",
    ]
    if r.partial_text():
        lines.append(f"left out: {r.partial_text()}")
    if r.pass_at_k:
        lines.append("pass@k (per output, from candidates): " +
                     "  ".join(f"pass@{k} {r.pass_at_k_text(k)}" for k in r.shown_ks()))
    elif submission:  # said, as `report` says it: a line left out reads as a score that dropped it
        lines.append(f"pass@k: no candidates file ({candidates_path(submission).name} is not beside the submission)")
    if table:
        width = max([len(t.task_id) for t in r.tasks] + [4])
        lines += ["", f"{'task':<{width}}  solved  matched (per test output; - neither attempt)"]
        for t in sorted(r.tasks, key=lambda t: (-t.fraction, t.task_id)):
            lines.append(f"{t.task_id:<{width}}  {f'{t.solved}/{t.total}':>6}  {format_matched(t.matched)}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submission", metavar="SUBMISSION", help="submission.json to score")
    parser.add_argument("--tasks", metavar="SOURCE",
                        help="task source with solutions, e.g. arc-agi-2:evaluation or x_challenges.json (default: the "
                             "source recorded in NAME.predict.json beside the submission)")
    parser.add_argument("--solutions", metavar="FILE", help="Kaggle solutions .json {task_id: [grid, ...]} (default: none; the solutions of --tasks)")
    parser.add_argument("--candidates", metavar="FILE",
                        help="ranked candidates for pass@k (default: <stem>.candidates.json beside the submission)")
    parser.add_argument("--partial", action="store_true",
                        help="score only the tasks present in the submission instead of requiring all")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--brief", action="store_true", help="omit the per-task table")


def run(args: argparse.Namespace) -> int:
    scored = evaluate(read_answers(args.submission, args.tasks, args.solutions), args.solutions,
                      candidates=args.candidates, partial=args.partial)
    report, source, cand_path = scored.report, scored.solutions.source, scored.candidates
    if args.json:
        named = named_source(source, args.submission)
        out = dict(report.to_json(), submission=str(args.submission), solutions=named or source,
                   candidates=str(cand_path) if cand_path else None, **({"solutions_copy": source} if named else {}))
        print(json.dumps(out, indent=1))
    else:
        print(format_report(report, source=source, submission=str(args.submission), table=not args.brief))
    return 0
