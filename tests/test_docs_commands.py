"""The documentation's commands still run: every `arc-trm ...` line in a code block of the README,
docs/ and benchmarks/README parses with the CLI's own parser, and every `--set key=value` the
documents give names a config key that takes that value. An option renamed in the code and not in
the docs fails here, not in a user's terminal."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from arc_trm.cli import COMMANDS, command_parser
from arc_trm.config import preset
from arc_trm.overrides import apply_overrides

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def code_block_commands(text: str) -> list[str]:
    """The `arc-trm` command lines inside fenced code blocks (continuations joined, comments,
    redirections and chained commands cut off)."""
    found, inside, held = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        if line.endswith("\\"):
            held += line[:-1] + " "
            continue
        line, held = held + line, ""
        line = " ".join(re.split(r"\s#", line)[0].split())
        match = re.match(r"(?:\$\s*)?(?:\w+=\S+\s+)*(arc-trm\s.*)", line)
        if match:
            found.append(re.split(r"&&|\|\||;|\||>", match.group(1))[0].strip())
    return found


def documented_commands() -> list[tuple[str, str]]:
    return [(path.relative_to(ROOT).as_posix(), cmd) for path in DOCS for cmd in code_block_commands(path.read_text())]


def test_the_extractor_finds_commands_and_skips_the_rest():
    text = ("run `arc-trm predict` inline\n```bash\narc-trm train --tasks arc-agi-1 \\\n    --out runs/a  # a comment\n"
            "ls dist/arc-trm-bundle\n$ arc-trm score s.json --tasks x > log && echo ok\n```\narc-trm build --out b\n")
    assert code_block_commands(text) == ["arc-trm train --tasks arc-agi-1 --out runs/a",
                                         "arc-trm score s.json --tasks x"]


def test_the_docs_hold_commands_of_every_main_step():
    names = {shlex.split(cmd)[1] for _, cmd in documented_commands()}
    assert {"build", "train", "predict", "score", "ttt", "import-checkpoint", "kaggle"} <= names


@pytest.mark.parametrize("where,cmd", documented_commands())
def test_documented_command_parses(where, cmd):
    argv = shlex.split(cmd)[1:]
    assert argv and argv[0] in COMMANDS, f"{where}: unknown command in {cmd!r}"
    parser = command_parser(argv[0])
    try:
        _, extra = parser.parse_known_args(argv[1:])
    except SystemExit:
        pytest.fail(f"{where}: `{cmd}` does not parse")
    assert not extra, f"{where}: `{cmd}` has options the parser does not know: {extra}"


def test_documented_overrides_name_real_keys():
    overrides = sorted({m for path in DOCS for m in re.findall(r"--set ([A-Za-z_.]+=[^\s`'\"]+)", path.read_text())})
    overrides = [o for o in overrides if not o.startswith("key=")]  # the syntax itself, not a setting
    assert len(overrides) >= 3
    for item in overrides:
        key, _, value = item.partition("=")
        if len(value) == 1 and value.isalpha():  # a placeholder (grad_accum_steps=k): the key alone
            item = f"{key}=2"
        apply_overrides(preset("paper"), [item])


def test_the_readme_s_count_of_tasks_the_cpu_canvas_skips_is_right():
    """README's CPU quickstart trains with cpu-quick's canvas; it says how many tasks that skips."""
    from augment.build import max_side
    from augment.tasks import load_tasks

    text = " ".join((ROOT / "README.md").read_text().split())
    canvas = preset("cpu-quick").data.canvas
    every, evaluation = load_tasks("arc-agi-1"), load_tasks("arc-agi-1:evaluation")
    skipped = sum(max_side(t) > canvas for t in every)
    assert (f"{canvas}x{canvas} canvas skips the tasks with a larger grid: {skipped} of arc-agi-1's {len(every)} "
            f"({skipped / len(every):.0%}; {sum(max_side(t) > canvas for t in evaluation)} of the "
            f"{len(evaluation)} evaluation tasks") in text


def test_documented_conceptarc_files_have_a_name_the_command_takes():
    """`--conceptarc` needs a `*_challenges.json` (its `*_solutions.json` is found beside it by name);
    the README's `--conceptarc C.json` and USAGE's `CONCEPTARC.json` were refused when copied."""
    named = sorted({m for path in DOCS for m in re.findall(r"--conceptarc\s+([^\s`|]+)", path.read_text())})
    assert named, "the docs show --conceptarc"
    for name in named:
        assert name.endswith("_challenges.json"), f"--conceptarc {name}: import-checkpoint refuses that name"
