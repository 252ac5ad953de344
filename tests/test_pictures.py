"""What the pictures show: `plot`'s panels and phase marks, the report's source, pass@k and
matched columns, and the legend of `show` (issue 27, items 10 and 11)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.lines import Line2D
from PIL import Image

from arc_trm import plot
from augment.errors import InputError
from augment.files import write_json_atomic
from augment.tasks import Pair, Task, load_tasks
from conftest import SMALL_TASKS, cli_in_process
from submission import render, report
from submission.kaggle import candidates_path, fallback_submission, write_candidates
from submission.vote import Candidate


def train_line(step: int, lr: float | None = 1e-3) -> dict:
    row = {"step": step, "loss": 2.0 - step / 100, "exact_accuracy": 0.0, "halt_steps": 1.0, "samples_per_s": 50.0}
    return row if lr is None else {**row, "lr": lr}


def write_metrics(run: Path, rows: list[dict]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def panel(fig, title: str):
    return next(ax for ax in fig.axes if ax.get_title() == title)


def test_plot_of_one_record_shows_its_point_on_whole_steps(tmp_path):
    write_metrics(tmp_path, [train_line(1, lr=5e-4)])
    fig = plot.curves_figure(tmp_path)
    for ax in fig.axes:
        (line,) = ax.get_lines()
        assert len(line.get_xdata()) == 1 and line.get_marker() not in (None, "None", "")  # a lone point needs a marker
        lo, hi = ax.get_xlim()
        assert lo <= 0 and hi >= 2
    assert panel(fig, "learning rate").get_lines()[0].get_ydata()[0] == 5e-4
    out = plot.plot_run(tmp_path)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 600


def test_plot_leaves_a_gap_where_no_row_halted(tmp_path):
    """metrics.jsonl has no halting figures at a step where no row halted (an older file has 0.0 for
    both): the two halting panels leave a gap there, not a measured 0."""
    none_halted = {k: v for k, v in train_line(2).items() if k not in ("exact_accuracy", "halt_steps")}
    older = {**train_line(3), "exact_accuracy": 0.0, "halt_steps": 0.0}
    write_metrics(tmp_path, [{**train_line(1), "exact_accuracy": 0.5}, none_halted, older, train_line(4)])
    fig = plot.curves_figure(tmp_path)
    for title, first in (("exact accuracy (halted rows)", 0.5), ("mean halting steps", 1.0)):
        ys = list(panel(fig, title).get_lines()[0].get_ydata())
        assert ys[0] == first and math.isnan(ys[1]) and math.isnan(ys[2]) and not math.isnan(ys[3]), (title, ys)
    assert [float(y) for y in panel(fig, "loss").get_lines()[0].get_ydata()] == pytest.approx([1.99, 1.98, 1.97, 1.96])
    # No step halted at all: the panels say so instead of drawing nothing.
    write_metrics(tmp_path, [none_halted])
    texts = [t.get_text() for t in panel(plot.curves_figure(tmp_path), "mean halting steps").texts]
    assert any("no row halted" in t for t in texts), texts


def test_plot_has_a_learning_rate_panel_and_keeps_pass_at_1_visible(tmp_path):
    evals = [{"step": s, "eval_pass@1": 0.5, "eval_pass@2": 0.5, "eval_pass@10": 0.75} for s in (10, 20)]
    write_metrics(tmp_path, [train_line(s, lr=s * 1e-4) for s in range(1, 21)] + evals)
    fig = plot.curves_figure(tmp_path)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "exact accuracy (halted rows)", "mean halting steps", "samples / s", "learning rate",
                      "evaluation (pass@k)"]
    assert list(panel(fig, "learning rate").get_lines()[0].get_ydata()) == pytest.approx([s * 1e-4 for s in range(1, 21)])
    lines = {ln.get_label(): ln for ln in panel(fig, "evaluation (pass@k)").get_lines()}
    one, two = lines["pass@1"], lines["pass@2"]
    # Equal values: pass@1 must be drawn over pass@2 and look different, or it disappears under it.
    assert one.get_zorder() > two.get_zorder()
    assert (one.get_linestyle(), one.get_marker()) != (two.get_linestyle(), two.get_marker())
    assert one.get_markersize() < two.get_markersize()
    legend = [t.get_text() for t in panel(fig, "evaluation (pass@k)").get_legend().get_texts()]
    assert legend == ["pass@1", "pass@2", "pass@10"]


def test_plot_marks_ttt_phases_and_survives_a_bad_plan(tmp_path, capsys):
    write_metrics(tmp_path, [train_line(s) for s in range(1, 21)])
    (tmp_path / "ttt_plan.json").write_text(json.dumps(
        {"steps": 20, "freeze_steps": 5, "stops": [5, 12, 20], "quick_stops": [5]}))
    assert plot.run_phases(tmp_path) == [plot.PhaseMark(5, "embeddings-only ends, quick predict"),
                                         plot.PhaseMark(12, "re-plan"),
                                         plot.PhaseMark(20, "planned end: final predict")]
    fig = plot.curves_figure(tmp_path)
    for ax in fig.axes:
        verticals = [ln.get_xdata()[0] for ln in ax.get_lines() if len(set(ln.get_xdata())) == 1
                     and isinstance(ln, Line2D) and ln.get_linestyle() == ":"]
        assert verticals == [5, 12, 20]
        assert {t.get_text().strip() for t in ax.texts} >= {"re-plan", "planned end: final predict"}
    # A plan that cannot be read costs only the marks, with a warning.
    (tmp_path / "ttt_plan.json").write_text("{not json")
    assert plot.run_phases(tmp_path) == []
    assert "phases not marked" in capsys.readouterr().err
    plot.plot_run(tmp_path)


def test_plot_of_a_per_task_ttt_run_points_to_its_tasks(tmp_path):
    (tmp_path / "tasks" / "abc").mkdir(parents=True)
    with pytest.raises(InputError, match=r"no metrics .*ttt --per-task run has one per task: arc-trm plot .*tasks/TASK"):
        plot.curves_figure(tmp_path)


def test_plot_says_when_a_run_recorded_no_learning_rate(tmp_path):
    write_metrics(tmp_path, [train_line(s, lr=None) for s in (1, 2)])
    ax = panel(plot.curves_figure(tmp_path), "learning rate")
    assert not ax.get_lines() and "not recorded" in ax.texts[0].get_text()


# ---------------------------------------------------------------- report


def ttt_like_run(run: Path, tasks: list[Task], named: str) -> Path:
    """A run scored against its own copy of the tasks, whose record names the user's source too."""
    copy = run / "ttt_challenges.json"
    write_json_atomic(copy, {t.id: t.to_json(with_solutions=False) for t in tasks})
    write_json_atomic(run / "ttt_solutions.json", {t.id: [p.output.tolist() for p in t.test] for t in tasks})
    sub = fallback_submission(tasks)
    solved = tasks[0]
    sub[solved.id] = [{"attempt_1": p.input.tolist(), "attempt_2": p.output.tolist()} for p in solved.test]
    write_json_atomic(run / "submission.json", sub)
    wrong = [Candidate(np.full((1, 1), k, np.uint8), 9 - k, 0.5) for k in range(4)]
    write_candidates(candidates_path(run / "submission.json"),
                     {(t.id, i): wrong + ([Candidate(p.output, 1, 0.1)] if t is solved else [])
                      for t in tasks for i, p in enumerate(t.test)})
    write_json_atomic(run / "submission.predict.json", {"tasks": f"{copy}@test", "source": named})
    return copy


