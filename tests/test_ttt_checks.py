"""`arc-trm ttt`'s checks before anything is written: the --checkpoint it starts from (present,
complete, readable, a config this arc-trm reads) and the --set overrides its weights allow, and
--force never moving aside the checkpoint the run starts from."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from arc_trm.ttt_plan import TTTOptions, check_checkpoint
from augment.errors import InputError

from conftest import SMALL_TASKS, TINY, cli_in_process, sets, write_tiny_checkpoint


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def ttt(out: Path, checkpoint: Path, *extra: str):
    return cli_in_process("ttt", "--tasks", SMALL_TASKS, "--out", out, "--checkpoint", checkpoint, "--budget", "60s",
                          "--preset", "cpu-quick", "--no-progress", *extra)


def refused(proc, *words: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("arc-trm ttt: error:"), proc.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def corrupt(step: Path) -> None:
    """state.pt replaced by bytes of the same size (the manifest's size check alone passes)."""
    state = step / "state.pt"
    state.write_bytes(b"\0" * state.stat().st_size)


def unreadable(step: Path) -> None:
    """state.pt as a folder: open() fails, even for root."""
    (step / "state.pt").unlink()
    (step / "state.pt").mkdir()


@pytest.mark.parametrize("damage, words", [
    (None, ("no such", "missing")),
    ("empty", ("no checkpoint found",)),
    (corrupt, ("state.pt", "corrupt")),
    (unreadable, ("state.pt",)),
])
def test_a_bad_checkpoint_is_refused_before_the_run_folder_exists(tmp_path, damage, words):
    checkpoint = tmp_path / "pre"
    if damage == "empty":
        checkpoint.mkdir()
        (checkpoint / "notes.txt").write_text("not a checkpoint")
    elif damage is not None:
        checkpoint = write_tiny_checkpoint(checkpoint)  # the step folder: `latest` would skip a broken one
        damage(checkpoint)
    out = tmp_path / "run"
    line = refused(ttt(out, checkpoint))
    assert any(w in line for w in words), line
    assert not out.exists(), "the refused run created its folder"


@pytest.mark.parametrize("flag", ["--checkpoint", "--submission"])
def test_an_empty_checkpoint_or_submission_is_refused_not_read_as_left_out(tmp_path, flag):
    """`--checkpoint "$CKPT"` with the variable unset trained from scratch without a word (hours of a
    Kaggle budget on an untrained model), and an empty --submission left the answers only in RUN
    (the check: arc_trm.cli.empty_value_line, for every command)."""
    pre = write_tiny_checkpoint(tmp_path / "pre")
    out = tmp_path / "run"
    proc = ttt(out, pre, flag, "") if flag == "--submission" else ttt(out, "")  # type: ignore[arg-type]
    assert refused(proc) == f"arc-trm ttt: error: {flag} is empty; give a value, or leave it out"
    assert not out.exists()


@pytest.mark.parametrize("override, key", [("model.hidden_size=64", "--set model.hidden_size:"),
                                           ("data.canvas=10", "--set data.canvas:"),
                                           ("hidden_size=64", "--set model.hidden_size:"),
                                           ("model.num_heads=4", "--set model.num_heads:")])
def test_a_set_that_does_not_fit_the_weights_is_refused_before_the_run_folder_exists(tmp_path, override, key):
    pre = write_tiny_checkpoint(tmp_path / "pre")
    out = tmp_path / "run"
    refused(ttt(out, pre, "--set", override), key, "fixed by the weights")
    assert not out.exists()


def test_a_set_that_changes_only_how_the_model_runs_is_accepted(tmp_path):
    """The notebook passes model.forward_dtype=float32 on a T4 whatever dtype the checkpoint trained in:
    the weights are the same (they were refused, so a T4 never trained from a bf16 checkpoint)."""
    pre = write_tiny_checkpoint(tmp_path / "pre")  # float32
    for override in ("model.forward_dtype=bfloat16", "model.halt_max_steps=2", "model.H_cycles=1"):
        options = TTTOptions(tasks=SMALL_TASKS, out=tmp_path / "run", checkpoint=str(pre), overrides=(override,))
        assert check_checkpoint(options) == pre
    with pytest.raises(InputError, match="fixed by the weights"):
        check_checkpoint(TTTOptions(tasks=SMALL_TASKS, out=tmp_path / "run", checkpoint=str(pre),
                                    overrides=("model.forward_dtype=bfloat16", "model.L_layers=3")))


def test_force_never_moves_aside_the_checkpoint_the_run_starts_from(tmp_path):
    """--force --out RUN --checkpoint RUN/checkpoints/step_N: the checkpoint would go aside with the old
    run before it is loaded; refused with RUN untouched and nothing moved."""
    run = tmp_path / "run"
    step = write_tiny_checkpoint(run)
    before = tree(tmp_path)
    for checkpoint in (step, run):
        refused(ttt(run, checkpoint, "--force"), "--force", "inside")
        assert tree(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("record", ['{"checkpoint": 5, "tasks": []}', '[1]'])
def test_a_run_record_of_another_shape_is_one_line(tmp_path, record):
    """Before: ttt_run.json with "checkpoint": 5 (an edit) stopped `ttt --resume` with a TypeError
    traceback from Path(5); a record that is no object was read as "trained from scratch"."""
    from arc_trm.ttt_plan import RUN_RECORD, with_recorded_checkpoint

    (tmp_path / RUN_RECORD).write_text(record)
    with pytest.raises(InputError, match=rf"^{tmp_path / RUN_RECORD}: expected an object whose \"checkpoint\" is a "
                                         "path or null; pass --checkpoint$"):
        with_recorded_checkpoint(TTTOptions(tasks=SMALL_TASKS, out=tmp_path, resume=True))


def test_resume_without_checkpoint_continues_from_the_one_the_run_started_from(tmp_path):
    """`ttt --resume` without --checkpoint said only that --build RUN/build held another canvas. The run
    records the checkpoint it started from and resume takes it; a run without that record, or whose
    checkpoint is gone, says what is missing in one line."""
    import json
    import shutil

    pre = write_tiny_checkpoint(tmp_path / "pre")
    out = tmp_path / "run"
    first = ttt(out, pre, "--set", "train.max_steps=2", "--batch-size", "8")
    assert first.returncode == 0, first.stderr
    resumed = cli_in_process("ttt", "--tasks", SMALL_TASKS, "--out", out, "--resume", "--budget", "60s",
                             "--preset", "cpu-quick", "--no-progress", "--set", "train.max_steps=3")
    assert resumed.returncode == 0, resumed.stderr
    # It said "resuming from the checkpoint the run started from: PRE", then "resumed from step 2 (RUN/...)".
    assert (f"--resume without --checkpoint: the run started from {pre} (recorded in {out / 'ttt_run.json'}); it "
            "continues from its own latest checkpoint") in resumed.stdout
    assert f"resumed from step 2 ({out / 'checkpoints'}" in resumed.stdout, resumed.stdout
    assert json.loads((out / "config.json").read_text())["model"]["hidden_size"] == 32  # the checkpoint's model

    shutil.rmtree(tmp_path / "pre")
    line = refused(cli_in_process("ttt", "--tasks", SMALL_TASKS, "--out", out, "--resume", "--budget", "60s",
                                  "--preset", "cpu-quick", "--no-progress"), str(pre), "--checkpoint")
    assert "--build" not in line
    (out / "ttt_run.json").unlink()  # a run from before the record: its config tells another model
    line = refused(cli_in_process("ttt", "--tasks", SMALL_TASKS, "--out", out, "--resume", "--budget", "60s",
                                  "--preset", "cpu-quick", "--no-progress"), "--checkpoint", "hidden_size 32")
    assert "--build" not in line


def test_resume_without_the_runs_data_settings_names_them_not_build(tmp_path):
    """`ttt --resume` left without the run's `--set data.augmentations=4` said '--build RUN/build: holds
    a build of ... pass ... another --build', an option ttt does not have. It names the setting."""
    out = tmp_path / "run"
    common = ("--tasks", SMALL_TASKS, "--out", out, "--budget", "60s", "--preset", "cpu-quick", "--no-progress",
              "--set", "train.max_steps=1", "--batch-size", "8")
    first = cli_in_process("ttt", *common, "--set", "data.augmentations=4")
    assert first.returncode == 0, first.stderr
    line = refused(cli_in_process("ttt", *common, "--resume"), "data.augmentations 4", "--set")
    assert "--build" not in line


def test_a_run_moved_to_another_folder_resumes_on_its_own_build(tmp_path):
    """A ttt run renamed or copied elsewhere (off /kaggle/working, say) was refused on --resume: its
    build recorded the old folder's copy of the tasks ('--build RUN/build: holds a build of
    [OLD/ttt_challenges.json@test] ...'). The same tasks under another path are the same build."""
    first, moved = tmp_path / "run", tmp_path / "moved"
    common = ("--tasks", SMALL_TASKS, "--budget", "60s", "--preset", "cpu-quick", "--no-progress",
              "--set", "train.max_steps=1", "--batch-size", "8")
    assert cli_in_process("ttt", *common, "--out", first).returncode == 0
    first.rename(moved)
    built = (moved / "build" / "metadata.json").read_bytes()
    again = cli_in_process("ttt", *common, "--out", moved, "--resume")
    assert again.returncode == 0, again.stderr
    assert (moved / "build" / "metadata.json").read_bytes() == built, "the build was made again"


def test_the_recorded_checkpoint_is_named_once_under_torchrun(tmp_path, monkeypatch, capsys):
    from arc_trm.ttt_plan import record_start, with_recorded_checkpoint

    pre = write_tiny_checkpoint(tmp_path / "pre")
    out = tmp_path / "run"
    out.mkdir()
    record_start(out, pre, [])
    options = TTTOptions(tasks=SMALL_TASKS, out=out, resume=True)
    for rank, lines in (("1", 0), ("0", 1)):
        monkeypatch.setenv("RANK", rank)
        assert with_recorded_checkpoint(options).checkpoint == str(pre.resolve())
        assert capsys.readouterr().out.count("--resume without --checkpoint: the run started from") == lines


def test_a_train_run_as_out_is_refused_without_advising_resume_and_resume_writes_nothing(tmp_path):
    """`ttt --out` a `train` run folder said 'continue it with --resume'; ttt --resume then replaced
    the run's predicted submission.json with a fallback, wrote its build and plan into the run and
    failed on the checkpoint's puzzle rows."""
    run = tmp_path / "trained"
    write_tiny_checkpoint(run)
    (run / "submission.json").write_text('{"kept": "as it was"}')
    before = tree(run)
    line = refused(cli_in_process("ttt", "--tasks", SMALL_TASKS, "--out", run, "--budget", "60s", "--no-progress"),
                   str(run), "holds a trained run", "another --out", f"--checkpoint {run}")
    assert "--resume" not in line, line
    refused(cli_in_process("ttt", "--tasks", SMALL_TASKS, "--out", run, "--budget", "60s", "--no-progress",
                           "--resume"), str(run), "holds a trained run", "another --out")
    assert tree(run) == before, "nothing written into the train run"


def test_an_imported_run_as_out_is_named_an_imported_run_and_help_names_exports(tmp_path):
    """`ttt --out` a folder `import-checkpoint` wrote was refused as "a train run"; and `--help`
    for --checkpoint did not say that an inference export (`arc-trm export`) is accepted."""
    import torch

    from arc_trm.cli import command_parser
    from test_import_checkpoint import FIXTURE, write_inputs

    paths = write_inputs(tmp_path, torch.load(FIXTURE, weights_only=True))
    run = tmp_path / "imported"
    res = cli_in_process("import-checkpoint", paths["ckpt"], "--identifiers", paths["ids"], "--out", run,
                         "--config", paths["config"], "--canvas", "6")
    assert res.returncode == 0, res.stderr
    before = tree(run)
    line = refused(cli_in_process("ttt", "--tasks", SMALL_TASKS, "--out", run, "--budget", "60s", "--no-progress"),
                   str(run), "holds an imported run (import-checkpoint)", "import.json", f"--checkpoint {run}")
    assert "train run" not in line and "trained run" not in line, line
    assert tree(run) == before
    checkpoint, = [a for a in command_parser("ttt")._actions if "--checkpoint" in a.option_strings]
    assert "imported" in checkpoint.help and "export" in checkpoint.help, checkpoint.help


def test_one_task_s_lines_are_in_the_singular(tmp_path, capsys):
    """ttt on one task said 'fallback submission written to ... (1 tasks)', and predict or ttt on one
    changed task '1 tasks differ in content from the tasks ...'."""
    from arc_trm.ttt import TTTOptions, write_fallback
    from arc_trm.views import other_content_line
    from augment.tasks import load_tasks

    task = load_tasks("arc-agi-1:training/3c9b0459@test")
    write_fallback(TTTOptions(tasks="", out=tmp_path / "run"), task)
    sub = tmp_path / "run" / "submission.json"
    assert capsys.readouterr().out == f"fallback submission written to {sub} (1 task)\n"
    assert other_content_line(["3c9b0459"], "x").startswith("1 task differs in content from the tasks ")


def test_ttt_runs_on_the_device_its_set_names_and_refuses_one_this_machine_lacks(tmp_path, monkeypatch):
    """ttt set up on 'auto' whatever train.device said, while train() inside it used train.device:
    `--set train.device=cuda` on a machine without one ended in a traceback after the build, and
    on a GPU machine `train.device=cpu` trained on the CPU but predicted on the GPU."""
    import torch

    from arc_trm.ttt_phases import run_device
    from arc_trm.ttt_plan import check_options

    proc = cli_in_process("ttt", "--tasks", SMALL_TASKS, "--out", tmp_path / "run", "--budget", "60s",
                          "--no-progress", "--set", "train.device=cuda:7")
    refused(proc, "device 'cuda:7' is not available here")
    # refused before --out is claimed (it held the fallback and a run record, so the corrected
    # command met "already holds a run"); torch loads this early only for a device named
    assert not (tmp_path / "run").exists()
    options = TTTOptions(tasks=SMALL_TASKS, out=str(tmp_path / "other"))
    assert run_device(dataclasses.replace(options, overrides=("train.device=cpu",))) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # Without --preset a --set was checked against the GPU's kaggle preset alone, whose 8 heads make
    # hidden_size 40 odd per head: refused, where the cpu-quick preset that runs here takes it.
    odd_on_gpu = dataclasses.replace(options, overrides=("model.hidden_size=40",))
    assert check_options(odd_on_gpu) == 8 * 3600 and run_device(odd_on_gpu) == "auto"


def test_an_embedding_fraction_without_a_checkpoint_is_refused(tmp_path):
    """It was accepted and silently unused: from scratch no step trains only the embeddings."""
    out = tmp_path / "ttt"
    proc = cli_in_process("ttt", "--tasks", SMALL_TASKS, "--budget", "1m", "--out", out, "--embedding-fraction", "0.5")
    assert refused(proc) == ("arc-trm ttt: error: --embedding-fraction 0.5 applies with --checkpoint only (a model "
                             "from scratch trains all its weights from the first step)")
    assert not out.exists()


def test_a_submission_holding_other_tasks_is_refused_before_any_write(tmp_path):
    """ttt --submission onto a submission of other tasks replaced it with the fallback of its own."""
    sub = tmp_path / "submission.json"
    sub.write_text('{"other": [{"attempt_1": [[1]], "attempt_2": [[2]]}]}')
    before, out = sub.read_bytes(), tmp_path / "ttt"
    proc = cli_in_process("ttt", "--tasks", SMALL_TASKS, "--budget", "1m", "--out", out, "--submission", sub)
    assert refused(proc) == (f"arc-trm ttt: error: --submission {sub}: holds answers for 1 task this run does not "
                             "answer (other), which the new file would drop: give another --submission, or move it aside")
    assert sub.read_bytes() == before and not out.exists()


def test_a_task_file_given_as_submission_is_named_as_not_a_submission(tmp_path):
    """--submission onto a challenges file holding one task more than the run answers was refused as
    "holds answers for 1 task this run does not answer": a task file's ids were taken for answers."""
    from augment.tasks import load_tasks

    tasks = load_tasks("arc-agi-1:training/3c9b0459+6150a2bd+74dd1130")
    challenges = tmp_path / "challenges.json"
    challenges.write_text(json.dumps({t.id: t.to_json(with_solutions=False) for t in tasks}))
    proc = cli_in_process("ttt", "--tasks", "arc-agi-1:training/3c9b0459+6150a2bd@test", "--budget", "1m",
                          "--out", tmp_path / "ttt", "--submission", challenges)
    assert "not a submission" in refused(proc) and "holds answers" not in proc.stderr, proc.stderr
    assert not (tmp_path / "ttt").exists()


def test_an_out_holding_a_build_but_no_run_is_refused_before_any_write(tmp_path):
    """ttt builds in RUN/build: a user's build there was met only after the fallback and the run
    record were written, with a line naming --build, a flag ttt does not have."""
    out = tmp_path / "v"
    (out / "build").mkdir(parents=True)
    (out / "build" / "x.txt").write_text("mine")
    proc = cli_in_process("ttt", "--tasks", SMALL_TASKS, "--out", out, "--budget", "60s", "--no-progress")
    line = refused(proc, f"--out {out} holds a build/ folder but no run")
    assert "--build" not in line
    assert sorted(p.name for p in out.iterdir()) == ["build"]


def test_resume_with_other_content_under_the_same_ids_is_refused_before_any_write(tmp_path):
    """The ids matched, so the resume rewrote the run's task copy and build, then failed on the
    checkpoint's rows, its submission answering the old test inputs."""
    from augment.tasks import load_tasks

    tasks = {t.id: t.to_json(with_solutions=False) for t in load_tasks(SMALL_TASKS)}
    source = tmp_path / "c_challenges.json"
    source.write_text(json.dumps(tasks))
    out = tmp_path / "run"
    args = ("ttt", "--tasks", source, "--out", out, "--budget", "60s", "--no-progress", *sets(TINY + ["train.max_steps=1"]))
    assert cli_in_process(*args).returncode == 0
    first = next(iter(tasks))
    tasks[first]["test"][0]["input"] = [[1, 2], [3, 4]]
    source.write_text(json.dumps(tasks))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    line = refused(cli_in_process(*args, "--resume"), f"the run in {out} was trained on other content under 1 task id ({first})")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, line


def test_the_fallback_over_an_earlier_submission_drops_its_candidates(tmp_path):
    """ttt --submission S over an earlier run's S wrote the fallback but kept S.candidates.json:
    a --per-task merge then kept a task's old candidates beside its fallback answer."""
    from arc_trm.ttt import write_fallback
    from augment.tasks import load_tasks
    from submission.kaggle import candidates_path, fallback_submission, load_submission, write_candidates
    from submission.vote import Candidate

    tasks = load_tasks(SMALL_TASKS)
    sub = tmp_path / "ext" / "sub.json"
    sub.parent.mkdir()
    sub.write_text(json.dumps(fallback_submission(tasks)))
    write_candidates(candidates_path(sub), {(tasks[0].id, 0): [Candidate(tasks[0].test[0].input, 3, 0.9)]})
    write_fallback(TTTOptions(tasks=SMALL_TASKS, out=str(tmp_path / "run"), submission=str(sub)), tasks)
    assert load_submission(sub) == fallback_submission(tasks) and not candidates_path(sub).exists()
