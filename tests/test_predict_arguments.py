"""Options of `arc-trm predict` that only work together are refused alone, in one line."""

from __future__ import annotations

import pytest

from arc_trm.cli import command_parser
from arc_trm.predict_cli import check_arguments
from augment.errors import InputError

from conftest import SMALL_TASKS, cli_in_process, write_tiny_checkpoint


def test_options_are_checked_before_any_checkpoint_or_task_is_read(tmp_path):
    """check_arguments refuses a bad option in one line though neither the checkpoint nor the tasks
    exist: they are read only after it passes."""
    base = ["--checkpoint", str(tmp_path / "nowhere"), "--tasks", str(tmp_path / "none.json"),
            "--out", str(tmp_path / "s.json")]
    parser = command_parser("predict")
    for extra, needle in ((["--batch-size", "0"], "--batch-size must be"), (["--views", "-1"], "--views must be"),
                          (["--noise", "-1"], "--noise must be"), (["--trajectories", "2"], "needs --noise > 0")):
        with pytest.raises(InputError, match=needle):
            check_arguments(parser.parse_args(base + extra))
    with pytest.raises(InputError, match="no checkpoint found"):  # the options pass: the checkpoint comes last
        check_arguments(parser.parse_args(base))


def test_noise_without_trajectories_is_refused_in_one_line(tmp_path):
    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    args = ["predict", "--checkpoint", run, "--tasks", SMALL_TASKS, "--out", tmp_path / "s.json", "--no-progress"]
    bad = cli_in_process(*args, "--noise", "0.5")  # --trajectories defaults to 1: the noise would never be used
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "--trajectories" in lines[0], bad.stderr
    assert not (tmp_path / "s.json").exists()
    assert cli_in_process(*args, "--noise", "0.5", "--trajectories", "2", "--views", "1", "--max-steps", "1").returncode == 0
    assert (tmp_path / "s.json").exists()


def test_an_out_holding_the_tasks_solutions_or_candidates_is_refused_not_overwritten(tmp_path):
    """`--out` is merged into an earlier submission; a slip that names the challenges, solutions
    or candidates file replaced it with a submission, without --force or a word."""
    import json

    from augment.tasks import load_tasks
    from submission.kaggle import fallback_submission

    tasks = load_tasks(SMALL_TASKS)
    challenges, solutions = tmp_path / "x_test_challenges.json", tmp_path / "x_test_solutions.json"
    challenges.write_text(json.dumps({t.id: t.to_json(with_solutions=False) for t in tasks}))
    solutions.write_text(json.dumps({t.id: [p.output.tolist() for p in t.test] for t in tasks}))
    candidates = tmp_path / "s.candidates.json"
    candidates.write_text('{"format": "arc-trm-candidates", "version": 1, "tasks": {}}')
    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    for target in (challenges, solutions, candidates):
        before = target.read_bytes()
        r = cli_in_process("predict", "--checkpoint", run, "--tasks", challenges, "--out", target, "--no-progress")
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert f"--out {target}: the file there is JSON but not a submission" in r.stderr
        assert target.read_bytes() == before
    # An earlier submission holding other tasks was replaced by one without them: their answers lost.
    earlier = tmp_path / "earlier.json"
    other = {"other": [{"attempt_1": [[1]], "attempt_2": [[2]]}]}
    earlier.write_text(json.dumps({**other, **fallback_submission(tasks[:1])}))
    before = earlier.read_bytes()
    predict = ("predict", "--checkpoint", run, "--tasks", challenges, "--out", earlier, "--no-progress",
               "--views", "1", "--max-steps", "1")
    r = cli_in_process(*predict)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert (f"--out {earlier}: holds answers for 1 task this run does not answer (other), which the new file "
            "would drop: give another --out, or move it aside") in r.stderr
    assert earlier.read_bytes() == before
    earlier.write_text(json.dumps(fallback_submission(tasks[:1])))  # some of this run's tasks: replaced
    assert cli_in_process(*predict).returncode == 0
    assert sorted(json.loads(earlier.read_text())) == sorted(t.id for t in tasks)


