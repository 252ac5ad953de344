"""The notebook's decisions: device report -> preset, budgets, smoke subset merged into the fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from augment.errors import InputError
from submission import runtime as rt


@pytest.mark.parametrize("report, preset, overrides, words", [
    (rt.DeviceReport(4, "NVIDIA L4", (8, 9), True), "kaggle", [], "bf16: preset kaggle"),
    (rt.DeviceReport(2, "Tesla T4", (7, 5), True), "kaggle", ["model.forward_dtype=float32"], "no native bf16"),
    (rt.DeviceReport(1, "Tesla P100", (6, 0), False, "no kernel image"), None, [], "cannot run this torch build"),
    (rt.DeviceReport(0), None, [], "no GPU; keeping the fallback"),
])
def test_choose_run(report: rt.DeviceReport, preset, overrides, words: str) -> None:
    choice = rt.choose_run(report)
    assert (choice.preset, choice.overrides) == (preset, overrides) and words in choice.message
    assert "\n" not in choice.message


def test_cpu_only_when_allowed_and_fake_report(monkeypatch: pytest.MonkeyPatch) -> None:
    assert rt.choose_run(rt.DeviceReport(0), allow_cpu=True).preset == "cpu-quick"
    monkeypatch.setenv("ARC_TRM_FAKE_DEVICE", '{"gpus": 2, "name": "Tesla T4", "capability": [7, 5], "runs": true}')
    assert rt.probe_device() == rt.DeviceReport(2, "Tesla T4", (7, 5), True)


def test_the_real_probe_answers_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARC_TRM_FAKE_DEVICE", raising=False)
    report = rt.probe_device()
    assert report.error == "" and (report.gpus == 0 or report.runs)


def test_budgets() -> None:
    assert rt.seconds("11h") == 39600 and rt.seconds("1h30m") == 5400 and rt.seconds("90s") == 90
    assert rt.seconds("10.5h") == 37800 and rt.seconds("1.5m") == 90
    for bad in ("soon", "", "8x", "h8", "1h 30m"):
        with pytest.raises(ValueError, match="bad budget"):
            rt.seconds(bad)
    with pytest.raises(ValueError, match="budget must be a positive duration"):
        rt.seconds("-5m")
    # A bare number was read as seconds: a user meaning 11 hours got an 11-second run.
    with pytest.raises(ValueError, match=r"budget '11' has no unit: give 11s, 11m or 11h"):
        rt.seconds("11")
    # 10^17 hours reached the clock time the run ends: an OverflowError traceback from time.localtime.
    assert rt.seconds("8784h") == rt.MAX_BUDGET_S
    for huge in ("8785h", "99999999999999999h", "9" * 400 + "s"):
        with pytest.raises(ValueError, match="is longer than a year: give at most 8784h"):
            rt.seconds(huge)


def settings(full: str = "11h", smoke: str = "10m", rerun: bool = False, slack: str = "5m", grace: str = "1m",
             tasks: str = "4") -> rt.NotebookSettings:
    return rt.notebook_settings(full, smoke, rerun, slack, grace, tasks)


def test_the_notebook_parses_both_budgets_on_every_run() -> None:
    """A typo in the scoring rerun's budget shows in the smoke run ("Save Version"), not only in the
    rerun, where it would cost the whole run."""
    assert settings("10.5h", "90s", rerun=True) == rt.NotebookSettings(37800, 300, 60, 4)
    assert settings("10.5h", "90s", rerun=False).budget_s == 90
    with pytest.raises(ValueError, match="ARC_TRM_BUDGET"):
        settings("11 hours", "10m", rerun=False)
    with pytest.raises(ValueError, match="ARC_TRM_SMOKE_BUDGET"):
        settings("11h", "ten minutes", rerun=True)


@pytest.mark.parametrize("bad, line", [
    (dict(full="0h"), "ARC_TRM_BUDGET must be more than 0 seconds, got '0h'"),
    (dict(full="13h"), "ARC_TRM_BUDGET '13h' with the watchdog's slack (5m) and grace (1m) ends past Kaggle's 12 h "
                       "limit, which would stop the run before its submission: give at most 11.90h"),
    (dict(smoke="11h59m", slack="5m"), "ARC_TRM_SMOKE_BUDGET '11h59m' with the watchdog's slack (5m)"),
    (dict(slack="300"), "ARC_TRM_WATCHDOG_SLACK '300' has no unit: give 300s, 300m or 300h"),
    (dict(grace="nan"), "bad ARC_TRM_WATCHDOG_GRACE 'nan'"),
    (dict(grace="-5s"), "ARC_TRM_WATCHDOG_GRACE must be a positive duration"),
    (dict(tasks="all"), "ARC_TRM_SMOKE_TASKS must be a whole number of tasks, 1 or more, got 'all'"),
    (dict(tasks="0"), "ARC_TRM_SMOKE_TASKS must be a whole number of tasks, 1 or more, got '0'"),
])
def test_every_notebook_setting_is_checked_in_one_line(bad: dict, line: str) -> None:
    """A mistyped slack ("5m" once meant a crash before the fallback existed), a 0 budget the rerun
    would skip, or one past Kaggle's 12 h passed the "Save Version" run unnoticed."""
    with pytest.raises(ValueError) as e:
        settings(**bad)
    assert str(e.value).startswith(line), str(e.value)
    assert settings(slack="0s", grace="0s").slack_s == 0  # no slack is a value, not a typo


