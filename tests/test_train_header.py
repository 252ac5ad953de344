"""What `train` says before it starts: the config, the canvas, where its build lives, and the tasks
kept and skipped (one line, the same whether the build is new or cached; the full list in the run)."""

from __future__ import annotations

import json

import pytest

from conftest import SMALL_TASKS, TINY, cli_in_process, sets

BIG = "007bbfb7"  # 9x9 grids: over the 6x6 canvas of TINY
TASKS = SMALL_TASKS.replace("@test", f"+{BIG}@test")


def train(tmp_path, out: str, *extra: str):
    return cli_in_process("train", "--preset", "cpu-quick", "--tasks", TASKS, *sets(TINY), "--build",
                          tmp_path / "built", "--out", tmp_path / out, "--stop-at", "1", "--no-progress", *extra)


def test_header_names_config_build_and_one_skip_line_first_run_and_cached(tmp_path):
    first, cached = train(tmp_path, "a"), train(tmp_path, "b")
    for run, proc in (("a", first), ("b", cached)):
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout.splitlines()
        assert out[0] == f"build: {tmp_path / 'built'} (--build)"
        assert out[1] == (f"train: preset cpu-quick with --set overrides, canvas 6x6, global batch 8; tasks {TASKS}: "
                          "3 kept, 1 skipped")  # a quarter exactly: no warning
        skip_lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "skipping" in line]
        assert skip_lines == [f"skipping 1 of 4 tasks (25%) with a grid larger than the 6x6 canvas: {BIG} (all listed "
                              f"in {tmp_path / run / 'skipped_tasks.txt'})"]
        assert (tmp_path / run / "skipped_tasks.txt").read_text() == f"{BIG}\n"


