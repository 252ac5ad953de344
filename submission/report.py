"""Write RUN/report.html: the scores of a run's submission (official per-task average, per-output
average with its 95% Wilson interval, pass@1, pass@2 and the top k from candidates) and a table of
every task with a thumbnail of its test inputs, attempts and solutions, solved tasks first. The
page is one self-contained file (thumbnails embedded as PNG data URIs).

Reads RUN/submission.json (or the one submission with a record NAME.predict.json, or
--submission) and its candidates file (<stem>.candidates.json) when present. The solutions come
from --tasks / --solutions, or else from the task source the predict step recorded in the
submission's record NAME.predict.json ({"tasks": SOURCE}). A source that holds no solution at all
(Kaggle's test challenges, a ttt run on them) gets the page unscored: every task's test inputs and
attempts.

examples:
  arc-trm report runs/agi2
  arc-trm report runs/agi2/eval.json            a submission file: report.html beside it
"""

from __future__ import annotations

import argparse
import base64
import html
import io
from dataclasses import replace
from pathlib import Path

from augment.console import counted
from augment.errors import InputError
from augment.tasks import Pair, Task
from augment.files import read_json, write_text_atomic
from submission.kaggle import submission_grids
from submission.render import answer_rows, render_rows, render_task
from submission.outputs import named_source
from submission.score import Evaluation, ScoreReport, answered_tasks, evaluate, read_answers

