"""`kaggle bundle` refuses in one line, before any work, a value it would write into the bundle's
metadata or pip's arguments that Kaggle or pip refuses later (or that crashed it: --wheel-python 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import cli_in_process


@pytest.mark.parametrize("flag, value, words", [
    ("--wheel-python", "3", "X.Y"),
    ("--wheel-python", "3.12.1", "X.Y"),
    ("--wheel-python", "three", "X.Y"),
    ("--user", "bad user/name", "not a Kaggle username"),
    ("--dataset-slug", "../../x", "not a Kaggle slug"),
    ("--dataset-slug", "short", "6 to 50"),
    ("--dataset-slug", "My-Bundle", "lowercase"),
    ("--kernel-slug", "a b", "not a Kaggle slug"),
    ("--kernel-slug", "x" * 51, "5 to 50"),
    ("--competition", "arc prize", "not a Kaggle slug"),
    ("--poll-seconds", "-1", "positive"),
    ("--poll-seconds", "0", "positive"),
    ("--poll-seconds", "nan", "positive"),
])
def test_a_value_kaggle_would_refuse_is_one_line_before_any_work(tmp_path: Path, flag: str, value: str,
                                                                 words: str) -> None:
    out = tmp_path / "kb"
    proc = cli_in_process("kaggle", "bundle", "--no-download", "--user", "me", "--out", out, flag, value)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert line.startswith("arc-trm kaggle: error: ") and flag in line and words in line, line
    assert not out.exists()


def test_a_username_from_the_environment_is_checked_and_named(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "two words")
    proc = cli_in_process("kaggle", "bundle", "--no-download", "--out", tmp_path / "kb")
    assert proc.returncode == 2
    line, = proc.stderr.strip().splitlines()
    assert "KAGGLE_USERNAME" in line and "'two words'" in line


def test_kaggles_own_forms_pass() -> None:
    """The defaults, the placeholder user and ids as Kaggle writes them are accepted."""
    from arc_trm.cli import command_parser
    from submission.bundle_cli import check_bundle_flags
    from submission.push import PLACEHOLDER_USER

    args = command_parser("kaggle").parse_args(["bundle", "--out", "d", "--wheel-python", "3.10", "--dataset-slug",
                                                "arc-trm-v2", "--kernel-slug", "arc-2", "--poll-seconds", "0.5"])
    for user in (PLACEHOLDER_USER, "alice", "bob-smith", "user_42"):
        check_bundle_flags(args, user)
    check_bundle_flags(command_parser("kaggle").parse_args(["bundle", "--out", "d"]), "alice")


@pytest.mark.parametrize("flag, value", [("--message", "v2 weights"), ("--poll-seconds", "5")])
def test_a_push_option_without_push_is_refused_before_any_work(tmp_path: Path, flag: str, value: str) -> None:
    """--message and --poll-seconds did nothing without --push, silently."""
    out = tmp_path / "kb"
    proc = cli_in_process("kaggle", "bundle", "--no-download", "--user", "me", "--out", out, flag, value)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert line.startswith("arc-trm kaggle: error: ") and f"{flag} applies with --push only" in line, line
    assert not out.exists() and "building" not in proc.stdout
