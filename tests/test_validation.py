"""Bad options, config fields, output paths and task files are refused in one line before any
work; submissions carry their own record; build folders are named by everything that defines them."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from arc_trm import cli
from arc_trm.config import preset
from arc_trm.overrides import apply_overrides
from arc_trm.config_rules import check_device_available
from arc_trm.builds import default_build_dir
from augment.tasks import load_tasks
from conftest import SMALL_TASKS, TINY, cli_in_process, run_cli, sets, write_tiny_checkpoint


def one_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


# ---------------------------------------------------------------------------------------------- config

BAD_SETS = {  # the list, and the override rules
    "train.global_batch_size=0": "global_batch_size", "train.log_every=0": "log_every",
    "train.checkpoint_every=0": "checkpoint_every", "model.num_heads=0": "num_heads",
    "train.device=tpu": "tpu", "train.device=cuda": "not available here", "train.max_steps=-1": "max_steps",
    "train.ema_rate=1.5": "ema_rate", "model.total_len=5": "total_len", "model.to_dict=1": "to_dict",
    "no_such_key=1": "no_such_key", "model.hidden_size=1.5": "integer", "train.lr=nan": "lr",
    "train.eval_views=0": "eval_views", "train.compile=maybe": "compile must be one of", "data.canvas=0": "canvas",
    "train.token_loss=crossentropy": "token_loss must be one of",
    # a vocabulary short of ARC's 12 tokens passed, and the first step's embedding ended in an IndexError
    "model.vocab_size=5": "model.vocab_size must be an integer >= 12 (PAD, EOS and 10 colours), got 5",
    # set by the run over any --set: both were accepted and silently replaced
    "model.seq_len=64": "model.seq_len follows data.canvas (its square): set data.canvas",
    "model.num_puzzle_ids=7": "model.num_puzzle_ids follows the build",
    "data.augmentations=2903041": "data.augmentations must be an integer from 1 to 2903040",
}


@pytest.mark.parametrize("override", sorted(BAD_SETS))
def test_train_refuses_a_bad_set_in_one_line_before_any_work(override, tmp_path):
    out = tmp_path / "run"
    proc = cli_in_process("train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--out", out, "--build",
                          tmp_path / "build", "--no-progress", *sets(TINY + [override]))
    assert BAD_SETS[override] in one_error_line(proc)
    assert not out.exists() and not (tmp_path / "build").exists()


def test_a_device_this_machine_lacks_is_named_with_the_ones_it_has():
    check_device_available("cpu")
    with pytest.raises(ValueError, match=r"'cuda:99' is not available here; this machine has: auto, cpu"):
        check_device_available("cuda:99")
    with pytest.raises(ValueError, match="'tpu' is not available"):
        check_device_available("tpu")


def test_good_overrides_still_apply():
    cfg = apply_overrides(preset("cpu-quick"), ["max_steps=1e3", "lr=3e-4", "compile=false", "device=cpu",
                                                "model.halt_max_steps=1"])
    assert (cfg.train.max_steps, cfg.train.lr, cfg.train.compile, cfg.model.halt_max_steps) == (1000, 3e-4, "off", 1)


def test_training_with_halt_max_steps_1_works(tmp_path, small_build):
    proc = run_cli("train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--out", tmp_path / "run", "--build",
                   small_build, "--no-progress", *sets(TINY + ["model.halt_max_steps=1", "train.max_steps=2"]))
    assert proc.returncode == 0, proc.stderr[-1500:]


# ---------------------------------------------------------------------------------------------- predict

@pytest.fixture
def checkpoint(tmp_path) -> Path:
    write_tiny_checkpoint(tmp_path / "run")
    return tmp_path / "run"


def predict_args(run: Path, out: Path | str, *extra: str) -> list:
    return ["predict", "--checkpoint", run, "--tasks", SMALL_TASKS, "--out", out, "--no-progress", *extra]


@pytest.mark.parametrize("extra, expect", [
    (["--batch-size", "0"], "--batch-size"), (["--batch-size", "-1"], "--batch-size"),
    (["--views", "-1"], "--views"), (["--max-steps", "-3"], "--max-steps"),
    (["--device", "cuda"], "this machine has: auto, cpu"), (["--device", "tpu"], "tpu")])
def test_predict_refuses_bad_numbers_and_devices_in_one_line(checkpoint, tmp_path, extra, expect):
    proc = cli_in_process(*predict_args(checkpoint, tmp_path / "sub.json", *extra))
    assert expect in one_error_line(proc)
    assert not (tmp_path / "sub.json").exists()


@pytest.mark.parametrize("where, expect", [("dir", "is a directory"), ("missing", "does not exist"),
                                           ("unwritable", "cannot write")])
def test_predict_checks_its_output_path_before_inference(checkpoint, tmp_path, where, expect):
    if where == "unwritable" and os.geteuid() == 0:
        out = Path("/proc/sub.json")  # root writes anywhere chmod allows none; /proc takes no files
    else:
        out = {"dir": tmp_path, "missing": tmp_path / "no" / "sub.json", "unwritable": tmp_path / "ro" / "sub.json"}[where]
        if where == "unwritable":
            out.parent.mkdir()
            out.parent.chmod(0o500)
    proc = run_cli(*predict_args(checkpoint, out), timeout=60)
    line = one_error_line(proc)
    assert expect in line and str(out) in line
    assert "predicted" not in proc.stdout  # refused before inference


@pytest.mark.slow
def test_each_submission_has_its_own_record_and_scores_from_any_cwd(checkpoint, tmp_path):
    tasks = load_tasks(SMALL_TASKS)
    data = tmp_path / "data"
    data.mkdir()
    (data / "x_challenges.json").write_text(json.dumps({t.id: t.to_json(False) for t in tasks}))
    (data / "x_solutions.json").write_text(json.dumps({t.id: [p.output.tolist() for p in t.test] for t in tasks}))
    subs = tmp_path / "subs"
    subs.mkdir()
    for name, views in (("a", "1"), ("b", "2")):
        proc = run_cli("predict", "--checkpoint", checkpoint.resolve(), "--tasks", "data/x_challenges.json",
                       "--out", f"subs/{name}.json", "--views", views, "--no-progress", timeout=60, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    a, b = (json.loads((subs / f"{n}.predict.json").read_text()) for n in "ab")
    assert a["submission"] == "a.json" and b["submission"] == "b.json" and a["views"] != b["views"]
    assert Path(a["checkpoint"]).is_absolute() and Path(a["tasks"]).is_absolute()
    for name in "ab":  # from another cwd, with no --tasks: the record says where the tasks are
        proc = run_cli("score", subs / f"{name}.json", timeout=60, cwd="/")
        assert proc.returncode == 0 and "score" in proc.stdout.lower(), proc.stderr
    proc = run_cli("report", subs, "--submission", subs / "a.json", timeout=60, cwd="/")
    assert proc.returncode == 0 and (subs / "report.html").exists(), proc.stderr
    assert "several submissions" in one_error_line(run_cli("report", subs, timeout=60, cwd="/"))


# ---------------------------------------------------------------------------------------------- builds

def test_a_named_build_of_other_tasks_is_refused_and_the_same_tasks_elsewhere_are_not(tmp_path):
    """check_own_build never builds over a --build folder of other sources; a copy of the same tasks
    under another path (a moved ttt run's tasks) is the same build, and one changed grid is not."""
    from arc_trm.builds import build_options, check_own_build
    from augment.build import ensure_built
    from augment.errors import InputError

    def folder(name: str, tasks) -> str:
        (tmp_path / name).mkdir()
        for task in tasks:
            (tmp_path / name / f"{task.id}.json").write_text(json.dumps(task.to_json()))
        return str(tmp_path / name)

    tasks = load_tasks(SMALL_TASKS)
    cfg = apply_overrides(preset("cpu-quick"), ["data.augmentations=2"])
    cfg.data.tasks, cfg.data.build_dir = folder("a", tasks), str(tmp_path / "build")
    ensure_built(cfg.data.tasks, tmp_path / "build", build_options(cfg))
    check_own_build(tmp_path / "build", cfg)
    cfg.data.tasks = folder("copy", tasks)
    check_own_build(tmp_path / "build", cfg)
    changed = tasks[0].train[0].input.copy()
    changed[0, 0] = (changed[0, 0] + 1) % 10
    other = [dataclasses.replace(tasks[0], train=(dataclasses.replace(tasks[0].train[0], input=changed),
                                                  *tasks[0].train[1:])), *tasks[1:]]
    cfg.data.tasks = folder("other", other)
    with pytest.raises(InputError, match="holds a build of"):
        check_own_build(tmp_path / "build", cfg)
    cfg.data.tasks = folder("again", tasks)
    with pytest.raises(InputError, match="holds a build of"):
        check_own_build(tmp_path / "build", apply_overrides(cfg, ["data.build_seed=1"]))


def test_default_build_folders_name_everything_that_defines_the_build():
    def folder(tasks: str, *sets_: str) -> Path:
        cfg = apply_overrides(preset("cpu-quick"), list(sets_))
        cfg.data.tasks = tasks
        return default_build_dir(cfg)

    long = "arc-agi-1:training/" + "+".join(["3c9b0459"] * 8)
    assert folder(long + "+6150a2bd") != folder(long + "+74dd1130")  # differ after 60 characters
    assert folder(SMALL_TASKS) != folder(SMALL_TASKS.replace("@test", "@train"))  # the role
    assert folder(SMALL_TASKS) != folder(SMALL_TASKS, "data.build_seed=1")
    assert folder(SMALL_TASKS) == folder(SMALL_TASKS)
    assert folder(SMALL_TASKS).name.startswith("arc-agi-1_training_3c9b0459")
    # A path source is named by its base name (recorded absolute, it began with the whole path);
    # the hash still tells two folders of that name apart.
    assert folder("/data/a/tasks,/data/b/x_challenges.json@train").name.startswith("tasks_x_challenges_json_train-a")
    assert folder("/data/a/tasks") != folder("/data/b/tasks")


def test_a_build_folder_with_other_parameters_is_refused_not_rebuilt(tmp_path, small_build):
    before = (small_build / "metadata.json").read_text()
    proc = run_cli("train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--out", tmp_path / "run", "--build",
                   small_build, "--no-progress", *sets(TINY + ["data.augmentations=5"]), timeout=120)
    assert "never rebuilt" in one_error_line(proc)
    assert (small_build / "metadata.json").read_text() == before


# ---------------------------------------------------------------------------------------------- tasks

def test_ttt_skips_a_malformed_task_keeps_its_fallback_and_trains_the_rest(tmp_path):
    tasks = load_tasks("arc-agi-1:training/3c9b0459+6150a2bd")
    challenges = {t.id: t.to_json(with_solutions=False) for t in tasks}
    challenges["ragged"] = {"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": [{"input": [[5, 5]]}]}
    challenges["unreadable"] = {"train": "x", "test": [{"input": "nope"}]}
    (tmp_path / "c.json").write_text(json.dumps(challenges))
    proc = run_cli("ttt", "--tasks", tmp_path / "c.json", "--out", tmp_path / "run", "--budget", "60s",
                   "--no-progress", *sets([o for o in TINY if not o.startswith("data.")] + ["max_steps=2"]),
                   timeout=200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'ragged'" in proc.stderr and "keeps the fallback" in proc.stderr and "'unreadable'" in proc.stderr
    assert "submission updated" in proc.stdout  # the good tasks trained and were predicted
    sub = json.loads((tmp_path / "run" / "submission.json").read_text())
    assert sorted(sub) == sorted([t.id for t in tasks] + ["ragged"])
    assert sub["ragged"] == [{"attempt_1": [[5, 5]], "attempt_2": [[5, 5]]}]


GOOD = {"train": [{"input": [[1, 2], [3, 4]], "output": [[4, 3], [2, 1]]}], "test": [{"input": [[0, 1], [1, 0]]}]}
BAD_CELLS = [10, -1, 1.5, "1", True, None, [1]]


@st.composite
def malformed_task(draw) -> object:
    """A valid task with one thing broken."""
    task = json.loads(json.dumps(GOOD))
    how = draw(st.sampled_from(["cell", "ragged", "empty grid", "wide", "split", "example", "no output",
                                "no input", "not an object"]))
    split = draw(st.sampled_from(["train", "test"]))
    key = "output" if split == "train" and draw(st.booleans()) else "input"
    if how == "cell":
        task[split][0][key][draw(st.integers(0, 1))][draw(st.integers(0, 1))] = draw(st.sampled_from(BAD_CELLS))
    elif how == "ragged":
        task[split][0][key][1].append(0)
    elif how == "empty grid":
        task[split][0][key] = draw(st.sampled_from([[], [[]], "grid", 7]))
    elif how == "wide":
        task[split][0][key] = [[0] * draw(st.integers(31, 40))]
    elif how == "split":
        task[split] = draw(st.sampled_from([[], "x", None, {}]))
    elif how == "example":
        task[split][0] = draw(st.sampled_from([[], "x", 3]))
    elif how == "no output":
        del task["train"][0]["output"]
    elif how == "no input":
        del task[split][0]["input"]
    else:
        task = draw(st.sampled_from([[], "task", 3, None]))
    return task


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(task=malformed_task(), task_id=st.text("abcdef0123456789", min_size=1, max_size=8))
def test_malformed_task_json_gives_one_line_naming_file_and_task(task, task_id, tmp_path, capsys):
    path = tmp_path / f"{task_id}_challenges.json"
    path.write_text(json.dumps({"ok": GOOD, task_id: task} if task_id != "ok" else {task_id: task}))
    out = tmp_path / f"built-{task_id}"
    assert cli.main(["build", "--tasks", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and f"task {task_id!r}" in err[0], err
    assert not out.exists() and not list(tmp_path.glob(f".built-{task_id}*"))


@pytest.mark.parametrize("command", ["train", "ttt"])
def test_an_unusable_out_folder_is_refused_before_any_work(command, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    extra = ["--budget", "5s"] if command == "ttt" else ["--preset", "cpu-quick"]
    for out, words in ((a_file, "not a folder"), (Path("/proc/no/run"), "cannot create")):
        proc = run_cli(command, "--tasks", SMALL_TASKS, "--out", out, "--no-progress", *extra, timeout=120)
        assert proc.returncode == 2 and words in one_error_line(proc), proc.stderr
    assert a_file.read_text() == "not a folder"


@pytest.mark.parametrize("option, value, words", [
    ("--canvas", "31", "--canvas must be 1 to 30, got 31"), ("--canvas", "0", "--canvas must be 1 to 30, got 0"),
    ("--set", "data.canvas=31", "data.canvas must be an integer from 1 to 30, got 31")])
def test_a_canvas_larger_than_an_arc_grid_is_refused_before_any_work(option, value, words, tmp_path):
    # A canvas over 30 built a set no config could train on (data.canvas is capped at 30).
    out = tmp_path / "out"
    command = ["build", "--tasks", SMALL_TASKS, "--no-progress", option, value]
    if option == "--set":
        command = ["train", "--tasks", SMALL_TASKS, "--preset", "cpu-quick", "--no-progress", "--build",
                   tmp_path / "build", option, value]
    proc = cli_in_process(*command, "--out", out)
    assert words in one_error_line(proc)
    assert not out.exists() and not (tmp_path / "build").exists()


@pytest.mark.parametrize("command", ["train", "build", "ttt", "score"])
def test_an_empty_tasks_value_is_refused_in_one_line_before_any_work(command, tmp_path):
    """`--tasks "$TASKS"` with the variable unset: train trained on the preset's arc-agi-2 without a
    word, score stopped with an AssertionError traceback, and build and ttt said "no tasks loaded
    from []"."""
    out = tmp_path / "out"
    sub = tmp_path / "s.json"
    sub.write_text(json.dumps({"t": [{"attempt_1": [[0]], "attempt_2": [[0]]}]}))
    args = {"train": ["--preset", "cpu-quick", "--out", out, "--build", tmp_path / "build", "--no-progress"],
            "build": ["--out", out, "--no-progress"], "ttt": ["--out", out, "--budget", "5s", "--no-progress"],
            "score": [sub]}[command]
    proc = cli_in_process(command, *args, "--tasks", "")
    leave = ", or leave it out" if command in ("train", "score") else ""  # build and ttt require --tasks
    assert one_error_line(proc) == f"arc-trm {command}: error: --tasks is empty; give a value{leave}"
    assert not out.exists() and not (tmp_path / "build").exists()
    proc = cli_in_process(command, *args, "--tasks", " , ")  # no source either, caught where tasks are read
    assert one_error_line(proc).startswith(f"arc-trm {command}: error: --tasks names no task source (it is ")
    assert not out.exists() and not (tmp_path / "build").exists()


@pytest.mark.parametrize("command, args, flag", [
    ("train", ["--preset", "cpu-quick", "--tasks", SMALL_TASKS, "--out", ""], "--out"),
    ("score", [""], "SUBMISSION"),
    ("show", ["x", "--tasks", SMALL_TASKS, "--submission", ""], "--submission"),
    ("predict", ["--checkpoint", "", "--tasks", SMALL_TASKS], "--checkpoint"),
    ("kaggle", ["bundle", "--checkpoint", "x", "--out", ""], "--out"),
    ("kaggle", ["bundle", "--out", "b", "--wheel-dir", ""], "--wheel-dir"),  # was read as "." (type=Path)
])
def test_any_empty_value_is_named_in_one_line(command, args, flag, tmp_path, monkeypatch):
    """Before: `train --out ""` trained into the current folder, `show --submission ""` drew no
    attempts, `score ""` said ".: submission is a folder"; an empty value is a slip (an unset
    variable), named before the command starts (arc_trm.cli.empty_value_line)."""
    monkeypatch.chdir(tmp_path)
    prog = "arc-trm kaggle bundle" if command == "kaggle" else f"arc-trm {command}"  # the parser holding the option
    assert one_error_line(cli_in_process(command, *args)).startswith(f"{prog}: error: {flag} is empty; give a value")
    assert list(tmp_path.iterdir()) == []


def test_a_path_option_must_be_declared_as_str():
    """Path("") is Path("."), which the empty-value check cannot tell from a real "."."""
    from arc_trm.cli import Parser
    with pytest.raises(TypeError, match="declare paths as str"):
        Parser(prog="x").add_argument("--dir", type=Path)


def test_a_source_whose_every_task_is_bad_says_so_in_words(tmp_path):
    """ttt on a file whose one task has no test input said "no tasks loaded from ['bad.json']": a
    Python list, and nothing on why (the warning above it named the task)."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"b1": {"train": [{"input": [[1]], "output": [[2]]}], "test": []}}))
    proc = cli_in_process("ttt", "--tasks", bad, "--out", tmp_path / "out", "--budget", "5s", "--no-progress")
    assert proc.returncode == 2 and "task 'b1': 'test' must be a non-empty list" in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (f"arc-trm ttt: error: no tasks loaded from {bad}: all 1 left "
                                                    f"out as bad (warned above)")
