"""Rendering task pictures, `arc-trm show`, and the HTML run report."""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augment.errors import InputError
from augment.tasks import Pair, Task, load_tasks
from submission import render, report
from augment.files import write_json_atomic
from submission.kaggle import candidates_path, fallback_submission, write_candidates
from submission.render import PALETTE_HEX, grid_image, render_task
from submission.vote import Candidate

REPO = Path(__file__).resolve().parents[1]


def g(rows):
    return np.array(rows, dtype=np.uint8)


TASK = Task("demo/one", (Pair(g([[1, 2], [3, 4]]), g([[4, 3], [2, 1]])),),
            (Pair(g([[5, 6, 7]]), g([[7, 6, 5]])),), "test")


def rgb(hex_colour):
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def colours(img: Image.Image) -> set:
    return {c for _, c in img.convert("RGB").getcolors(maxcolors=1 << 20)}


def test_grid_image_uses_the_arc_palette_with_grid_lines():
    grid = np.arange(10, dtype=np.uint8).reshape(2, 5)
    px = grid_image(grid, cell=4)
    assert px.shape == (2 * 5 + 1, 5 * 5 + 1, 3)
    for r in range(2):
        for c in range(5):
            assert tuple(px[1 + r * 5 + 1, 1 + c * 5 + 1]) == rgb(PALETTE_HEX[grid[r, c]])
    assert tuple(px[0, 0]) == tuple(render.GRID_LINE) and tuple(px[5, 3]) == tuple(render.GRID_LINE)
    assert PALETTE_HEX[1] == "#0074D9" and PALETTE_HEX[9] == "#870C25"
    # Correct/wrong frames must not be mistaken for cells of colour 3 (green) or 2 (red).
    assert {render.CORRECT, render.WRONG}.isdisjoint({rgb(h) for h in PALETTE_HEX})


def test_render_task_writes_png_with_borders(tmp_path):
    out = tmp_path / "t.png"
    wrong = g([[5, 6, 7]])
    img = render_task(TASK, [(wrong, g([[7, 6, 5]]))], out)
    with Image.open(out) as back:
        assert back.format == "PNG" and back.size == img.size
        assert back.size[0] > 100 and back.size[1] > 100
        cols = colours(back)
    assert render.CORRECT in cols and render.WRONG in cols
    for c in (1, 2, 3, 4, 5, 6, 7):
        assert rgb(PALETTE_HEX[c]) in cols


def test_render_without_attempts_or_solution_has_no_borders():
    hidden = Task("x", TASK.train, (Pair(g([[1]]), None),), "test")
    cols = colours(render_task(hidden))
    assert render.CORRECT not in cols and render.WRONG not in cols


def test_render_large_grids_stays_small_and_fast():
    big = g(np.random.default_rng(0).integers(0, 10, (30, 30)))
    task = Task("big", tuple(Pair(big, big) for _ in range(4)), (Pair(big, big), Pair(big, big)), "test")
    img = render_task(task, [(big, big), (big, big)])
    assert img.size[0] < 1000 and img.size[1] < 1600


def test_find_task_names_the_source():
    with pytest.raises(InputError, match=r"'nope'.*arc-agi-1:evaluation"):
        render.find_task("nope", "arc-agi-1:evaluation")