def test_per_task_ttt_runs_as_one_process_whatever_the_gpus() -> None:
    """torchrun would start one --per-task process per GPU, each refusing (or all doing the same tasks)."""
    assert rt.ttt_launch(4, ["ttt", "--out", "r"], python="py") == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m", "arc_trm.cli", "ttt", "--out", "r"]
    for gpus in (0, 1, 4):
        assert rt.ttt_launch(gpus, ["ttt", "--per-task"], python="py") == ["py", "-m", "arc_trm.cli", "ttt", "--per-task"]
    assert rt.ttt_launch(1, ["ttt"], python="py") == ["py", "-m", "arc_trm.cli", "ttt"]


def test_a_second_run_all_starts_a_fresh_run_unless_told_to_resume() -> None:
    assert rt.fresh_run_flags([]) == ["--force"] and rt.fresh_run_flags(["--batch-size", "64"]) == ["--force"]
    assert rt.fresh_run_flags(["--resume"]) == [] and rt.fresh_run_flags(["--force"]) == []


def test_smoke_subset_is_merged_into_a_complete_submission(tmp_path: Path) -> None:
    grid = [[1, 2], [3, 4]]
    challenges = tmp_path / "c.json"
    challenges.write_text(json.dumps({t: {"train": [], "test": [{"input": grid}]} for t in ("b", "a", "c")}))
    subset = rt.smoke_subset(challenges, 2, tmp_path / "s.json")
    assert sorted(json.loads(subset.read_text())) == ["a", "b"]
    full, part = tmp_path / "sub.json", tmp_path / "part.json"
    full.write_text(json.dumps({t: [{"attempt_1": grid, "attempt_2": grid}] for t in "abc"}))
    part.write_text(json.dumps({"a": [{"attempt_1": [[7]], "attempt_2": [[8]]}]}))
    assert rt.merge_into(full, part, challenges) == 1
    merged = json.loads(full.read_text())
    assert merged["a"] == [{"attempt_1": [[7]], "attempt_2": [[8]]}] and merged["b"][0]["attempt_1"] == grid
    part.write_text(json.dumps({"a": [{"attempt_1": [[7]]}]}))  # a broken partial leaves the file alone
    with pytest.raises(InputError):
        rt.merge_into(full, part, challenges)
    assert json.loads(full.read_text()) == merged


def test_the_merge_counts_only_the_tasks_ttt_answered(tmp_path: Path) -> None:
    """ttt's partial holds the fallback (each test input as both attempts) for the tasks it did not
    answer: counting every task in it said "3 tasks answered by ttt" when it answered none or one."""
    inputs = {"a": [[[1, 2]], [[3]]], "b": [[[4]], [[5, 6]]], "c": [[[7]]]}  # test inputs per task
    challenges = tmp_path / "c.json"
    challenges.write_text(json.dumps({t: {"train": [], "test": [{"input": g} for g in grids]}
                                      for t, grids in inputs.items()}))
    fallback = {t: [{"attempt_1": g, "attempt_2": g} for g in grids] for t, grids in inputs.items()}
    full, part = tmp_path / "sub.json", tmp_path / "part.json"
    full.write_text(json.dumps(fallback))
    part.write_text(json.dumps(fallback))
    assert rt.merge_into(full, part, challenges) == 0
    answered = {**fallback, "b": [fallback["b"][0], {"attempt_1": [[5, 6]], "attempt_2": [[9, 9]]}]}
    part.write_text(json.dumps(answered))  # one attempt of one test input differs: that task counts
    assert rt.merge_into(full, part, challenges) == 1 and json.loads(full.read_text()) == answered


def test_the_import_check_names_what_does_not_import() -> None:
    ok = rt.check_imports(("json", "submission.kaggle"))
    assert ok.ok and ok.message() == "imports: ok"
    bad = rt.check_imports(("json", "no_such_module_arc_trm", "submission.kaggle"))
    assert not bad.ok and len(bad.failed) == 1
    assert bad.failed[0].startswith("no_such_module_arc_trm: ModuleNotFoundError") and "\n" not in bad.message()
    assert rt.check_imports(python="/nonexistent/python").failed  # a child that cannot start is a failure too


def test_the_retired_p100_message_points_at_a_machine_that_runs() -> None:
    msg = rt.choose_run(rt.DeviceReport(1, "Tesla P100", (6, 0), False, "no kernel image")).message
    assert "NvidiaL4" in msg and "T4 x2" in msg