def test_report_names_the_users_source_pass_at_1_2_and_largest_and_readable_matches(tmp_path):
    tasks = load_tasks(SMALL_TASKS)
    copy = ttt_like_run(tmp_path, tasks, SMALL_TASKS)
    page = report.write_report(tmp_path).read_text()
    source = re.search(r"<dt>tasks and solutions</dt><dd>(.*?)</dd>", page).group(1)
    assert source.startswith(f"<code>{SMALL_TASKS}</code>") and f"run's copy <code>{copy}@test" in source
    assert re.findall(r"<th>(pass@\d+)</th>", page) == ["pass@1", "pass@2", "pass@5"]  # not @3, @4
    assert "0.0000 (0/3)" in page and "0.3333 (1/3)" in page  # the solution is fifth in one of 3 outputs
    matched = re.findall(r'<td class="score">[^<]*</td><td>([^<]*)</td>', page)
    assert matched == ["attempt 2", "neither attempt", "neither attempt"]
    # --tasks given to report: that is the source named, without the record's.
    page = report.write_report(tmp_path, tasks_spec=SMALL_TASKS).read_text()
    assert "run's copy" not in page and f"<code>{SMALL_TASKS}</code>" in page


def test_score_text_shows_the_report_s_pass_at_k_and_its_json_every_k(tmp_path):
    from conftest import cli_in_process

    ttt_like_run(tmp_path, load_tasks(SMALL_TASKS), SMALL_TASKS)
    sub = tmp_path / "submission.json"
    text = cli_in_process("score", sub, "--brief")
    assert text.returncode == 0, text.stderr
    [line] = [ln for ln in text.stdout.splitlines() if ln.startswith("pass@k")]
    assert line == ("pass@k (per output, from candidates): pass@1 0.0000 (0/3)  pass@2 0.0000 (0/3)  "
                    "pass@5 0.3333 (1/3)")  # as the report's table: not @3, @4
    scored = json.loads(cli_in_process("score", sub, "--json").stdout)
    assert list(scored["pass_at_k"]) == ["1", "2", "3", "4", "5"]