THUMB_BOX = 72

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f4f4f4; }
tr.solved td.score { background: #e3f7e6; }
tr.partial td.score { background: #fff6d6; }
tr.unsolved td.score { background: #fde8e6; }
code { font-size: 0.95em; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.summary dt { font-weight: 600; }
table.passk td, table.passk th { text-align: right; }
"""


def png_data_uri(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail(task: Task | None, attempts, solutions):
    """Picture of one task's test rows: input (when known), attempts, solution (the one scored
    against: --solutions gives what a challenges file lacks)."""
    if task is not None:
        task = replace(task, test=tuple(Pair(p.input, s) for p, s in zip(task.test, solutions)))
        return render_task(task, attempts, box=THUMB_BOX, demos=False, title="", legend=False)
    rows = answer_rows([], attempts, solutions)
    return render_rows(rows, box=THUMB_BOX, legend=False)


def shown_source(source: str, sub_path: Path) -> str:
    """The task source as the user named it (HTML). A ttt run scores against its own copy of the
    tasks; its record names what the user passed as "source", which the page shows instead."""
    named = named_source(source, sub_path)
    if named is None:
        return f"<code>{html.escape(source)}</code>"
    return f"<code>{html.escape(named)}</code><br><small>read from the run's copy <code>{html.escape(source)}</code></small>"


def pass_at_k_html(r: ScoreReport, cand_path: Path | None) -> str:
    """pass@1, pass@2 and the largest k, each with its count of outputs: the curve between adds little."""
    ks = r.shown_ks()
    head = "".join(f"<th>pass@{k}</th>" for k in ks)
    cells = "".join(f"<td>{r.pass_at_k_text(k)}</td>" for k in ks)
    return (f'<table class="passk"><tr>{head}</tr><tr>{cells}</tr></table>'
            f"<small>per test output: its solution is among the k most-voted candidates of "
            f"<code>{html.escape(str(cand_path))}</code></small>")


def matched_text(matched: list[int | None]) -> str:
    """Which attempt matched each test output, one line per output (HTML)."""
    words = ["neither attempt" if m is None else f"attempt {m}" for m in matched]
    if len(words) == 1:
        return words[0]
    return "<br>".join(f"test {i + 1}: {w}" for i, w in enumerate(words))


def summary_html(report: ScoreReport, source: str, sub_path: Path, cand_path: Path | None) -> str:
    r = report
    items = [
        ("submission", f"<code>{html.escape(str(sub_path))}</code>"),
        ("tasks and solutions", shown_source(source, sub_path)),
        (r.score_label,
         f"<b>{r.per_task:.4f}</b> ({sum(t.fraction for t in r.tasks):.2f} of {len(r.tasks)} tasks; "
         f"{r.tasks_solved} fully solved)"),
        *([("left out", html.escape(r.partial_text()))] if r.partial_text() else []),
        ("per-output", f"{r.outputs_solved}/{r.outputs_total} = {r.per_output:.4f}"),
        (f"{r.confidence:.0%} interval (per-output)",
         f"[{r.ci_low:.4f}, {r.ci_high:.4f}] ({r.ci_method.capitalize()} score interval)"),
    ]
    if r.pass_at_k:
        items.append(("pass@k (per output)", pass_at_k_html(r, cand_path)))
    else:
        items.append(("pass@k", "no candidates file"))
    return summary_list(items)


def summary_list(items: list[tuple[str, str]]) -> str:
    return '<dl class="summary">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def task_row(task_id: str, cls: str, solved: str, matched: str, img) -> str:
    return (f'<tr class="{cls}"><td><code>{html.escape(task_id)}</code></td><td class="score">{solved}</td>'
            f'<td>{matched}</td><td><img src="{png_data_uri(img)}" alt="{html.escape(task_id)}" loading="lazy"></td></tr>')


def page_html(sub_path: Path, summary: str, note: str, rows: list[str]) -> str:
    title = f"arc-trm report: {html.escape(str(sub_path.parent))}"
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{CSS}</style></head><body>\n<h1>{title}</h1>\n{summary}\n<h2>Tasks</h2>\n<p>{note}</p>\n"
            "<table><thead><tr><th>task</th><th>solved</th><th>matched by</th><th>test inputs, attempts, "
            "solutions</th></tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table></body></html>\n")


def build_report_html(scored: Evaluation, sub_path: Path) -> str:
    report, tasks = scored.report, scored.solutions.tasks
    by_id = {t.id: t for t in tasks} if tasks else {}
    grids = submission_grids({t.task_id: scored.submission[t.task_id] for t in report.tasks}, path=sub_path)
    rows = []
    for ts in sorted(report.tasks, key=lambda t: (-t.fraction, t.task_id)):
        img = thumbnail(by_id.get(ts.task_id), grids[ts.task_id], list(report.solutions[ts.task_id]))
        cls = "solved" if ts.solved == ts.total else "partial" if ts.solved else "unsolved"
        rows.append(task_row(ts.task_id, cls, f"{ts.solved}/{ts.total}", matched_text(ts.matched), img))
    return page_html(sub_path, summary_html(report, scored.solutions.source, sub_path, scored.candidates),
                     "Solved first. Attempt borders: green = matches the solution, red = differs.", rows)


def gallery_html(sub: dict, sub_path: Path, source: str, tasks: list[Task], partial: bool) -> str:
    """The page for a source without solutions: every task's test inputs and attempts, unscored."""
    sub, counts = answered_tasks(sub, {t.id: len(t.test) for t in tasks}, partial=partial, path=sub_path,
                                 none_shared=f"{sub_path}: no task of the submission is in {source!r}")
    grids = submission_grids(sub, path=sub_path)
    rows = [task_row(t.id, "", "-", "not scored", thumbnail(t, grids[t.id], [None] * len(t.test)))
            for t in sorted(tasks, key=lambda t: t.id) if t.id in counts]
    left = len(tasks) - len(counts)
    items = [("submission", f"<code>{html.escape(str(sub_path))}</code>"), ("tasks", shown_source(source, sub_path)),
             ("not scored", "the tasks hold no solutions: pass <code>--solutions FILE</code> to score"),
             ("answered", f"{counted(len(counts), 'task')}, {counted(sum(counts.values()), 'test output')}"
                          + (f" ({counted(left, 'task')} of the source left out: --partial)" if left else ""))]
    return page_html(sub_path, summary_list(items), "By task id. No solution is known, so no attempt is marked.", rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="run folder (holds submission.json and its record submission.predict.json), "
                                                      "or a submission file (report.html is written beside it)")
    parser.add_argument("--submission", metavar="PATH", help="submission to report (default RUN/submission.json, or the only NAME.json with a NAME.predict.json)")
    parser.add_argument("--tasks", metavar="SOURCE", help="task source with solutions (default: from the submission's NAME.predict.json)")
    parser.add_argument("--solutions", metavar="FILE", help="Kaggle solutions .json (default: none; the solutions of --tasks)")
    parser.add_argument("--partial", action="store_true", help="report only the tasks present in the submission")


def default_submission(run_dir: Path) -> Path:
    """RUN/submission.json when present, else the one submission with a record in RUN
    (NAME.predict.json), else what an older RUN/predict.json names."""
    if (run_dir / "submission.json").is_file():
        return run_dir / "submission.json"
    records = sorted(run_dir.glob("*.predict.json"))
    if len(records) == 1:
        return run_dir / (records[0].name[: -len(".predict.json")] + ".json")
    if len(records) > 1:
        names = ", ".join(r.name[: -len(".predict.json")] + ".json" for r in records)
        raise InputError(f"{run_dir}: holds several submissions ({names}); pick one with --submission")
    legacy = run_dir / "predict.json"
    info = read_json(legacy, "predict record") if legacy.is_file() else None
    recorded = info.get("submission") if isinstance(info, dict) else None
    return run_dir / (recorded if isinstance(recorded, str) and recorded else "submission.json")


def report_target(run: Path, submission: str | Path | None) -> tuple[Path, Path]:
    """(the folder report.html goes to, the submission): RUN is a run folder, or the submission file."""
    if run.is_file():
        if submission:
            raise InputError(f"{run} is a submission file and --submission names another: pass one")
        return run.parent, run
    if not run.is_dir():
        raise InputError(f"run folder not found: {run}")
    return run, Path(submission) if submission else default_submission(run)


def write_report(run_dir: str | Path, submission: str | Path | None = None, tasks_spec: str | None = None,
                 solutions_file: str | None = None, *, partial: bool = False) -> Path:
    """Score and write RUN/report.html (RUN: a run folder, or a submission file: report.html beside
    it); returns its path."""
    run_dir, sub_path = report_target(Path(run_dir), submission)
    if sub_path.is_dir():
        raise InputError(f"{sub_path}: submission is a folder; give the file")
    if not sub_path.is_file():
        raise InputError(f"{run_dir}: no submission to report: {sub_path} does not exist (write one with "
                         f"`arc-trm predict --checkpoint {run_dir} --tasks SOURCE --out {sub_path}`, or pass "
                         f"--submission)")
    answers = read_answers(sub_path, tasks_spec, solutions_file)
    # A source without any solution (Kaggle's test challenges, a ttt run's copy of them) gets its
    # answers shown unscored.
    unsolved = solutions_file is None and answers.tasks and not any(t.has_solutions for t in answers.tasks)
    page = (gallery_html(answers.submission, sub_path, answers.source, answers.tasks, partial) if unsolved else
            build_report_html(evaluate(answers, solutions_file, partial=partial), sub_path))
    out = run_dir / "report.html"
    write_text_atomic(out, page)
    return out


def run(args: argparse.Namespace) -> int:
    out = write_report(args.run_dir, args.submission, args.tasks, args.solutions, partial=args.partial)
    print(out)
    return 0
