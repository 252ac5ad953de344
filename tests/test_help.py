"""Every subcommand's --help: each option explained, each default shown, plain words, prose that
wraps evenly, and one metavar for --tasks. Walks the parsers the CLI itself builds."""

from __future__ import annotations

import argparse

import pytest

from arc_trm import __version__
from arc_trm.cli import COMMANDS, command_parser, main

FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction,
         argparse._VersionAction, argparse._HelpAction)


def parsers(name: str) -> list[argparse.ArgumentParser]:
    """The command's parser and its actions' parsers (kaggle bundle)."""
    top = command_parser(name)
    return [top, *(top.subcommands.choices.values() if top.subcommands else [])]


def option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return parser._get_formatter()._expand_help(action) if action.help else ""


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_has_help_and_shows_its_default(name):
    for parser in parsers(name):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            text = option_help(parser, action)
            what = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            assert text.strip(), f"{what} has no help text"
            repeatable = isinstance(action, argparse._AppendAction) and "repeatable" in text
            if action.option_strings and not isinstance(action, FLAGS) and not action.required and not repeatable:
                # an optional value always has a default: the value, or what leaving it out does
                assert "default" in text, f"{what} does not say its default: {text!r}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_speaks_plainly_and_wraps_evenly(name):
    for parser in parsers(name):
        text = parser.format_help()
        assert "§" not in text, f"{parser.prog} --help cites the reference's sections"
        prose = [line for line in (parser.description or "").splitlines() if line and not line[0].isspace()]
        long = [line for line in prose if len(line) > 100]
        assert not long, f"{parser.prog}: description lines over 100 columns: {long}"
        for action in parser._actions:
            if "--tasks" in action.option_strings:
                assert action.metavar == "SOURCE", f"{parser.prog} --tasks shows {action.metavar}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_cli_checks_see_every_option(name):
    """The empty-value check and the negative-value join walk the options a Parser declared. An
    option added another way (an argument group) would escape both: argparse's own list holds none
    that the Parser does not know."""
    for parser in parsers(name):
        known = [*parser.declared, *([parser.subcommands] if parser.subcommands else [])]
        assert {id(a) for a in parser._actions} == {id(a) for a in known}, parser.prog


def test_no_command_is_an_error(capsys):
    """`arc-trm $CMD` with the variable unset printed the help and exited 0, so a script went on as
    if its step had run."""
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert "train" in out and "predict" in out
    assert err == "arc-trm: error: no command given (the commands are listed above)\n"
    assert main(["--help"]) == 0


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"arc-trm {__version__}"


def test_default_appended_once():
    p = argparse.ArgumentParser(formatter_class=command_parser("plot").formatter_class)
    p.add_argument("--n", type=int, default=3, help="count")
    p.add_argument("--m", type=int, default=4, help="count (default 4)")
    text = p.format_help()
    assert "count (default: 3)" in text and "count (default 4)" in text and "(default: 4)" not in text


@pytest.mark.parametrize("value", ["-5m", "-1", "-0.5h"])
def test_negative_budget_is_one_clear_line(value, tmp_path, capsys):
    code = main(["ttt", "--tasks", str(tmp_path / "none.json"), "--out", str(tmp_path / "run"), "--budget", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "--budget must be a positive duration" in err[0] and value in err[0]
    assert not (tmp_path / "run").exists()


def test_gpu_preset_on_cpu_warns_before_any_work(tmp_path, capsys):
    missing = tmp_path / "missing_challenges.json"
    code = main(["train", "--preset", "paper", "--device", "cpu", "--tasks", str(missing),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "error" in err.splitlines()[-1]  # the task source fails after the warning
    warning = next(line for line in err.splitlines() if line.startswith("warning:"))
    assert "paper preset is made for GPUs" in warning and "batch of 768" in warning and " 6 h" in warning
    assert "cpu-quick" in warning
    main(["train", "--preset", "cpu-quick", "--device", "cpu", "--tasks", str(missing), "--out", str(tmp_path / "r2")])
    assert "made for GPUs" not in capsys.readouterr().err


def test_gpu_preset_on_cpu_warns_in_ttt_too(tmp_path, capsys):
    from arc_trm.common import Dist
    from arc_trm.ttt_phases import ttt_config
    from arc_trm.ttt_plan import TTTJob, TTTOptions
    from augment.tasks import load_tasks
    from conftest import SMALL_TASKS

    tasks = load_tasks(SMALL_TASKS)
    job = TTTJob(tasks, tasks, tmp_path, tmp_path / "submission.json", 0.0, 60.0)
    ttt_config(TTTOptions(tasks=SMALL_TASKS, out=tmp_path, preset="paper"), job, Dist())
    assert "paper preset is made for GPUs" in capsys.readouterr().err
    ttt_config(TTTOptions(tasks=SMALL_TASKS, out=tmp_path, preset="cpu-quick"), job, Dist())
    assert "made for GPUs" not in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["train", "--preset", "bogus", "--out", "x"], "arc-trm train: error: argument --preset: invalid choice: 'bogus'"),
    (["train", "--seed", "x", "--out", "x"], "arc-trm train: error: argument --seed: invalid int value: 'x'"),
    (["predict", "--tasks", "arc-agi-1"], "arc-trm predict: error: the following arguments are required"),
    (["kaggle", "bundle", "--checkpoint", "x"], "arc-trm kaggle bundle: error: the following arguments are required"),
    (["score", "x.json", "--no-such-option"], "arc-trm score: error: unrecognized arguments: --no-such-option"),
    (["no-such-command"], "arc-trm: error: unknown command 'no-such-command'"),
])
def test_a_usage_error_is_one_line_naming_the_command(capsys, argv, words):
    """argparse prints its usage block (up to 7 lines for train) before the error: the brief's one
    clear line is the last; now it is the only one, and it says where the options are listed."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith(words), err
    assert "--help" in err