def test_the_summary_says_which_untrained_tasks_kept_earlier_answers_and_whether_it_wrote(tmp_path):
    """Tasks without a trained embedding keep an earlier submission's answers (only answers produced
    replace them), but the summary said they "got the fallback answer", and "wrote" the file when
    no view ran and it was left as it was."""
    import json

    from augment.tasks import load_tasks
    from submission.kaggle import fallback_submission

    run, out = tmp_path / "run", tmp_path / "s.json"
    write_tiny_checkpoint(run)  # trained ids of 3c9b0459 only
    tasks = {t.id: t for t in load_tasks(SMALL_TASKS)}
    earlier = fallback_submission([tasks["6150a2bd"]])
    earlier["6150a2bd"][0] = {"attempt_1": [[1]], "attempt_2": [[2]]}
    out.write_text(json.dumps(earlier))
    args = ["predict", "--checkpoint", run, "--out", out, "--no-progress", "--views", "1", "--max-steps", "1"]
    r = cli_in_process(*args, "--tasks", SMALL_TASKS)
    assert r.returncode == 0, r.stderr
    assert "1 task has no puzzle embedding trained on its content and got the fallback answer (run `arc-trm ttt` " \
           "on it): 74dd1130" in r.stdout
    assert f"1 task has no puzzle embedding trained on its content and kept the answers {out} held before" in r.stdout
    assert json.loads(out.read_text())["6150a2bd"] == earlier["6150a2bd"] and f"wrote {out}" in r.stdout
    # it named the candidates file but not the record beside them, which `score` reads its --tasks from
    assert f"wrote {out} and, beside it, s.candidates.json and s.predict.json\n" in r.stdout
    assert (tmp_path / "s.candidates.json").is_file() and (tmp_path / "s.predict.json").is_file()
    untrained = SMALL_TASKS.replace("3c9b0459+", "")  # no view runs: the file is left as it was
    out.write_text(json.dumps({t: json.loads(out.read_text())[t] for t in ("6150a2bd", "74dd1130")}))
    before = out.read_bytes()
    r = cli_in_process(*args, "--tasks", untrained)
    assert r.returncode == 0 and "no view finished" in r.stdout and "wrote" not in r.stdout, r.stdout
    assert "2 tasks have no puzzle embedding trained on their content and kept the answers" in r.stdout
    assert out.read_bytes() == before


def test_a_bare_set_name_warns_at_predict_and_score_that_it_holds_the_training_split(tmp_path):
    """`--tasks arc-agi-1` holds the training split as well: a run trained on it scored on tasks it
    had learned, and nothing said so."""
    run, out = tmp_path / "run", tmp_path / "s.json"
    write_tiny_checkpoint(run)

    def warnings(proc) -> list[str]:
        assert proc.returncode == 0, proc.stderr
        return [line for line in proc.stderr.splitlines() if "training split" in line]

    predicted = cli_in_process("predict", "--checkpoint", run, "--tasks", "arc-agi-1", "--out", out, "--views", "1",
                               "--max-steps", "1", "--no-progress")
    scored = cli_in_process("score", out, "--brief")  # the record names arc-agi-1
    for proc in (predicted, scored):
        line, = warnings(proc)
        assert line.startswith("warning: arc-agi-1 ") and "use arc-agi-1:evaluation" in line, line
    assert warnings(cli_in_process("score", out, "--brief", "--tasks", "arc-agi-1:evaluation", "--partial")) == []