def test_report_thumbnails_draw_the_solutions_given_by_solutions(tmp_path):
    """With --solutions (and --tasks a challenges file without them, or no --tasks) the thumbnails
    said "solution (unknown)" and had no green or red borders, though the rows were scored."""
    import base64
    import io

    tasks = load_tasks(SMALL_TASKS)
    ttt_like_run(tmp_path, tasks, SMALL_TASKS)
    write_json_atomic(tmp_path / "tasks.json", {t.id: t.to_json(with_solutions=False) for t in tasks})
    solutions = tmp_path / "ttt_solutions.json"
    for spec in (str(tmp_path / "tasks.json"), None):
        page = report.write_report(tmp_path, tasks_spec=spec, solutions_file=str(solutions)).read_text()
        thumbs = [Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB")
                  for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
        colours = [{c for _, c in im.getcolors(1 << 20)} for im in thumbs]
        assert render.CORRECT in colours[0] and all(render.WRONG in c for c in colours), spec  # solved first


def test_report_lists_each_test_output_of_a_task_with_several(tmp_path):
    assert report.matched_text([1, None, 2]) == "test 1: attempt 1<br>test 2: neither attempt<br>test 3: attempt 2"


def test_ttt_prediction_records_the_source_the_user_named(tmp_path, small_build):
    """predict() as ttt calls it (its copy as the source, the user's spec as `named`) records both,
    and the report names the user's."""
    from arc_trm.common import Dist
    from arc_trm.config import preset
    from arc_trm.overrides import apply_overrides
    from arc_trm.infer import LoadedModel, PredictOptions, predict
    from arc_trm.model import TRM
    from augment.store import BuiltSet
    from conftest import TINY

    built = BuiltSet.open(small_build)
    cfg = apply_overrides(preset("cpu-quick"), TINY)
    cfg.model.num_puzzle_ids, cfg.model.seq_len = built.num_identifiers, cfg.data.canvas ** 2
    loaded = LoadedModel(TRM(cfg.model).eval(), cfg, built.identifier_map(), tmp_path)
    tasks = load_tasks(SMALL_TASKS)
    copy = ttt_like_run(tmp_path, tasks, "ignored")
    (tmp_path / "submission.json").unlink()
    expired = loaded.view_run(progress=False, deadline=0.0)  # no view runs: the fallback and the record
    predict([loaded], tasks, tmp_path / "submission.json", PredictOptions(f"{copy}@test", named=SMALL_TASKS),
            expired, Dist())
    record = json.loads((tmp_path / "submission.predict.json").read_text())
    assert record["tasks"] == f"{copy}@test" and record["source"] == SMALL_TASKS
    assert f"<code>{SMALL_TASKS}</code><br><small>read from the run's copy" in report.write_report(tmp_path).read_text()


def test_plot_of_a_killed_run_leaves_out_its_cut_short_last_line(tmp_path, capsys):
    """A crash can leave metrics.jsonl with half a line or a NUL-filled tail (train --resume drops
    it): plot draws the complete lines and warns; a bad line elsewhere is still refused in one line."""
    whole = "".join(json.dumps(train_line(s)) + "\n" for s in (1, 2, 3))
    for tail in ('{"step": 4, "lo', "\0" * 64):
        write_metrics(tmp_path, [])
        (tmp_path / "metrics.jsonl").write_text(whole + tail)
        train, _ = plot.read_metrics(tmp_path)
        assert [r["step"] for r in train] == [1, 2, 3]
        assert ("cut short" in capsys.readouterr().err) == (tail[0] == "{")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "lo\n' + whole)
    with pytest.raises(InputError, match="line 1 is not JSON"):
        plot.read_metrics(tmp_path)
    for row in ("[1, 2]", '{"step": "x", "loss": 1}', '"text"'):
        (tmp_path / "metrics.jsonl").write_text(whole + row + "\n" + whole)
        with pytest.raises(InputError, match="line 4 is not a metrics record"):
            plot.read_metrics(tmp_path)


def test_plot_and_show_refuse_an_out_that_is_a_folder_in_one_line(tmp_path):
    write_metrics(tmp_path / "run", [train_line(1), train_line(2)])
    (tmp_path / "figs").mkdir()
    for args in (("plot", tmp_path / "run", "--out", tmp_path / "figs"),
                 ("show", "3c9b0459", "--tasks", SMALL_TASKS, "--out", tmp_path / "figs")):
        r = cli_in_process(*args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert f"cannot write {tmp_path / 'figs'}: it is a folder" in r.stderr
    assert not list((tmp_path / "figs").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figs", "run"]  # no temporary file left beside it


# ---------------------------------------------------------------- show


def test_show_has_a_legend_when_attempts_are_scored_and_readable_labels():
    g = lambda rows: np.array(rows, dtype=np.uint8)  # noqa: E731
    task = Task("t", (Pair(g([[1]]), g([[2]])),), (Pair(g([[3]]), g([[4]])),), "test")
    rows = render.answer_rows([task.test[0].input], [(g([[5]]), g([[6]]))], [task.test[0].output])
    assert render.legend_items(rows) == list(render.LEGEND)  # both colours explained, though none matched
    assert [text for _, text in render.LEGEND] == ["attempt matches the solution", "attempt differs from the solution"]
    assert render.legend_items(render.answer_rows([task.test[0].input], None, [task.test[0].output])) == []
    with_legend = render.render_task(task, [(g([[5]]), g([[6]]))])
    without = render.render_task(task, [(g([[5]]), g([[6]]))], legend=False)
    assert with_legend.size[1] > without.size[1]
    # The legend's green swatch is there although no attempt is correct (the picture has no green frame).
    assert render.CORRECT in {c for _, c in with_legend.getcolors(1 << 20)}
    assert render.CORRECT not in {c for _, c in without.getcolors(1 << 20)}
    # Labels at least 11 px tall (Pillow's old bitmap default is 8-9 px).
    font = render.label_font()
    top, bottom = font.getbbox("Ag")[1], font.getbbox("Ag")[3]
    assert bottom - top >= 11


def test_show_refuses_a_candidates_file_given_as_the_submission(tmp_path):
    """The candidates file sits beside the submission; passed by mistake it drew the task without
    attempts under a note that the task was not in it."""
    (task,) = load_tasks(SMALL_TASKS.replace("+6150a2bd+74dd1130", ""))
    sub = tmp_path / "submission.json"
    write_json_atomic(sub, fallback_submission([task]))
    write_candidates(candidates_path(sub), {(task.id, 0): [Candidate(task.test[0].input, 3, 0.5)]})
    r = cli_in_process("show", task.id, "--tasks", SMALL_TASKS, "--submission", candidates_path(sub),
                       "--out", tmp_path / "t.png")
    assert r.returncode == 2 and "is a candidates file, not a submission: use the submission beside it" in r.stderr
    assert not (tmp_path / "t.png").exists()
    assert cli_in_process("show", task.id, "--tasks", SMALL_TASKS, "--submission", sub,
                          "--out", tmp_path / "t.png").returncode == 0


def test_plot_and_show_write_the_format_their_out_names_and_refuse_other_suffixes(tmp_path):
    """curves.pdf was PNG bytes under a .pdf name; an --out naming a JSON file (the tasks, a slip)
    was overwritten with a PNG."""
    write_metrics(tmp_path / "run", [train_line(1), train_line(2)])
    magic = {".pdf": b"%PDF", ".svg": b"<?xml", ".png": b"\x89PNG", "": b"\x89PNG", ".jpg": b"\xff\xd8\xff"}
    for suffix in (".pdf", ".svg", ".png", ""):
        out = plot.plot_run(tmp_path / "run", tmp_path / f"curves{suffix}")
        assert out.read_bytes().startswith(magic[suffix]), suffix
    for suffix in (".jpg", ".png"):
        r = cli_in_process("show", "3c9b0459", "--tasks", SMALL_TASKS, "--out", tmp_path / f"task{suffix}")
        assert r.returncode == 0 and (tmp_path / f"task{suffix}").read_bytes().startswith(magic[suffix]), r.stderr
    tasks = tmp_path / "x_challenges.json"
    tasks.write_text("{}")
    for args in (("plot", tmp_path / "run"), ("show", "3c9b0459", "--tasks", SMALL_TASKS)):
        r = cli_in_process(*args, "--out", tasks)
        assert r.returncode == 2 and ".json is not a picture format" in r.stderr and r.stderr.count("\n") == 1
    assert tasks.read_text() == "{}"
    for suffix in (".xbm", ".palm", ".h5"):  # Pillow lists them, then cannot write RGB there: a traceback
        r = cli_in_process("show", "3c9b0459", "--tasks", SMALL_TASKS, "--out", tmp_path / f"task{suffix}")
        assert r.returncode == 2 and f"{suffix} is not a picture format" in r.stderr and r.stderr.count("\n") == 1
        assert not (tmp_path / f"task{suffix}").exists()
    # matplotlib lists .pgf, then writes it through xelatex: a RuntimeError traceback without one.
    r = cli_in_process("plot", tmp_path / "run", "--out", tmp_path / "curves.pgf")
    assert r.returncode == 2 and ".pgf is not a picture format" in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("key, bad", [("loss", "x"), ("lr", [1]), ("eval_pass@1", "0.5"), ("samples_per_s", True)])
def test_plot_names_a_metric_that_is_not_a_number(tmp_path, key, bad):
    """Before: a metrics line with "loss": "x" (a file edited or written by another tool) stopped
    `arc-trm plot` with a ValueError traceback from float()."""
    write_metrics(tmp_path, [train_line(1), {**train_line(2), key: bad}])
    proc = cli_in_process("plot", tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"arc-trm plot: error: {tmp_path / 'metrics.jsonl'}: line 2: {key!r} is {bad!r}, not a number"]
    assert not (tmp_path / "curves.png").exists()
