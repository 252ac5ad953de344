"""Scoring: official per-task average, per-output average, pass@k, interval, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from augment.errors import InputError
from augment.tasks import load_tasks
from augment.files import write_json_atomic
from submission.kaggle import candidates_path, write_candidates
from submission.score import binomial_ci, format_report, pass_at_k, score_submission
from submission.vote import Candidate

REPO = Path(__file__).resolve().parents[1]


def g(rows):
    return np.array(rows, dtype=np.uint8)


# Three tasks: "full" solved by attempt_1; "half" has two test inputs, the second solved by attempt_2
# only; "none" unsolved. Per task: (1 + 0.5 + 0) / 3 = 0.5; per output: 2 / 4.
SOLUTIONS = {"full": [g([[1, 2]])], "half": [g([[3]]), g([[4, 4], [4, 4]])], "none": [g([[5]])]}
SUB = {
    "full": [{"attempt_1": [[1, 2]], "attempt_2": [[0]]}],
    "half": [{"attempt_1": [[3, 3]], "attempt_2": [[0]]},  # right colour, wrong shape
             {"attempt_1": [[4, 4]], "attempt_2": [[4, 4], [4, 4]]}],
    "none": [{"attempt_1": [[6]], "attempt_2": [[7]]}],
}


def test_hand_computed_score():
    r = score_submission(SUB, SOLUTIONS)
    assert r.per_task == pytest.approx((1 + 0.5 + 0) / 3)
    assert r.per_output == pytest.approx(2 / 4)
    assert (r.outputs_solved, r.outputs_total, r.tasks_solved) == (2, 4, 1)
    by_id = {t.task_id: t for t in r.tasks}
    assert by_id["full"].matched == [1]
    assert by_id["half"].matched == [None, 2]
    assert (by_id["half"].solved, by_id["half"].total) == (1, 2)
    assert by_id["none"].matched == [None]


def test_interval_contains_estimate_and_stays_in_unit_range():
    r = score_submission(SUB, SOLUTIONS)
    assert 0.0 <= r.ci_low < r.per_output < r.ci_high <= 1.0
    assert r.ci_method == "wilson"
    # Wilson interval for 2/4 at 95%: about [0.150, 0.850].
    assert r.ci_low == pytest.approx(0.1500, abs=1e-3) and r.ci_high == pytest.approx(0.8500, abs=1e-3)
    for k, n in [(0, 5), (5, 5), (1, 400), (399, 400)]:
        lo, hi = binomial_ci(k, n)
        assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_score_rejects_incomplete_submission_unless_partial():
    sub = {k: v for k, v in SUB.items() if k != "none"}
    with pytest.raises(InputError, match="missing 1 task"):
        score_submission(sub, SOLUTIONS)
    r = score_submission(sub, SOLUTIONS, partial=True)
    assert r.per_task == pytest.approx(0.75) and r.outputs_total == 3
    # The 0.75 is not the official score: the summary says so and gives it, "none" counted as 0.
    text = format_report(r)
    assert "score (per-task average of the tasks scored, --partial): 0.7500" in text and "official" not in \
        text.splitlines()[0]
    assert "left out: 1 of 3 tasks with solutions is not in the submission; counted as unsolved, the official " \
        "score is 0.5000" in text and r.to_json()["tasks_left_out"] == 1
    whole = format_report(score_submission(SUB, SOLUTIONS, partial=True))
    assert whole.startswith("score (official, per-task average): 0.5000") and "left out" not in whole
    # The table's "-" (an output neither attempt matched) was not explained: report's page says "neither attempt".
    table = whole.splitlines()[whole.splitlines().index("") + 1:]
    assert table[0] == "task  solved  matched (per test output; - neither attempt)", table
    assert table[-1].split() == ["none", "0/1", "-"], table


def test_pass_at_k():
    ranked = {
        ("full", 0): [Candidate(g([[1, 2]]), 5, 0.9)],
        ("half", 0): [Candidate(g([[9]]), 4, 0.9), Candidate(g([[8]]), 3, 0.9), Candidate(g([[3]]), 1, 0.1)],
        ("half", 1): [Candidate(g([[0]]), 4, 0.9), Candidate(g([[4, 4], [4, 4]]), 2, 0.9)],
        # "none" has no candidates at all
    }
    assert pass_at_k(ranked, SOLUTIONS, 1) == pytest.approx(1 / 4)
    assert pass_at_k(ranked, SOLUTIONS, 2) == pytest.approx(2 / 4)
    assert pass_at_k(ranked, SOLUTIONS, 3) == pytest.approx(3 / 4)
    assert pass_at_k(ranked, SOLUTIONS, 3, per="task") == pytest.approx((1 + 1 + 0) / 3)
    assert pass_at_k(ranked, SOLUTIONS, 2, per="task") == pytest.approx((1 + 0.5 + 0) / 3)
    with pytest.raises(ValueError):
        pass_at_k(ranked, SOLUTIONS, 0)


# ---------------------------------------------------------------- CLI on real bundled tasks

@pytest.fixture(scope="module")
def kaggle_files(tmp_path_factory):
    """Kaggle-format challenges + solutions for 5 arc-agi-1 evaluation tasks (one with 2 test inputs)."""
    tasks = load_tasks("arc-agi-1:evaluation")
    multi = [t for t in tasks if len(t.test) > 1][:1]
    chosen = multi + [t for t in tasks if len(t.test) == 1][:5 - len(multi)]
    assert len(chosen) == 5 and sum(len(t.test) for t in chosen) >= 6
    d = tmp_path_factory.mktemp("kaggle")
    challenges = {t.id: t.to_json(with_solutions=False) for t in chosen}
    solutions = {t.id: [p.output.tolist() for p in t.test] for t in chosen}
    (d / "arc-agi_evaluation_challenges.json").write_text(json.dumps(challenges))
    (d / "arc-agi_evaluation_solutions.json").write_text(json.dumps(solutions))
    return d, chosen


def arc_trm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "arc_trm.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=120)


def test_cli_scores_perfect_submission(kaggle_files, tmp_path):
    d, chosen = kaggle_files
    sub = {t.id: [{"attempt_1": [[0]], "attempt_2": p.output.tolist()} for p in t.test] for t in chosen}
    path = tmp_path / "submission.json"
    write_json_atomic(path, sub)
    # Candidates beside it: the right answer is ranked second everywhere.
    write_candidates(candidates_path(path), {(t.id, i): [Candidate(g([[0]]), 3, 0.9), Candidate(p.output, 2, 0.5)]
                                             for t in chosen for i, p in enumerate(t.test)})
    before = sorted(p.name for p in tmp_path.iterdir())

    res = arc_trm("score", path, "--tasks", d / "arc-agi_evaluation_challenges.json")
    assert res.returncode == 0, res.stderr
    assert "1.0000" in res.stdout and "per-output" in res.stdout
    assert all(t.id in res.stdout for t in chosen)

    res = arc_trm("score", path, "--solutions", d / "arc-agi_evaluation_solutions.json", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["per_task"] == 1.0 and out["per_output"] == 1.0
    assert out["outputs_total"] == sum(len(t.test) for t in chosen)
    assert out["pass_at_k"] == {"1": 0.0, "2": 1.0}
    assert 0.0 <= out["ci"]["low"] <= 1.0 == out["ci"]["high"]
    assert {t["task_id"] for t in out["tasks"]} == {t.id for t in chosen}
    assert all(t["matched"] == [2] * t["total"] for t in out["tasks"])
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # score writes nothing


def test_cli_says_when_there_is_no_candidates_file_as_report_does(kaggle_files, tmp_path):
    """Without S.candidates.json, score printed no pass@k line at all, where report says 'no candidates file'."""
    d, chosen = kaggle_files
    path = tmp_path / "s.json"
    write_json_atomic(path, {t.id: [{"attempt_1": [[0]], "attempt_2": [[0]]} for _ in t.test] for t in chosen})
    res = arc_trm("score", path, "--tasks", d / "arc-agi_evaluation_challenges.json", "--brief")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "pass@k: no candidates file (s.candidates.json is not beside the submission)"


def test_cli_malformed_submission_is_one_line_exit_2(kaggle_files, tmp_path):
    d, _ = kaggle_files
    bad = tmp_path / "submission.json"
    bad.write_text('{"00576224": [{"attempt_1": [[1]], ')
    res = arc_trm("score", bad, "--solutions", d / "arc-agi_evaluation_solutions.json")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "malformed JSON" in lines[0] and "Traceback" not in res.stderr
    assert res.stdout == ""


def test_cli_incomplete_submission_is_exit_2(kaggle_files, tmp_path):
    d, chosen = kaggle_files
    sub = {t.id: [{"attempt_1": [[0]], "attempt_2": [[0]]} for _ in t.test] for t in chosen[1:]}
    path = tmp_path / "submission.json"
    path.write_text(json.dumps(sub))
    res = arc_trm("score", path, "--tasks", d / "arc-agi_evaluation_challenges.json")
    assert res.returncode == 2 and "missing 1 task" in res.stderr and chosen[0].id in res.stderr


@pytest.mark.parametrize("content, says", [
    ({"t1": {"train": [], "test": []}}, "is a task (challenges) file, not a submission: pass it as --tasks"),
    ({"t1": [[[1, 2]]]}, "is a solutions file, not a submission: pass it as --solutions"),
    ({"format": "arc-trm-candidates", "version": 1, "tasks": {}}, "is a candidates file, not a submission"),
    ({"tasks": "arc-agi-1:evaluation", "checkpoint": "runs/x"}, "not a submission: a submission maps task ids"),
    ({}, "not a submission: it holds no tasks"),
])
def test_score_names_a_file_that_is_not_a_submission(tmp_path, capsys, content, says):
    from arc_trm.cli import main
    path = tmp_path / "x.json"
    path.write_text(json.dumps(content))
    assert main(["score", str(path)]) == 2  # said before looking for a recorded task source
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and str(path) in err[0], err


def test_score_of_other_tasks_says_they_differ_and_names_partial():
    other = {**{k: v for k, v in SUB.items() if k != "none"}, "extra": SUB["none"]}
    with pytest.raises(InputError, match=r"the tasks differ: .*missing 1 task\(s\) .*\(none\).*holds 1 task\(s\) "
                                         r"they lack \(extra\); --partial scores the 2 task\(s\) both hold"):
        score_submission(other, SOLUTIONS)
    r = score_submission(other, SOLUTIONS, partial=True)  # the shared tasks; "extra" has no solution
    assert [t.task_id for t in r.tasks] == ["full", "half"] and r.outputs_total == 3
    with pytest.raises(InputError, match="no task is in both.*--partial.*--tasks"):
        score_submission({"zzz": SUB["none"]}, SOLUTIONS)


def test_report_on_a_run_without_submission_says_so_first(tmp_path):
    from submission.report import write_report
    (tmp_path / "run").mkdir()
    with pytest.raises(InputError, match=r"no submission to report: .*submission.json does not exist"):
        write_report(tmp_path / "run")


def test_score_piped_into_a_reader_that_leaves_early_ends_without_a_traceback(tmp_path):
    """`arc-trm score ... --json | head`: the reader closes the pipe while score still writes. More
    output than a pipe holds, so the write that fails is certain."""
    ids = [f"t{i:04d}" for i in range(3000)]
    write_json_atomic(tmp_path / "s.json", {t: [{"attempt_1": [[0]], "attempt_2": [[1]]}] for t in ids})
    write_json_atomic(tmp_path / "sol.json", {t: [[[0]]] for t in ids})
    proc = subprocess.Popen([sys.executable, "-m", "arc_trm.cli", "score", str(tmp_path / "s.json"), "--solutions",
                             str(tmp_path / "sol.json"), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"{"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err  # 128 + SIGPIPE, as a shell reports it


def test_score_of_a_ttt_run_names_the_users_source_not_the_runs_copy(tmp_path):
    """Before: `solutions:  RUN/ttt_challenges.json@test`, the run's internal copy of the tasks,
    though the run records the source the user named (report showed it; score did not)."""
    from conftest import SMALL_TASKS
    from submission.kaggle import fallback_submission

    tasks = load_tasks(SMALL_TASKS)
    copy = tmp_path / "ttt_challenges.json"  # what `arc-trm ttt` writes into its run and scores against
    write_json_atomic(copy, {t.id: t.to_json() for t in tasks})
    write_json_atomic(tmp_path / "submission.json", fallback_submission(tasks))
    write_json_atomic(tmp_path / "submission.predict.json", {"tasks": f"{copy}@test", "source": SMALL_TASKS})
    proc = arc_trm("score", tmp_path / "submission.json", "--brief")
    assert proc.returncode == 0, proc.stderr
    assert f"solutions:  {SMALL_TASKS}  (read from the run's copy {copy}@test)" in proc.stdout.splitlines()
    out = json.loads(arc_trm("score", tmp_path / "submission.json", "--json").stdout)
    assert (out["solutions"], out["solutions_copy"]) == (SMALL_TASKS, f"{copy}@test")


def test_a_folder_given_for_a_file_is_named_as_a_folder_not_as_missing(tmp_path):
    """Before: `arc-trm score runs/x` (the run folder, not its submission.json) said "submission not
    found: runs/x", though the path is there; the same for a folder given as --solutions."""
    write_json_atomic(tmp_path / "run" / "submission.json", SUB)
    write_json_atomic(tmp_path / "sol.json", {t: [s.tolist() for s in v] for t, v in SOLUTIONS.items()})
    sub, sol = tmp_path / "run" / "submission.json", tmp_path / "sol.json"
    for args, folder, what in [((tmp_path / "run", "--solutions", sol), tmp_path / "run", "submission"),
                               ((sub, "--solutions", tmp_path), tmp_path, "solutions file")]:
        proc = arc_trm("score", *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0] == f"arc-trm score: error: {folder}: {what} is a folder; give the file"