def test_cli_show_on_bundled_task(tmp_path):
    task_id = "00576224"  # arc-agi-1 evaluation
    res = subprocess.run([sys.executable, "-m", "arc_trm.cli", "show", task_id, "--tasks", "arc-agi-1:evaluation"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    out = tmp_path / f"{task_id}.png"
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 0 and img.size[1] > 0

    res = subprocess.run([sys.executable, "-m", "arc_trm.cli", "show", "zzzzzzzz", "--tasks", "arc-agi-1:evaluation"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "arc-agi-1:evaluation" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_show_with_submission_draws_attempts(tmp_path):
    sub_path = tmp_path / "submission.json"
    write_json_atomic(sub_path, {TASK.id: [{"attempt_1": [[7, 6, 5]], "attempt_2": [[0]]}]})
    args = argparse.Namespace(task_id=TASK.id, tasks=None, submission=str(sub_path),
                              out=str(tmp_path / "a.png"), box=64)
    attempts = render.attempts_for(TASK, sub_path)
    assert [a.tolist() for a in attempts[0]] == [[[7, 6, 5]], [[0]]]
    img = render_task(TASK, attempts, args.out, box=args.box)
    assert render.CORRECT in colours(img) and render.WRONG in colours(img)


def test_safe_default_name(tmp_path, monkeypatch):
    # A task id with a path separator still lands in the current folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(render, "find_task", lambda task_id, source: TASK)
    args = argparse.Namespace(task_id=TASK.id, tasks="x", submission=None, out=None, box=64)
    assert render.run(args) == 0
    assert (tmp_path / "demo_one.png").exists()


def test_report_html(tmp_path):
    tasks = load_tasks("arc-agi-1:evaluation")[:3]
    run = tmp_path / "run"
    sub = fallback_submission(tasks)
    solved = tasks[1]
    sub[solved.id] = [{"attempt_1": p.output.tolist(), "attempt_2": p.input.tolist()} for p in solved.test]
    write_json_atomic(run / "submission.json", sub)
    write_candidates(candidates_path(run / "submission.json"),
                     {(solved.id, i): [Candidate(p.output, 2, 0.7)] for i, p in enumerate(solved.test)})
    (run / "submission.predict.json").write_text(json.dumps({"tasks": "arc-agi-1:evaluation"}))
    with pytest.raises(InputError, match="missing"):  # the record names all 400 tasks
        report.write_report(run)
    (run / "other.predict.json").write_text(json.dumps({"tasks": "nope"}))  # another submission's record
    out = report.write_report(run, partial=True)
    assert out == run / "report.html"
    page = out.read_text()
    assert "<table" in page and "Wilson" in page and "pass@k" in page
    ids = [m for m in re.findall(r"<tr class=\"\w+\"><td><code>([^<]+)</code>", page)]
    assert ids[0] == solved.id and set(ids) == {t.id for t in tasks}
    uris = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(uris) == 3
    with Image.open(BytesIO(base64.b64decode(uris[0]))) as img:
        assert img.format == "PNG" and img.size[0] > 0


def test_report_reads_its_task_source_once(tmp_path, monkeypatch):
    """report read a scored source twice: once to see whether it holds solutions, once to score."""
    from submission import score

    tasks = load_tasks("arc-agi-1:evaluation")
    write_json_atomic(tmp_path / "submission.json", fallback_submission(tasks))
    (tmp_path / "submission.predict.json").write_text(json.dumps({"tasks": "arc-agi-1:evaluation"}))
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0])
        return load_tasks(*args, **kwargs)

    monkeypatch.setattr(score, "load_tasks", counting)
    monkeypatch.setattr(report, "load_tasks", counting, raising=False)  # where report read them itself
    page = report.write_report(tmp_path).read_text()
    assert calls == ["arc-agi-1:evaluation"]
    assert "Wilson" in page  # scored


def test_report_needs_a_task_source(tmp_path):
    write_json_atomic(tmp_path / "submission.json", fallback_submission([TASK]))
    with pytest.raises(InputError, match="predict.json"):
        report.write_report(tmp_path)


@pytest.mark.parametrize("text, words", [
    ('{"t": [{"attempt_1": [[1]]', "malformed JSON in submission"),  # cut short by a full disk
    (json.dumps(TASK.to_json()), "not a submission"),
])
def test_report_names_a_broken_submission_before_a_missing_record(tmp_path, text, words):
    """Before: `arc-trm report RUN` on a truncated submission.json without its record said only "no
    task source recorded in RUN/submission.predict.json", hiding what was wrong with the submission
    (score named it); the submission is read first now, as score does."""
    (tmp_path / "submission.json").write_text(text)
    proc = subprocess.run([sys.executable, "-m", "arc_trm.cli", "report", str(tmp_path)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(tmp_path / "submission.json") in lines[0] and words in lines[0] and "predict.json" not in lines[0]
    assert not (tmp_path / "report.html").exists()


def test_report_takes_a_submission_file(tmp_path):
    # `arc-trm report RUN/submission.json` said "run folder not found".
    from conftest import SMALL_TASKS, cli_in_process

    sub = tmp_path / "subs" / "mine.json"
    write_json_atomic(sub, fallback_submission(load_tasks(SMALL_TASKS)))
    (tmp_path / "subs" / "mine.predict.json").write_text(json.dumps({"tasks": SMALL_TASKS}))
    proc = cli_in_process("report", sub)
    assert proc.returncode == 0 and proc.stdout.strip() == str(tmp_path / "subs" / "report.html"), proc.stderr
    assert "mine.json" in (tmp_path / "subs" / "report.html").read_text()
    proc = cli_in_process("report", sub, "--submission", sub)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--submission" in proc.stderr


def test_report_of_tasks_without_solutions_shows_the_answers_unscored(tmp_path):
    """After `ttt` on Kaggle's test challenges (no solutions anywhere), `arc-trm report RUN` said
    only "has no solutions ... pass --solutions FILE": the pictures of the answers were out of reach
    but for `show`, one task at a time. Now the page shows every task's answers, unscored."""
    from conftest import cli_in_process

    unknown = [Task(f"t{i}", TASK.train, (Pair(g([[i, 1]]), None),) * (i + 1), "test") for i in range(1, 4)]
    challenges = tmp_path / "c" / "challenges.json"
    write_json_atomic(challenges, {t.id: t.to_json(with_solutions=False) for t in unknown})
    sub = tmp_path / "run" / "submission.json"
    write_json_atomic(sub, fallback_submission(unknown))
    (tmp_path / "run" / "submission.predict.json").write_text(json.dumps({"tasks": str(challenges)}))
    proc = cli_in_process("report", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "run" / "report.html").read_text()
    assert "not scored" in page and "3 tasks, 9 test outputs" in page
    assert re.findall(r"<td><code>([^<]+)</code></td><td class=\"score\">-</td>", page) == ["t1", "t2", "t3"]
    assert len(re.findall(r"data:image/png;base64,", page)) == 3

    # The submission must still answer the source's tasks: one missing is named, --partial shows the rest.
    write_json_atomic(sub, fallback_submission(unknown[:2]))
    proc = cli_in_process("report", tmp_path / "run")
    assert proc.returncode == 2 and "missing 1 task(s)" in proc.stderr and "t3" in proc.stderr, proc.stderr
    assert cli_in_process("report", tmp_path / "run", "--partial").returncode == 0
    assert "(1 task of the source left out: --partial)" in (tmp_path / "run" / "report.html").read_text()
    # A source with solutions is scored as before; score itself still needs solutions.
    proc = cli_in_process("score", sub, "--tasks", challenges)
    assert proc.returncode == 2 and "no solutions" in proc.stderr


def test_report_of_a_folder_where_the_submission_should_be_says_so(tmp_path):
    """`report r1 --submission r1`, and a run whose submission.json is a folder, said the path "does
    not exist" and suggested a predict --out that predict itself refuses."""
    from conftest import cli_in_process

    (tmp_path / "r2" / "submission.json").mkdir(parents=True)
    for args in ((tmp_path / "r2", "--submission", tmp_path / "r2"), (tmp_path / "r2",)):
        proc = cli_in_process("report", *args)
        assert proc.returncode == 2 and "submission is a folder; give the file" in proc.stderr, proc.stderr