def test_more_than_a_quarter_skipped_is_said_with_the_setting_that_keeps_them(tmp_path):
    half = f"arc-agi-1:training/3c9b0459+{BIG}@test"
    proc = cli_in_process("train", "--preset", "cpu-quick", "--tasks", half, *sets(TINY), "--build", tmp_path / "b",
                          "--out", tmp_path / "run", "--stop-at", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"tasks {half}: 1 kept, 1 skipped (50%: more than a quarter)" in proc.stdout
    warning = [line for line in proc.stderr.splitlines() if "skipping" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: skipping 1 of 2 tasks (50%)")
    assert warning[0].endswith("--set data.canvas=30 keeps them (or --preset paper, made for GPUs)")


@pytest.mark.parametrize("where", ["README.md", "docs/USAGE.md", "arc-trm --help"])
def test_a_build_step_shown_is_the_build_its_train_uses(where):
    import re
    from pathlib import Path

    from arc_trm.cli import EPILOG

    text = EPILOG if where == "arc-trm --help" else (Path(__file__).resolve().parents[1] / where).read_text()
    lines = [line.split("#")[0] for line in text.splitlines()]
    for i, line in enumerate(lines):
        built = re.search(r"arc-trm build .*--out (\S+)", line)
        if built:
            train = next(line for line in lines[i + 1:] if "arc-trm train" in line)
            assert f"--build {built.group(1)}" in train, f"{where} builds {built.group(1)}; its train uses another"


def test_no_progress_prints_a_plain_line_every_log_interval(tmp_path):
    proc = cli_in_process("train", "--preset", "cpu-quick", "--tasks", SMALL_TASKS, *sets(TINY), "--set",
                          "train.log_every=2", "--build", tmp_path / "built", "--out", tmp_path / "run",
                          "--stop-at", "4", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    steps = [line.split(":")[0] for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert steps == ["step 2/4", "step 4/4"], proc.stdout
    assert "loss " in proc.stdout and "samples/s" in proc.stdout


def test_without_a_terminal_the_bar_gives_way_to_plain_lines_with_an_eta(tmp_path):
    # stderr here is a StringIO, as a log file would be: tqdm's redraws would pile up on one line.
    proc = cli_in_process("train", "--preset", "cpu-quick", "--tasks", SMALL_TASKS, *sets(TINY), "--set",
                          "train.log_every=2", "--build", tmp_path / "built", "--out", tmp_path / "run",
                          "--stop-at", "4")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in lines] == ["step 2/4", "step 4/4"], proc.stdout
    assert all(", ETA " in line for line in lines) and lines[-1].endswith("ETA 0s"), lines
    assert "\r" not in proc.stderr and "step/s" not in proc.stderr


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (44.6, "45s"), (185, "3m05s"), (3599, "59m59s"),
                                           (7620, "2h07m"), (-3, "0s")])
def test_duration_text(seconds, text):
    from augment.console import duration_text

    assert duration_text(seconds) == text


@pytest.mark.parametrize("seconds, text", [(0.4, "0.4s"), (0.01, "<0.1s"), (0, "0.0s"), (-2, "0.0s"), (9.94, "9.9s"),
                                           (9.96, "10s"), (185, "3m05s")])
def test_duration_text_with_tenths_keeps_a_small_duration(seconds, text):
    from augment.console import duration_text

    assert duration_text(seconds, tenths=True) == text


def test_a_log_step_where_no_row_halted_says_so():
    # "halt steps 0.0, exact 0.00" read as a measurement when no row had halted to measure.
    from arc_trm.metrics import halting_text, log_line

    assert halting_text(0.0, 0.0) == "no row halted"
    assert halting_text(0.25, 3.5) == "exact 0.25, halt steps 3.5"
    last = {"step": 1, "loss": 2.5, "exact_accuracy": 0.0, "halt_steps": 0.0, "samples_per_s": 9, "lr": 1e-3}
    assert log_line(last, 4, 3) == "step 1/4: loss 2.500, no row halted, 9 samples/s, lr 0.001, ETA 3s"


def test_the_eta_follows_the_typical_step_not_one_slow_one():
    # The plain line's ETA took a 10-step running mean: on a shared machine it swung from 1m28s to
    # 35m56s between two log lines of one run. A compile or a burst of load now moves it little.
    from arc_trm.metrics import ETA_LAPS, eta_seconds

    steady = [0.1] * 19
    assert eta_seconds(100, steady + [30.0]) == pytest.approx(10.0)  # one 30 s lap (a checkpoint)
    assert eta_seconds(100, steady[:8] + [2.0] * 12) == pytest.approx(200.0)  # a lasting slowdown counts
    assert eta_seconds(0, steady) == 0.0 and ETA_LAPS >= 10


def test_the_eta_times_steps_from_log_step_to_log_step_not_each_step_alone():
    # A log step is the only host sync: on a GPU the 9 steps between return early (0.01 s) and the
    # log step waits for all ten (1 s). The median step then said 0.01 s a step, 11x short.
    from arc_trm.metrics import StepClock

    clock = StepClock(began=0, t=0.0)
    clock.step_done(1, 30.0, synced=False, now=30.0)  # a compile: the laps start after it
    assert clock.eta(100) == pytest.approx(3000.0)  # nothing else known yet
    for step in range(2, 42):
        clock.step_done(step, 0.01 if step % 10 else 0.92, synced=step % 10 == 0, now=30.0 + 0.1 * (step - 1))
    assert clock.eta(100) == pytest.approx(10.0)
    clock.step_done(50, 0.01, synced=True, now=clock.t + 60.0)  # a lap with a checkpoint moves it little
    assert clock.eta(100) == pytest.approx(10.0)


def test_the_deadline_counts_the_device_s_queue_not_each_step_alone():
    # The deadline took twice a running mean of each step's own time. On a GPU the 9 steps between
    # log steps return in 0.01 s and the log step waits 0.91 s for all ten: the mean fell to 0.04 s
    # a step before a log step, where a step takes 0.1 s, and the steps queued since the last sync
    # were not counted at all.
    from arc_trm.metrics import StepClock

    clock, now = StepClock(began=0, t=0.0), 0.0
    for step in range(1, 41):
        synced = step % 10 == 0
        now += 0.91 if synced else 0.01
        clock.step_done(step, 0.91 if synced else 0.01, synced, now=now)
        if step > 10:  # after the first lap: one more step and the checkpoint's margin, 2 steps in all
            queued = 0.1 * (step % 10) - (now - clock.t)  # the steps since the sync the device has not run
            assert clock.seconds_needed(2, now=now) >= 0.2 + queued - 1e-9, step
    assert 0.2 <= clock.seconds_needed(2, now=now) < 0.7  # just synced: nothing queued
    assert clock.mean_step_s() == pytest.approx((4.0 - 0.01) / 39)  # the first step (0.01 s) aside
    on_cpu = StepClock(began=0, t=0.0, queues=False)  # a CPU step has run when it returns: nothing queued
    for step in range(1, 16):
        on_cpu.step_done(step, 0.1, synced=step % 10 == 0, now=0.1 * step)
    assert on_cpu.seconds_needed(2, now=1.5) == pytest.approx(0.2)


def test_a_compiling_first_step_does_not_end_a_phase():
    # The running mean started from the first step, which may compile (30 s), and decayed by 0.9 a
    # step: a phase with less than about 60 s left stopped after its first step, for tens of steps
    # of 0.1 s. The first step now stands alone, and the caller's measured step time stands in for it.
    from arc_trm.metrics import StepClock

    clock = StepClock(began=100, t=0.0, queues=False)
    clock.step_done(101, 30.0, synced=False, now=30.0)
    assert clock.seconds_needed(2, now=30.0) == pytest.approx(60.0)  # no other measure: the first's time
    clock.step_done(102, 0.1, synced=False, now=30.1)
    assert clock.seconds_needed(2, now=30.1) == pytest.approx(0.2)
    assert clock.mean_step_s() == pytest.approx(0.1)
    measured = StepClock(began=100, t=0.0, queues=False, prior_s=0.1)  # ttt's probe measured 0.1 s a step
    measured.step_done(101, 30.0, synced=False, now=30.0)
    assert measured.seconds_needed(2, now=30.0) == pytest.approx(0.2)


def test_the_log_line_s_eta_counts_the_wait_at_the_log_step(tmp_path, monkeypatch):
    # The wait for the device lands on the log step (here 1 s, in the summary's sync): the ETA must
    # count it, at least 0.5 s for each of the steps left, where each step alone took milliseconds.
    import re
    import time

    from arc_trm.metrics import LogWindow

    summary = LogWindow.summary
    monkeypatch.setattr(LogWindow, "summary", lambda self, d: (time.sleep(1.0), summary(self, d))[1])
    proc = cli_in_process("train", "--preset", "cpu-quick", "--tasks", SMALL_TASKS, *sets(TINY), "--build",
                          tmp_path / "built", "--out", tmp_path / "run", "--stop-at", "6", "--no-progress",
                          "--set", "train.log_every=2")
    assert proc.returncode == 0, proc.stderr
    etas = re.findall(r"^step (\d+)/6: .*, ETA (\d+)s$", proc.stdout, re.MULTILINE)
    assert [step for step, _ in etas] == ["2", "4", "6"], proc.stdout
    assert int(etas[1][1]) >= 1  # 2 steps left at >= 0.5 s each


def test_the_bar_and_the_final_line_say_no_row_halted_where_none_did(tmp_path, monkeypatch):
    # The bar's postfix (exact=0.00, steps=0.0) and the final line (exact_accuracy 0, halt_steps 0)
    # read as measurements at a step where no row halted (none does before halt_max_steps, 3).
    import arc_trm.train
    import augment.console

    for module in (arc_trm.train, augment.console):  # the bar drawn into the captured stderr
        monkeypatch.setattr(module, "bar_shown", lambda enabled: enabled)
    proc = cli_in_process("train", "--preset", "cpu-quick", "--tasks", SMALL_TASKS, *sets(TINY), "--build",
                          tmp_path / "built", "--out", tmp_path / "run", "--stop-at", "2")
    assert proc.returncode == 0, proc.stderr
    summary = next(line for line in proc.stdout.splitlines() if line.startswith("trained to step 2: "))
    assert "no row halted" in summary and "halt" not in summary.replace("no row halted", ""), summary
    bar = [line for line in proc.stderr.split("\r") if line.startswith("train:")]
    assert bar and "no row halted" in bar[-1] and "exact" not in bar[-1], bar[-1:]
    # metrics.jsonl stores no halting figures there (a stored 0.0 was drawn as a measured 0 on curves.png)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all("loss" in r for r in rows)
    assert not any("exact_accuracy" in r or "halt_steps" in r for r in rows), rows


def test_a_resumed_run_without_its_config_json_continues_with_the_config_beside_its_checkpoint(tmp_path):
    """A run copied back without RUN/config.json (only checkpoints/ synced) resumed with the
    preset's config and tasks: arc-agi-2 built at the preset's size before a model mismatch, or a
    silent change of batch and learning rate where the model matched."""
    from arc_trm.cli import command_parser
    from arc_trm.train_cli import config_origin, resolve_config
    from conftest import write_tiny_checkpoint

    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    (run / "config.json").unlink()
    args = command_parser("train").parse_args(["--out", str(run), "--resume", "--preset", "cpu-quick"])
    cfg = resolve_config(args)
    assert (cfg.model.hidden_size, cfg.data.tasks, cfg.train.global_batch_size) == (32, SMALL_TASKS, 8)
    assert config_origin(args) == "the run's saved config (resumed)"


def test_a_resumed_run_s_header_names_the_set_overrides_applied_over_its_saved_config(tmp_path):
    """`train --resume --set train.max_steps=9` ran with the override, but the header said only
    "the run's saved config (resumed)", as if the saved config ran unchanged."""
    from arc_trm.cli import command_parser
    from arc_trm.train_cli import config_origin, resolve_config
    from conftest import write_tiny_checkpoint

    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    args = command_parser("train").parse_args(["--out", str(run), "--resume", "--set", "train.max_steps=9"])
    assert resolve_config(args).train.max_steps == 9
    assert config_origin(args) == "the run's saved config (resumed) with --set overrides"


def test_resume_into_a_folder_with_no_run_says_a_new_run_starts(tmp_path):
    """A pre-empted job run again with --resume before its first start wrote anything (killed in the
    build) starts a new run, as it should; the header said only 'preset cpu-quick', as if --resume
    had not been given."""
    from arc_trm.cli import command_parser
    from arc_trm.train_cli import config_origin

    (tmp_path / "run").mkdir()
    args = command_parser("train").parse_args(["--out", str(tmp_path / "run"), "--resume", "--preset", "cpu-quick"])
    assert config_origin(args) == f"preset cpu-quick (--resume: {tmp_path / 'run'} holds no run yet, so a new one starts)"


@pytest.mark.slow  # the shared trained run (a train process) when no earlier test made it
def test_resume_with_a_stop_at_or_before_the_run_s_step_says_so_and_names_its_checkpoint(tiny_run):
    """--stop-at at or below the step a run is at took no step and ended with "checkpoint: None"."""
    for stop in ("2", "3"):  # tiny_run is at step 3
        proc = cli_in_process("train", "--out", tiny_run, "--resume", "--set", "train.max_steps=10", "--stop-at", stop,
                              "--no-progress")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[-3] == f"nothing to train: {tiny_run} is already at step 3, at or past the stop asked for, step {stop}"
        assert lines[-2] == f"checkpoint: {tiny_run / 'checkpoints' / 'step_0000003'}"
        assert lines[-1].startswith("stopped at step 3 of 10 (--stop-at); continue with: "), lines[-1]


def test_a_stop_at_before_the_end_says_how_to_continue(tmp_path):
    """--stop-at stops 'as if pre-empted' (its help): the last line now says how to continue, as a
    signal's does; a run that reached its last step says nothing of the kind."""
    def run(*extra: str):
        proc = cli_in_process("train", "--preset", "cpu-quick", "--tasks", SMALL_TASKS, *sets(TINY), "--set",
                              "train.max_steps=4", "--build", tmp_path / "built", "--out", tmp_path / "run",
                              "--no-progress", *extra)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()[-1]
    last = run("--stop-at", "2")
    assert last.startswith("stopped at step 2 of 4 (--stop-at)"), last
    assert last.endswith(f"--out {tmp_path / 'run'} --resume"), last
    assert run("--resume").startswith("checkpoint: "), "the finished run"


def test_a_build_made_with_skip_bad_tasks_is_opened_by_train_build(tmp_path):
    """Before: `train --build B` of a build made by `build --skip-bad-tasks` loaded the tasks strictly
    and stopped at the bad task the build had left out."""
    (f := tmp_path / "f").mkdir()
    (f / "good1.json").write_text(json.dumps({"train": [{"input": [[1, 2]], "output": [[2, 1]]}],
                                              "test": [{"input": [[3, 4]], "output": [[4, 3]]}]}))
    (f / "bad1.json").write_text(json.dumps({"train": [{"input": [[1, 2], [3]], "output": [[1]]}],
                                             "test": [{"input": [[1]]}]}))
    build = ("build", "--tasks", f, "--augmentations", "4", "--canvas", "6", "--workers", "1", "--no-progress")
    assert cli_in_process(*build, "--out", tmp_path / "B", "--skip-bad-tasks").returncode == 0
    assert json.loads((tmp_path / "B" / "metadata.json").read_text())["invalid"] == ["bad1"]
    assert "up to date (reused" in cli_in_process(*build, "--out", tmp_path / "B", "--skip-bad-tasks").stdout

    def train_on(b: str, out: str):
        return cli_in_process("train", "--preset", "cpu-quick", "--tasks", f, *sets(TINY), "--build", tmp_path / b,
                              "--out", tmp_path / out, "--stop-at", "1", "--no-progress")

    proc = train_on("B", "run")
    assert proc.returncode == 0, proc.stderr
    assert f"tasks {f}: 1 kept, 0 skipped; 1 invalid left out by the build's --skip-bad-tasks: bad1" in proc.stdout
    # A new build still refuses a bad task, and so does a build that did not leave it out (made before it came).
    proc = train_on("new", "run2")
    assert proc.returncode == 2 and "bad1.json: task 'bad1': train[0].input: ragged grid" in proc.stderr
    (f / "bad1.json").rename(tmp_path / "bad1.json")
    assert cli_in_process(*build, "--out", tmp_path / "strict").returncode == 0
    (tmp_path / "bad1.json").rename(f / "bad1.json")
    proc = train_on("strict", "run3")
    assert proc.returncode == 2 and "ragged grid" in proc.stderr


@pytest.mark.parametrize("device, extra", [("cpu", []), ("auto", ["--set", "train.device=cpu"])])
def test_the_default_preset_follows_the_device_asked_for(tmp_path, monkeypatch, device, extra):
    """On a GPU machine `--device cpu` got the paper preset (chosen by torch.cuda.is_available())
    without the warning that it is made for GPUs (given only for a --preset named); so did
    `--set train.device=cpu`, and `arc-trm config` showed the paper preset for it."""
    import torch

    import arc_trm.train_cli as train_cli
    from augment.errors import InputError

    def not_trained(cfg, out, options):  # what train() was handed, without training
        raise InputError(f"stub: {options.preset}")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(train_cli, "train", not_trained)
    proc = cli_in_process("train", "--device", device, "--tasks", SMALL_TASKS, "--out", tmp_path / "run",
                          "--build", tmp_path / "b", "--no-progress", *extra)
    assert "stub: preset cpu-quick" in proc.stderr, proc.stderr
    assert "warning: the paper preset is made for GPUs" not in proc.stderr, proc.stderr
    shown = cli_in_process("config", "--set", "train.device=cpu")
    assert shown.returncode == 0 and "data.canvas = 10" in shown.stdout, shown.stdout  # cpu-quick's canvas


def test_default_preset_reads_the_last_device_asked_for(monkeypatch) -> None:
    import torch

    from arc_trm.overrides import default_preset
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_preset("train") == "paper" and default_preset("ttt", ["lr=1e-4"], "auto") == "kaggle"
    assert default_preset("train", ["train.device=cpu"], "cuda") == "cpu-quick"  # --set wins, as in the config
    assert default_preset("ttt", ["device = cuda:1"], "cpu") == "kaggle"
    assert default_preset("train", ["no_such_key=1", "device=cpu"]) == "cpu-quick"  # a bad key: refused later
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_preset("train", ["train.device=auto"]) == "cpu-quick"


@pytest.mark.slow  # the shared trained run (a train process) when no earlier test made it
def test_a_resume_whose_set_fails_leaves_config_json_as_it_was(tiny_run):
    """A `--resume --set` that failed before its first step (a batch larger than an epoch with
    drop_last, or out of memory) had already rewritten RUN/config.json, so the next plain --resume
    failed the same way. The new config is written with the first checkpoint made under it."""
    config = tiny_run / "config.json"
    before = config.read_bytes()
    proc = cli_in_process("train", "--out", tiny_run, "--resume", "--no-progress", "--set", "train.max_steps=8",
                          "--set", "train.global_batch_size=100000", "--set", "train.drop_last=true")
    assert proc.returncode != 0 and "drop_last" in proc.stderr, proc.stdout + proc.stderr
    assert config.read_bytes() == before
    proc = cli_in_process("train", "--out", tiny_run, "--resume", "--no-progress", "--set", "train.max_steps=4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(config.read_text())["train"]["max_steps"] == 4