def test_test_inputs_larger_than_the_canvas_are_counted_apart_and_keep_the_fallback(tmp_path):
    """A test input larger than the model's canvas has no view that can answer: its views ran on a
    blank canvas, the summary counted it as predicted, and its task silently kept the fallback."""
    import json

    from augment.tasks import load_tasks

    run, out = tmp_path / "run", tmp_path / "s.json"
    write_tiny_checkpoint(run)  # canvas 6, trained ids of 3c9b0459 only
    task = load_tasks("arc-agi-1:training/3c9b0459").pop()
    data = task.to_json(with_solutions=False)
    large = [[(r + c) % 10 for c in range(8)] for r in range(8)]
    data["test"].append({"input": large})  # a second test input, 8x8
    challenges = tmp_path / "large_challenges.json"
    challenges.write_text(json.dumps({task.id: data}))
    r = cli_in_process("predict", "--checkpoint", run, "--tasks", challenges, "--out", out, "--no-progress",
                       "--views", "1", "--max-steps", "1")
    assert r.returncode == 0, r.stderr
    assert "predicted 1 of 2 test inputs (1 of 1 tasks) from 1 view in" in r.stdout, r.stdout
    assert ("1 task has grids larger than the model's 6x6 canvas and got the fallback answer for it: "
            "3c9b0459") in r.stdout, r.stdout
    assert json.loads(out.read_text())["3c9b0459"][1]["attempt_1"] == large
    record = json.loads(out.with_name("s.predict.json").read_text())
    assert record["views"] == 1 and record["too_large_tasks"] == ["3c9b0459"]


def test_a_task_without_rows_too_large_for_the_canvas_is_not_sent_to_ttt(tmp_path):
    """A task with no trained rows and a grid larger than the canvas was told to "run `arc-trm ttt`",
    which skips it for the same size: the advice went round in a loop."""
    import json

    run, out = tmp_path / "run", tmp_path / "s.json"
    write_tiny_checkpoint(run)  # canvas 6
    data = {"large": {"train": [{"input": [[1] * 8] * 8, "output": [[2] * 8] * 8}], "test": [{"input": [[1] * 3] * 3}]}}
    challenges = tmp_path / "c_challenges.json"
    challenges.write_text(json.dumps(data))
    r = cli_in_process("predict", "--checkpoint", run, "--tasks", challenges, "--out", out, "--no-progress",
                       "--views", "1", "--max-steps", "1")
    assert r.returncode == 0, r.stderr
    assert "1 task has grids larger than the model's 6x6 canvas and got the fallback answer for it: large" in r.stdout
    assert "arc-trm ttt" not in r.stdout, r.stdout
    record = json.loads(out.with_name("s.predict.json").read_text())
    assert record["too_large_tasks"] == ["large"] and "large" not in record.get("untrained_tasks", [])


def _blind_checkpoint(tmp_path):
    """A tiny checkpoint whose output head is zero: every token ties and argmax picks PAD, so every
    view finishes and decodes no grid."""
    import torch

    write_tiny_checkpoint(tmp_path / "base")
    state = torch.load(next((tmp_path / "base" / "checkpoints").glob("step_*")) / "state.pt", weights_only=True)
    state["model"]["lm_head.weight"].zero_()
    run = tmp_path / "blind"
    write_tiny_checkpoint(run, state_patch={"model": state["model"]})
    return run


def test_views_that_decode_no_grid_answer_nothing_and_the_summary_says_so(tmp_path):
    """Every view decoding PAD: predict said "predicted 1 of 1" (an input counted as answered when a
    view fit the canvas), gave the fallback without a word, and on a rerun said "no view finished"
    though both views had."""
    run, out = _blind_checkpoint(tmp_path), tmp_path / "s.json"
    args = ["predict", "--checkpoint", run, "--tasks", "arc-agi-1:training/3c9b0459@test", "--out", out,
            "--no-progress", "--max-steps", "1"]
    r = cli_in_process(*args)
    assert r.returncode == 0, r.stderr
    assert "predicted 0 of 1 test inputs (0 of 1 tasks) from 2 views in" in r.stdout, r.stdout
    assert ("1 task has test inputs whose views finished but decoded no valid grid and got the fallback answer "
            "for it: 3c9b0459") in r.stdout, r.stdout
    before = out.read_bytes()
    r = cli_in_process(*args)  # a rerun: no answer produced, so the earlier file stays
    assert r.returncode == 0 and "no view finished" not in r.stdout, r.stdout
    assert f"2 views finished but none decoded a valid grid: {out} keeps its answers" in r.stdout, r.stdout
    assert f"decoded no valid grid and kept the answers {out} held before for it" in r.stdout, r.stdout
    assert out.read_bytes() == before