GIVE_CHALLENGES = "give the challenges file as the source"


def test_a_file_given_in_another_kinds_place_is_named_as_that_kind(tmp_path):
    """Before: the challenges file given as --solutions said "task 'full': solutions must be a
    non-empty list of grids", and a submission or solutions file given as --tasks said "task 'full':
    task must be an object with 'train' and 'test'", each blaming a task of a file of the wrong kind."""
    sub, sol, chal = tmp_path / "submission.json", tmp_path / "x_solutions.json", tmp_path / "x_challenges.json"
    write_json_atomic(sub, SUB)
    write_json_atomic(sol, {t: [s.tolist() for s in v] for t, v in SOLUTIONS.items()})
    write_json_atomic(chal, {t: {"train": [{"input": [[0]], "output": [[0]]}], "test": [{"input": [[0]]}] * len(v)}
                             for t, v in SOLUTIONS.items()})
    for args, line in [
        (("--solutions", chal), f"{chal}: is a challenges file, not a solutions file: pass it as --tasks"),
        (("--solutions", sub), f"{sub}: is a submission file, not a solutions file: pass it as SUBMISSION"),
        (("--tasks", sub), f"{sub}: is a submission file, not a challenges file: {GIVE_CHALLENGES}"),
        (("--tasks", sol), f"{sol}: is a solutions file, not a challenges file: {GIVE_CHALLENGES}"),
    ]:
        proc = arc_trm("score", sub, *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and lines == [f"arc-trm score: error: {line}"], proc.stderr
    assert arc_trm("score", sub, "--tasks", chal).returncode == 0  # the right kinds in their places


def test_a_broken_record_does_not_stop_scoring_against_sources_given(kaggle_files, tmp_path):
    """`score S --tasks X` stopped at "malformed JSON in predict record" when S.predict.json was
    broken, though the record was read only to name the source in the output."""
    from conftest import cli_in_process

    d, chosen = kaggle_files
    path, record = tmp_path / "s.json", tmp_path / "s.predict.json"
    write_json_atomic(path, {t.id: [{"attempt_1": p.output.tolist(), "attempt_2": [[0]]} for p in t.test]
                             for t in chosen})
    record.write_text('{"tasks": ')
    for extra in ([], ["--json"]):
        res = cli_in_process("score", path, "--tasks", d / "arc-agi_evaluation_challenges.json", "--brief", *extra)
        assert res.returncode == 0, res.stderr
        line, = res.stderr.strip().splitlines()
        assert line.startswith(f"warning: {record}: malformed JSON in predict record") and "not read" in line, line
        assert "1.0000" in res.stdout or json.loads(res.stdout)["per_task"] == 1.0, res.stdout
    res = cli_in_process("score", path)  # no source given: the record is what names it, so it must read
    assert res.returncode == 2 and "malformed JSON in predict record" in res.stderr, res.stderr


def test_solutions_given_leave_the_solutions_file_beside_the_challenges_unread(tmp_path):
    """`score S --tasks X_challenges.json --solutions F` still read and checked the X_solutions.json
    beside the challenges, and stopped at its fault, though F is what is scored against."""
    from conftest import cli_in_process

    chal = tmp_path / "x_challenges.json"
    task = {"train": [{"input": [[1]], "output": [[2]]}]}
    write_json_atomic(chal, {"t1": {**task, "test": [{"input": [[1]]}, {"input": [[3]]}]},
                             "t2": {**task, "test": [{"input": [[4]]}]}})
    write_json_atomic(tmp_path / "x_solutions.json", {"t1": [[[2]]], "t2": [[[5]]]})  # t1: one grid for two inputs
    write_json_atomic(good := tmp_path / "good_sol.json", {"t1": [[[2]], [[9]]], "t2": [[[5]]]})
    write_json_atomic(sub := tmp_path / "sub.json", {
        "t1": [{"attempt_1": [[2]], "attempt_2": [[0]]}, {"attempt_1": [[0]], "attempt_2": [[9]]}],
        "t2": [{"attempt_1": [[0]], "attempt_2": [[5]]}]})
    res = cli_in_process("score", sub, "--tasks", chal, "--solutions", good, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["per_task"] == 1.0
    res = cli_in_process("score", sub, "--tasks", chal)  # without --solutions the file beside is theirs
    assert res.returncode == 2 and "x_solutions.json: task 't1': solutions: solutions hold 1 grids" in res.stderr


def test_a_record_and_candidates_of_another_submission_are_not_read(tmp_path):
    """`d1` and `d1.json` share d1.predict.json and d1.candidates.json: `score d1.json` took its task
    source and its pass@k from the records of `d1` (official 1.0 beside pass@1 0.0)."""
    import json

    from augment.tasks import load_tasks
    from conftest import cli_in_process
    from submission.kaggle import candidates_path, fallback_submission, write_candidates
    from submission.vote import Candidate

    tasks = load_tasks("arc-agi-1:training/3c9b0459+6150a2bd")
    d1 = tmp_path / "d1"
    d1.write_text(json.dumps(fallback_submission(tasks)))
    (tmp_path / "d1.predict.json").write_text(json.dumps({"tasks": "arc-agi-1:training/3c9b0459+6150a2bd",
                                                          "submission": "d1"}))
    write_candidates(candidates_path(d1), {(t.id, 0): [Candidate(t.test[0].input, 3, 0.5)] for t in tasks})
    mine = tmp_path / "d1.json"
    mine.write_text(json.dumps({t.id: [{"attempt_1": p.output.tolist(), "attempt_2": p.output.tolist()}
                                       for p in t.test] for t in tasks}))
    proc = cli_in_process("score", mine)
    assert proc.returncode == 2 and "d1.predict.json is the record of d1, not of d1.json" in proc.stderr, proc.stderr
    proc = cli_in_process("score", mine, "--tasks", "arc-agi-1:training/3c9b0459+6150a2bd")
    assert proc.returncode == 0 and "holds the candidates of d1, not of d1.json" in proc.stderr, proc.stderr
    assert "pass@1" not in proc.stdout and "1.0000" in proc.stdout, proc.stdout


def test_an_unreadable_candidates_file_beside_leaves_out_pass_at_k_only(tmp_path):
    """A candidates file of another version (or cut short) beside the submission stopped score and
    report whole: no official score, no page, and no option to skip the optional file."""
    import json

    from augment.tasks import load_tasks
    from conftest import cli_in_process
    from submission.kaggle import candidates_path

    spec = "arc-agi-1:training/3c9b0459+6150a2bd"
    sub = tmp_path / "sub.json"
    sub.write_text(json.dumps({t.id: [{"attempt_1": p.output.tolist(), "attempt_2": p.output.tolist()}
                                      for p in t.test] for t in load_tasks(spec)}))
    candidates_path(sub).write_text('{"format": "arc-trm-candidates", "version": 2, "tasks": {}}')
    proc = cli_in_process("score", sub, "--tasks", spec)
    assert proc.returncode == 0 and "1.0000" in proc.stdout and "pass@k is left out" in proc.stderr, proc.stderr
    assert cli_in_process("report", sub, "--tasks", spec).returncode == 0 and (tmp_path / "report.html").is_file()
    proc = cli_in_process("score", sub, "--tasks", spec, "--candidates", candidates_path(sub))  # asked for: refused
    assert proc.returncode == 2 and "version 2" in proc.stderr, proc.stderr