def test_trajectories_count_views_not_their_runs(tmp_path):
    """--trajectories 3: the summary said "from 6 views" and the record views: 6 for 2 views (each
    votes once), and "steps per view" was the mean over the 6 runs."""
    import json

    run, out = tmp_path / "run", tmp_path / "s.json"
    write_tiny_checkpoint(run)  # two trained views of 3c9b0459
    r = cli_in_process("predict", "--checkpoint", run, "--tasks", "arc-agi-1:training/3c9b0459@test", "--out", out,
                       "--no-progress", "--trajectories", "3", "--noise", "0.1", "--halting", "off",
                       "--max-steps", "2")
    assert r.returncode == 0, r.stderr
    assert "from 2 views (6 runs: 3 trajectories each) in" in r.stdout, r.stdout
    assert "2.00 steps per run on average" in r.stdout, r.stdout
    record = json.loads(out.with_name("s.predict.json").read_text())
    assert (record["views"], record["runs"], record["mean_steps"]) == (2, 6, 2.0)


def test_an_out_in_the_tasks_folder_or_naming_a_folder_is_refused(tmp_path):
    """`--out tdir/submission.json` with `--tasks tdir` worked once, then the same command read the
    submission and its records as tasks; `--out results/` wrote a file named results."""
    import json

    from augment.tasks import load_tasks

    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    tdir = tmp_path / "tdir"
    tdir.mkdir()
    task = load_tasks("arc-agi-1:training/3c9b0459").pop()
    (tdir / f"{task.id}.json").write_text(json.dumps(task.to_json(with_solutions=False)))
    for out, words in ((tdir / "submission.json", f"is in the --tasks folder {tdir}, whose every .json is read"),
                       (f"{tmp_path / 'results'}/", "names a folder; give a file name")):
        r = cli_in_process("predict", "--checkpoint", run, "--tasks", f"{tdir}@test", "--out", out, "--no-progress")
        line, = r.stderr.strip().splitlines()
        assert r.returncode == 2 and words in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tdir"] and len(list(tdir.iterdir())) == 1


def test_an_out_holding_a_file_that_is_no_json_is_refused_but_a_broken_submission_is_replaced(tmp_path):
    """`--out notes.md` replaced the notes with a submission: a file that is not JSON counted as an
    unreadable earlier submission. A cut-short earlier submission (.json) is still replaced."""
    run = tmp_path / "nowhere"  # the outputs are checked before any checkpoint is read
    for name, content in (("notes.md", "# my notes\n"), ("model.bin", "\x00\x01"), ("empty.txt", "")):
        target = tmp_path / name
        target.write_text(content)
        r = cli_in_process("predict", "--checkpoint", run, "--tasks", SMALL_TASKS, "--out", target)
        line, = r.stderr.strip().splitlines()
        assert r.returncode == 2 and f"--out {target}: the file there is not JSON" in line, line
        assert target.read_text() == content
    broken = tmp_path / "s.json"
    broken.write_text('{"3c9b0459": [{"attempt_1": [[1')
    from submission.outputs import check_prediction_outputs

    check_prediction_outputs(broken)  # an earlier submission cut short: replaced, as before


def test_an_out_without_json_is_refused_when_its_side_files_are_another_submissions(tmp_path):
    """`--out d1` and `--out d1.json` share d1.candidates.json and d1.predict.json (named by the
    stem): the second run would replace the first's record, and `score d1.json` read its tasks."""
    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    args = ["predict", "--checkpoint", run, "--tasks", SMALL_TASKS, "--no-progress", "--views", "1", "--max-steps", "1"]
    assert cli_in_process(*args, "--out", tmp_path / "d1.json").returncode == 0
    side = [tmp_path / n for n in ("d1.json", "d1.candidates.json", "d1.predict.json")]
    before = [p.read_bytes() for p in side]
    bad = cli_in_process(*args, "--out", tmp_path / "d1")
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1, bad.stderr
    assert "d1.predict.json beside it is the record of d1.json" in lines[0] and "another name" in lines[0], lines[0]
    assert [p.read_bytes() for p in side] == before and not (tmp_path / "d1").exists()
    assert cli_in_process(*args, "--out", tmp_path / "d1.json").returncode == 0  # its own record: a rerun


def test_every_checkpoint_of_an_ensemble_is_checked_before_the_first_runs(tmp_path, monkeypatch):
    """A missing or lean second --checkpoint was found only after the first had run all its views."""
    import arc_trm.infer
    from arc_trm.export import export_inference

    write_tiny_checkpoint(tmp_path / "good")
    export_inference(tmp_path / "good", tmp_path / "lean", lean=True)
    ran = []
    monkeypatch.setattr(arc_trm.infer, "vote_views", lambda *a, **k: ran.append(a))
    for second, needle in ((tmp_path / "nowhere", "no checkpoint found"), (tmp_path / "lean", "lean export")):
        bad = cli_in_process("predict", "--checkpoint", tmp_path / "good", "--checkpoint", second, "--tasks",
                             SMALL_TASKS, "--out", tmp_path / "s.json", "--no-progress")
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and needle in lines[0] and str(second) in lines[0], bad.stderr
    assert ran == [] and not (tmp_path / "s.json").exists()


def test_a_task_salvaged_without_demonstrations_keeps_the_fallback_and_is_not_called_untrained(tmp_path):
    """--skip-bad-tasks salvages a task whose demonstrations are malformed, and warns it keeps the
    fallback; the model still answered it from its rows, or (rows recording the task's content)
    the summary said it differs in content and to run ttt on it."""
    import json

    import torch

    from augment.task_hash import content_hash
    from augment.tasks import load_tasks

    task, = load_tasks("arc-agi-1:training/3c9b0459")
    pairs = [{"input": p.input.tolist(), "output": p.output.tolist()} for p in task.train]
    pairs[0]["output"] = [[1, 2], [3]]  # ragged
    test = [p.input.tolist() for p in task.test]
    (tmp_path / "bad.json").write_text(json.dumps({task.id: {"train": pairs, "test": [{"input": g} for g in test]}}))
    write_tiny_checkpoint(tmp_path / "base")
    state = torch.load(next((tmp_path / "base" / "checkpoints").glob("step_*")) / "state.pt", weights_only=True)
    state["model"]["lm_head.weight"][:2] = 0  # PAD and EOS never win: every view decodes a grid
    ids = {"identifiers": ["<blank>", f"{task.id}#0", f"{task.id}#1"], "augmentations": ["", "t0p0123456789", "t1p0123456789"],
           "task_hashes": ["", content_hash(task), content_hash(task)]}
    for name, hashes in (("plain", None), ("hashed", ids)):
        write_tiny_checkpoint(tmp_path / name, state_patch={"model": state["model"]}, ids=hashes)
        out = tmp_path / f"{name}.json"
        r = cli_in_process("predict", "--checkpoint", tmp_path / name, "--tasks", tmp_path / "bad.json", "--out", out,
                           "--skip-bad-tasks", "--no-progress", "--max-steps", "1")
        assert r.returncode == 0, r.stderr
        assert json.loads(out.read_text())[task.id] == [{"attempt_1": g, "attempt_2": g} for g in test], name
        assert "predicted 0 of 1 test inputs" in r.stdout and task.id not in r.stdout, r.stdout
        record = json.loads(out.with_name(f"{name}.predict.json").read_text())
        assert record["views"] == 0 and record["untrained_tasks"] == record["other_content_tasks"] == [], name


def test_candidates_of_an_answer_not_kept_are_not_kept(tmp_path):
    """With no earlier submission (deleted, invalid, or without the task), predict still kept the
    old candidates file's list for a task it gave the fallback answer: score's pass@k then counted
    answers the submission does not hold (pass@1 0.5 beside an official 0/2)."""
    from augment.tasks import load_tasks
    from submission.kaggle import candidates_path, read_candidates, write_candidates
    from submission.vote import Candidate

    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    out = tmp_path / "p" / "sub.json"
    out.parent.mkdir()
    task = load_tasks("arc-agi-1:training/3c9b0459")[0]
    write_candidates(candidates_path(out), {(task.id, 0): [Candidate(task.test[0].output, 5, 0.9)]})
    proc = cli_in_process("predict", "--checkpoint", run, "--tasks", "arc-agi-1:training/3c9b0459+6150a2bd", "--out",
                          out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert not read_candidates(candidates_path(out)).get((task.id, 0))  # none, or an empty list
